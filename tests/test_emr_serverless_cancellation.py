"""Cancelling a real ``fruit-features/emr-serverless`` deployment run mid-job cancels its job run and deletes the
application the flow created.

A real Prefect server, the deployment from prefect.yaml, a process worker whose flow-run subprocess reaches moto (in
this process) over HTTP. The block tags the run so that the fake holds its job run RUNNING: the run is cancelled
while it waits. The runner's SIGTERM reaches the flow as an exception, and ``EmrServerlessEngine.run``'s ``finally``
cancels the job run, then stops and deletes the application; the ``on_cancellation`` hook then finds nothing left.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from prefect.client.schemas.objects import StateType
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Cancelling

from tasks.aws.tags import TAG_FLOW_RUN
from tests.emr_fixtures import POLL_SECONDS, UNPLAYED_TAG, save_moto_blocks
from tests.prefect_server import start_deployment_run, wait_final
from tests.serverless_fixtures import SERVERLESS_JOB

pytestmark = pytest.mark.slow

BLOCKS = "cancel-serverless"
START_WAIT_S = 120  # the worker picks the run up, the flow-run process starts, preflight, stage, application, start
CANCEL_WAIT_S = 90


@pytest.fixture
def client(prefect_server, aws):
    """A client of the deployment server, which holds this test's blocks (pointed at moto)."""
    from prefect.client.orchestration import get_client

    from blocks.emr_serverless_config import EmrServerlessConfig

    with temporary_settings({PREFECT_API_URL: prefect_server.api_url}), get_client(sync_client=True) as prefect:
        save_moto_blocks(BLOCKS, aws.endpoint)
        EmrServerlessConfig(poll_seconds=POLL_SECONDS, tags={UNPLAYED_TAG: "true"}).save(BLOCKS, overwrite=True)
        yield prefect


def _until(condition, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while not (found := condition()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def test_cancelling_a_serverless_run_cancels_its_job_run_and_deletes_its_application(
    prefect_server, client, aws, serverless
):
    started: dict = {"event": threading.Event()}

    def on_start(application_id: str, job_run_id: str, tags: dict) -> None:
        if UNPLAYED_TAG in tags:
            started.update(application_id=application_id, job_run_id=job_run_id, tags=tags)
            started["event"].set()

    with serverless.on_started(on_start):
        flow_run_id = start_deployment_run(
            client,
            "fruit-features/emr-serverless",
            images=aws.images,
            output=f"s3://{aws.bucket}/cancelled-{uuid.uuid4().hex[:8]}",
            **{**SERVERLESS_JOB, "step_timeout_minutes": 60},
            aws_credentials_block=BLOCKS,
            s3_bucket_block=BLOCKS,
            serverless_block=BLOCKS,
        )
        if not started["event"].wait(START_WAIT_S):
            run = client.read_flow_run(flow_run_id)
            worker = prefect_server.log_tail("worker")
            pytest.fail(f"no job run after {START_WAIT_S}s (run {run.state_name}):\n{worker}")
    emr_serverless = aws.client("emr-serverless")
    ids = {"applicationId": started["application_id"], "jobRunId": started["job_run_id"]}
    assert started["tags"][TAG_FLOW_RUN] == str(flow_run_id)
    assert _until(lambda: emr_serverless.get_job_run(**ids)["jobRun"]["state"] == "RUNNING", 10)

    client.set_flow_run_state(flow_run_id, Cancelling(message="cancelled by the test"))
    run = wait_final(client, prefect_server, flow_run_id, CANCEL_WAIT_S)
    assert run.state.type == StateType.CANCELLED, run.state.message

    def ended() -> tuple[str, str] | None:
        states = (
            emr_serverless.get_job_run(**ids)["jobRun"]["state"],
            emr_serverless.get_application(applicationId=ids["applicationId"])["application"]["state"],
        )
        return states if states == ("CANCELLED", "TERMINATED") else None

    assert _until(ended, 30), (
        f"job run {emr_serverless.get_job_run(**ids)['jobRun']['state']}, application "
        f"{emr_serverless.get_application(applicationId=ids['applicationId'])['application']['state']}; "
        f"worker log:\n{prefect_server.log_tail('worker')}"
    )
