"""Cancelling a real EMR deployment run terminates the cluster the flow created.

The whole path: a real Prefect server, ``fruit-features/emr`` deployed from prefect.yaml, a process worker whose
flow-run subprocess reaches moto (in this process) over HTTP. The cluster is tagged so that the fake cluster, if the
session runs it, leaves its step RUNNING (as moto does): the run is cancelled while it waits for the step.

Two things end a cancelled run's cluster: the runner's SIGTERM reaches the flow as an exception, so
``EmrEngine.run``'s ``finally`` terminates the cluster it provisioned; and the runner then runs the flow's
``on_cancellation`` hook, ``end_what_the_run_left`` (in a hook subprocess), which terminates every active cluster
tagged with the flow run id. A second "witness" cluster, tagged for the run after the flow provisioned its own, can
only be ended by the hook: it proves the hook ran.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import StateType
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Cancelling

from tasks.aws.tags import TAG_FLOW_RUN
from tests.emr_fixtures import KEY_PAIR, POLL_SECONDS, UNPLAYED_TAG, save_moto_blocks
from tests.emr_flow import TEST_JOB
from tests.prefect_server import PrefectServer, start_deployment_run, wait_final

pytestmark = pytest.mark.slow

BLOCKS = "cancel-test"
STEP_WAIT_S = 120  # the worker picks the run up, the flow-run process starts, preflight, stage, provision, submit
CANCEL_WAIT_S = 90


@pytest.fixture(scope="session")
def server(prefect_server) -> PrefectServer:
    return prefect_server


@pytest.fixture
def client(server, aws) -> Iterator[SyncPrefectClient]:
    """A client of the deployment server, which holds this test's blocks (pointed at moto)."""

    from blocks.emr_cluster_config import EmrClusterConfig

    with temporary_settings({PREFECT_API_URL: server.api_url}), get_client(sync_client=True) as prefect:
        save_moto_blocks(BLOCKS, aws.endpoint)
        EmrClusterConfig(
            key_pair_name=KEY_PAIR, poll_seconds=POLL_SECONDS, idle_timeout_minutes=60, tags={UNPLAYED_TAG: "true"}
        ).save(BLOCKS, overwrite=True)
        yield prefect


@pytest.fixture
def step_added(fake_cluster) -> Iterator[dict]:
    """Set when moto accepts a step for a cluster tagged unplayed: {'event': Event, 'cluster_id': str}."""
    seen: dict = {"event": threading.Event(), "cluster_id": None}

    def added(cluster_id: str, tags: dict[str, str]) -> None:
        if UNPLAYED_TAG in tags:
            seen["cluster_id"] = cluster_id
            seen["event"].set()

    with fake_cluster.on_step_added(added):
        yield seen


def _state(aws, cluster_id: str) -> str:
    return aws.client("emr").describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"]


def _witness_cluster(aws, flow_run_id: str) -> str:
    """A second cluster tagged as created by this flow run, made after the flow provisioned its own.

    The flow's own ``finally`` terminates the cluster it provisioned (SIGTERM reaches it as an exception); only the
    ``on_cancellation`` hook, which finds clusters by tag, can terminate this one: it shows the hook ran.
    """
    from blocks.emr_cluster_config import EmrClusterConfig
    from tasks.emr.cluster import cluster_request

    request = cluster_request(
        EmrClusterConfig(tags={UNPLAYED_TAG: "true"}),
        name="fruitflow witness",
        log_uri=f"s3://{aws.bucket}/logs/",
        flow_run_id=flow_run_id,
    )
    return aws.client("emr").run_job_flow(**request)["JobFlowId"]


def _wait_terminated(aws, cluster_ids: list[str], timeout_s: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    while True:
        states = {cluster_id: _state(aws, cluster_id) for cluster_id in cluster_ids}
        if set(states.values()) == {"TERMINATED"} or time.monotonic() > deadline:
            return states
        time.sleep(0.1)


def test_cancelling_an_emr_run_terminates_its_cluster(server, client, aws, step_added):
    output = f"s3://{aws.bucket}/cancelled-{uuid.uuid4().hex[:8]}"
    flow_run_id = start_deployment_run(
        client,
        "fruit-features/emr",
        images=aws.images,
        output=output,
        **{**TEST_JOB, "step_timeout_minutes": 60},
        aws_credentials_block=BLOCKS,
        s3_bucket_block=BLOCKS,
        cluster_block=BLOCKS,
    )
    if not step_added["event"].wait(STEP_WAIT_S):
        run = client.read_flow_run(flow_run_id)
        pytest.fail(f"no step submitted after {STEP_WAIT_S}s (run {run.state_name}):\n{server.log_tail('worker')}")
    cluster_id = step_added["cluster_id"]
    witness = _witness_cluster(aws, str(flow_run_id))  # after provisioning, which would adopt it (idempotency)
    emr = aws.client("emr")
    (step,) = emr.list_steps(ClusterId=cluster_id)["Steps"]
    assert step["Status"]["State"] == "RUNNING"  # the flow is waiting on it; nothing will finish it
    tags = {t["Key"]: t["Value"] for t in emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Tags"]}
    assert tags[TAG_FLOW_RUN] == str(flow_run_id)
    assert {_state(aws, cluster_id), _state(aws, witness)} <= {"STARTING", "WAITING", "RUNNING"}

    client.set_flow_run_state(flow_run_id, Cancelling(message="cancelled by the test"))
    run = wait_final(client, server, flow_run_id, CANCEL_WAIT_S)
    assert run.state.type == StateType.CANCELLED, run.state.message

    # The runner runs the hooks before it proposes Cancelled; the short wait only absorbs moto's bookkeeping.
    states = _wait_terminated(aws, [cluster_id, witness], 30)
    assert states == {cluster_id: "TERMINATED", witness: "TERMINATED"}, (
        f"{states} (witness {witness}: only the on_cancellation hook terminates it); "
        f"worker log:\n{server.log_tail('worker')}"
    )
