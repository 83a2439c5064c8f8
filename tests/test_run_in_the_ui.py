"""What a run shows in the Prefect UI (issue 21, cases 4-6), read back from a real server as the UI reads it.

Runs of the deployments made by ``prefect deploy --all`` and run by a process worker (tests/prefect_server.py): the
summary with the plot inside it and rows that fit a 1400 px page, the progress with images/s, per-run artifact
descriptions, the failed images, the output's link, the ``fruitflow.output.ready`` event, and failed runs whose
state message is the one-line reason in the UI's words.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from uuid import UUID

import pytest
from prefect import flow
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterId,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.events.worker import EventsWorker
from prefect.settings import PREFECT_API_URL, temporary_settings

from tasks.output_ready import OUTPUT_READY
from tasks.progress import JobProgress
from tasks.reporting import CLASSES_KEY, SUMMARY_KEY
from tasks.run_artifacts import FAILED_IMAGES_KEY, OUTPUT_KEY
from tests.conftest import REPO
from tests.prefect_server import start_deployment_run, wait_final

pytestmark = pytest.mark.slow

RUN_TIMEOUT_S = 300
# A row of the summary's table, name and value, in characters per line: about what 1400 px hold in the UI, which
# does not wrap table cells.
ROW_LINE_CHARS = 110


@pytest.fixture
def client(prefect_server) -> Iterator[SyncPrefectClient]:
    with temporary_settings({PREFECT_API_URL: prefect_server.api_url}), get_client(sync_client=True) as prefect:
        yield prefect


@pytest.fixture(scope="module")
def ui_run(deployed_run) -> tuple[FlowRun, str]:
    """The session's run of fruit-features/local from the API (as the UI starts it) on 25 images, one of them broken
    (tests/prefect_server.py ``deployed_run``)."""
    run, output = deployed_run
    assert run.state.type == StateType.COMPLETED, run.state.message
    return run, output


def _artifacts(client: SyncPrefectClient, flow_run_id: UUID) -> list:
    return client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))


def _by_key(client: SyncPrefectClient, flow_run_id: UUID) -> dict:
    return {artifact.key: artifact for artifact in _artifacts(client, flow_run_id) if artifact.key}


def test_the_plot_is_inside_the_summary(ui_run, client):
    run, _ = ui_run
    summary = _by_key(client, run.id)[SUMMARY_KEY]
    found = re.search(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", summary.data)
    assert found, "no inline plot in the summary"
    assert base64.b64decode(found.group(1)).startswith(b"\x89PNG\r\n\x1a\n")


def test_the_pca_note_names_the_parameter_in_a_ui_run(ui_run, client):
    run, _ = ui_run
    note = next(line for line in _by_key(client, run.id)[SUMMARY_KEY].data.splitlines() if line.startswith("Note:"))
    note = note.replace("\\", "")  # markdown's escapes
    assert "components used" in note and "pca_components" in note and "--pca-components" not in note, note


def test_every_row_of_the_summary_fits_the_page(ui_run, client, tmp_path_factory):
    run, _ = ui_run
    summary = _by_key(client, run.id)[SUMMARY_KEY]
    # The failed images' paths start with pytest's own folder, longer under pytest-xdist (.../popen-gw0): counted
    # as the 27 characters of /tmp/pytest-of-root/pytest-1, so that the product's layout is what is measured.
    data = summary.data.replace(str(tmp_path_factory.getbasetemp()), "/tmp/pytest-of-root/pytest-1")
    rows = [line for line in data.splitlines() if line.startswith("| ") and line != "| | |"]
    assert len(rows) > 10
    for row in rows:
        name, value = row[2:-2].split(" | ", 1)
        widest = max(len(part) for part in name.split("<br>")) + max(len(part) for part in value.split("<br>"))
        assert widest <= ROW_LINE_CHARS, row


def test_artifact_descriptions_name_the_batch_and_its_counts(ui_run, client):
    run, _ = ui_run
    artifacts = _by_key(client, run.id)
    for key in (SUMMARY_KEY, CLASSES_KEY, OUTPUT_KEY):
        assert artifacts[key].description.startswith("2026-w49: 24/25 images ok, 1 failed"), key
    assert artifacts[FAILED_IMAGES_KEY].description.startswith("2026-w49: 1 failed images (all 1)")


def test_the_failed_images_are_a_table_with_their_reasons(ui_run, client):
    run, _ = ui_run
    (row,) = json.loads(_by_key(client, run.id)[FAILED_IMAGES_KEY].data)
    assert row["path"].endswith("/Banana/broken.jpg") and row["label"] == "Banana"
    assert row["error"]  # the decoder's reason, one line


def test_the_output_is_a_link(ui_run, client):
    run, output = ui_run
    link = _by_key(client, run.id)[OUTPUT_KEY]
    assert link.type == "markdown" and link.data == f"[{output}](file://{output})"


def test_progress_ends_with_the_images_and_their_rate(ui_run, client):
    run, _ = ui_run
    (progress,) = [a for a in _artifacts(client, run.id) if a.type == "progress"]
    assert float(progress.data) == 100.0
    assert re.match(r"100% `█{10}` \d+\.\d images/s, 25/25 images · Spark job: done$", progress.description), (
        progress.description
    )


def test_progress_says_images_per_second_and_the_time_left(prefect_server):
    """The job's own lines, as spark-submit relays them, move the artifact (a clock of the test's)."""
    now = [0.0]

    @flow(name="progress-lines")
    def feed() -> UUID:
        progress = JobProgress("Spark job", clock=lambda: now[0])
        for seconds, message in [
            (0, "listed 210 images (10 unusable as listed) and 3 other files under /data/fruits/2026-w49"),
            (1, "progress: 10% weights done"),
            (6, "progress: 49% featurize, 4/8 tasks"),
        ]:
            now[0] = seconds
            progress.from_job_message(message)
        return progress.artifact_id

    # The process's one events worker is bound to the server it first sent to: this flow's events go to this
    # server through a worker of its own, and the next flow in this process gets one for its own server again.
    EventsWorker.drain_all()
    with temporary_settings({PREFECT_API_URL: prefect_server.api_url}):
        artifact_id = feed()
        EventsWorker.drain_all()
        with get_client(sync_client=True) as client:
            (artifact,) = client.read_artifacts(artifact_filter=ArtifactFilter(id=ArtifactFilterId(any_=[artifact_id])))
    assert float(artifact.data) == 49.0
    assert artifact.description == (
        "49% `█████░░░░░` 20.0 images/s, about 5 s left to featurize, 100/200 images · Spark job: featurize, 4/8 tasks"
    )


def _events(client: SyncPrefectClient, name: str, resource_id: str) -> list[dict]:
    body = {"filter": {"event": {"name": [name]}, "resource": {"id": [resource_id]}}, "limit": 10}
    response = client._client.post("/events/filter", json=body)
    response.raise_for_status()
    return response.json()["events"]


def test_a_validated_output_is_announced_as_an_event(ui_run, client):
    run, output = ui_run
    deadline, events = time.monotonic() + 60, []
    while not events and time.monotonic() < deadline:  # the worker's flow run sends its events in the background
        events = _events(client, OUTPUT_READY, output)
        time.sleep(0.5)
    (event,) = events
    assert event["resource"]["prefect.resource.name"] == "2026-w49"
    assert event["payload"]["images_ok"] == 24 and event["payload"]["images_failed"] == 1
    assert event["payload"]["images_total"] == 25 and event["payload"]["engine"] == "local"
    related = {r["prefect.resource.id"] for r in event["related"]}
    assert f"prefect.flow-run.{run.id}" in related


def _logs(client: SyncPrefectClient, flow_run_id: UUID, expect: str) -> list[str]:
    deadline, messages = time.monotonic() + 30, []
    while not any(expect in m for m in messages) and time.monotonic() < deadline:  # logs arrive in batches
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        messages = [log.message for log in logs]
        time.sleep(0.5)
    return messages


def test_a_missing_input_folder_is_the_state_message_alone(prefect_server, client, tmp_path):
    missing = tmp_path / "2026-w50"
    flow_run_id = start_deployment_run(client, "fruit-features/local", images=str(missing), weights="random")
    run = wait_final(client, prefect_server, flow_run_id, RUN_TIMEOUT_S)
    assert run.state.type == StateType.FAILED
    assert run.state.message == f"InputError: input folder {missing} does not exist"
    messages = _logs(client, run.id, "Finished in state Failed")
    assert any(m == run.state.message for m in messages), messages
    assert not [m for m in messages if "Traceback" in m]
    # the failure notice reads the run's parameters: the output the run chose is there, not an empty one
    assert run.parameters["job"]["images"] == str(missing)
    assert run.parameters["job"]["output"].startswith(str(REPO / "output" / "run-"))


def test_a_missing_block_says_which_parameter_in_a_ui_run(prefect_server, client):
    blocks = {name: "nobodys-block" for name in ("aws_credentials_block", "s3_bucket_block", "cluster_block")}
    flow_run_id = start_deployment_run(client, "fruit-features/emr", images="s3://fruit-bucket/2026-w50", **blocks)
    run = wait_final(client, prefect_server, flow_run_id, RUN_TIMEOUT_S)
    assert run.state.type == StateType.FAILED
    message = run.state.message
    assert message.startswith("MissingBlock: no ") and "'nobodys-block'" in message, message
    assert "the parameter `" in message and "--" not in message and "\n" not in message, message
    messages = _logs(client, run.id, "Finished in state Failed")
    assert not [m for m in messages if "Traceback" in m or "--aws-credentials-block" in m], messages
