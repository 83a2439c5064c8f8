"""The deployment path against a real Prefect server: deploy from prefect.yaml, a process worker, runs and cancels.

Everything is checked through the Prefect client, as the UI would show it: the run's state, its task runs, and
its artifacts (summary, per-class table, progress at 100 %).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from uuid import UUID

import psutil
import pytest
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import StateType
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Cancelling

from tasks.reporting import CLASSES_KEY, SUMMARY_KEY
from tests.prefect_server import NEW_BATCH, PrefectServer, start_deployment_run, wait_final

pytestmark = pytest.mark.slow

TASKS = {"check-input", "run-spark-job", "validate-output", "publish-summary"}
RUN_TIMEOUT_S = 300


@pytest.fixture(scope="session")
def server(prefect_server) -> PrefectServer:
    return prefect_server


@pytest.fixture
def client(server) -> Iterator[SyncPrefectClient]:
    """A client of the test's server (the session's test harness, if any, points elsewhere)."""
    with temporary_settings({PREFECT_API_URL: server.api_url}), get_client(sync_client=True) as prefect:
        yield prefect


def _artifacts(client: SyncPrefectClient, flow_run_id: UUID) -> list:
    return client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))


def test_deploy_all_creates_both_deployments_on_the_process_pool(server, client):
    pool = client.read_work_pool("fruitflow")
    assert pool.type == "process"
    for name, engine in (("local", "local"), ("emr", "emr")):
        deployment = client.read_deployment_by_name(f"fruit-features/{name}")
        assert deployment.work_pool_name == "fruitflow"
        assert deployment.entrypoint == "flows/fruit_features.py:fruit_features"
        assert deployment.parameters["engine"]["kind"] == engine and deployment.description
        assert deployment.pull_steps == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(server.env["PWD"])}}
        ]
        # One run at a time per deployment (and the output's own lock): never two writers on one output.
        assert deployment.global_concurrency_limit.limit == 1
        assert deployment.concurrency_options.collision_strategy == "ENQUEUE"
        # The flow's docstring gives every parameter a description in the UI's run form.
        schema = deployment.parameter_openapi_schema
        assert schema["definitions"]["JobParameters"]["properties"]["images"]["description"]


def test_deployed_run_completes_with_its_task_runs(deployed_run, client):
    run, _ = deployed_run
    assert run.state.type == StateType.COMPLETED, run.state.message
    task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
    assert {task_run.name.rsplit("-", 1)[0] for task_run in task_runs} == TASKS
    assert all(task_run.state.is_completed() for task_run in task_runs)


def test_deployed_run_publishes_summary_table_and_full_progress(deployed_run, client):
    run, output = deployed_run
    by_type = {}
    for artifact in _artifacts(client, run.id):
        by_type.setdefault(artifact.type, []).append(artifact)
    (summary,) = [a for a in by_type["markdown"] if a.key == SUMMARY_KEY]
    assert "24 of 25 images featurized" in summary.data and f"| output | `{output}` |" in summary.data
    assert "| images total / ok / failed | 25 / 24 / 1 |" in summary.data
    assert f"({output}/explained_variance.png)" in summary.data.replace("file://", "")
    (table,) = [a for a in by_type["table"] if a.key == CLASSES_KEY]
    banana = next(row for row in json.loads(table.data) if row["label"] == "Banana")
    assert (banana["ok"], banana["failed"]) == (4, 1) and 0 <= banana["accuracy_features"] <= 1
    (progress,) = by_type["progress"]
    assert float(progress.data) == 100.0 and "done" in progress.description


def test_second_batch_into_a_new_output_names_no_previous_run(
    deployed_run, server, client, fruit_images, tmp_path_factory
):
    first, first_output = deployed_run
    output = str(tmp_path_factory.mktemp("deployed") / "batch-2")
    flow_run_id = start_deployment_run(
        client, "fruit-features/local", images=str(fruit_images), output=output, pca_model=first_output, **NEW_BATCH
    )
    run = wait_final(client, server, flow_run_id, RUN_TIMEOUT_S)
    assert run.state.is_completed(), run.state.message
    (summary,) = [a for a in _artifacts(client, run.id) if a.key == SUMMARY_KEY]
    # the previous run is this output's (from its metrics), not the server's last flow run: a new output has none
    assert "| previous run" not in summary.data and str(first.id) not in summary.data
    # the Artifacts page: one key, two versions
    history = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[SUMMARY_KEY])))
    assert len(history) >= 2


def test_failed_run_says_why_in_its_state_message(server, client, tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    flow_run_id = start_deployment_run(
        client, "fruit-features/local", images=str(tmp_path), output=str(tmp_path / "out")
    )
    run = wait_final(client, server, flow_run_id, RUN_TIMEOUT_S)
    assert run.state.type == StateType.FAILED
    assert "no images under" in run.state.message


def _spark_submits(output: str) -> list[psutil.Process]:
    """The spark-submit JVMs (and any Python under them) whose command line names this output folder."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            cmdline = " ".join(process.info["cmdline"] or [])
        except psutil.Error:
            continue
        if "extract_features.py" in cmdline and output in cmdline:
            found.append(process)
    return found


def test_cancelling_mid_spark_stops_the_job(server, client, fruit_images, tmp_path):
    output = str(tmp_path / "cancelled")
    flow_run_id = start_deployment_run(
        client, "fruit-features/local", images=str(fruit_images), output=output, **NEW_BATCH
    )
    # The run may first wait for the deployment's concurrency slot, released once the previous run has ended.
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not _spark_submits(output) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _spark_submits(output), f"spark-submit never started:\n{server.log_tail('worker')}"
    client.set_flow_run_state(flow_run_id, Cancelling(message="cancelled by the test"))
    run = wait_final(client, server, flow_run_id, 120)
    assert run.state.type == StateType.CANCELLED, run.state.message
    deadline = time.monotonic() + 30
    while _spark_submits(output) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _spark_submits(output), "spark-submit outlived the cancelled run"
    assert not os.path.exists(os.path.join(output, "metrics.json"))


def test_the_scheduled_reaper_completes_on_a_server_without_aws_blocks(server, client):
    """`prefect deploy --all` schedules the reaper every 30 minutes: without AWS blocks it must not go red."""
    flow_run_id = start_deployment_run(client, "reap-clusters/reap-every-30-min")
    run = wait_final(client, server, flow_run_id, RUN_TIMEOUT_S)
    assert run.state.type == StateType.COMPLETED, run.state.message
    deadline, said = time.monotonic() + 30, False
    while not said and time.monotonic() < deadline:  # the worker's flow run sends its logs in batches
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
        said = any("no AwsCredentials block 'fruitflow'" in log.message for log in logs)
        time.sleep(0.5)
    assert said, [log.message for log in logs]
