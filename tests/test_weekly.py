"""The weekly run (fruit-features-weekly) and the failure notice (automations.yaml), alone and on a real server.

The slow tests use the real Prefect server of the deployment tests (``prefect deploy --all`` deployed
fruit-features-weekly/weekly-local from prefect.yaml, a process worker runs it): the notice is created with the
documented command, a weekly run on a week folder that does not exist fails, and the notice arrives at a local webhook.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import yaml
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
from prefect.client.schemas.objects import StateType
from prefect.server.events.schemas.automations import EventTrigger as ServerEventTrigger
from prefect.server.events.schemas.events import ReceivedEvent
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.deployment_steps import served_active
from flows.weekly import AUTOMATIONS_YAML, TemplateError, automation_specs, fill, run_date
from tests.prefect_server import REPO, PrefectServer, wait_final

PREFECT_YAML = REPO / "prefect.yaml"


def _weekly_entry() -> dict:
    (entry,) = [d for d in yaml.safe_load(PREFECT_YAML.read_text())["deployments"] if "weekly" in d["entrypoint"]]
    return entry


# ---- the templates --------------------------------------------------------------------------------------------


def test_templates_use_the_iso_week_and_the_week_before():
    monday = datetime(2024, 12, 30, 6, tzinfo=UTC)  # ISO week 1 of 2025, though still December 2024
    assert fill("/data/fruits/{date:%G-w%V}", monday) == "/data/fruits/2025-w01"
    assert fill("s3://bucket/runs/{previous:%G-w%V}", monday) == "s3://bucket/runs/2024-w52"
    assert fill("/data/{date:%Y-%m-%d}", monday) == "/data/2024-12-30"
    assert fill("/data/fixed", monday) == "/data/fixed" and fill(None, monday) is None


def test_the_health_stage_compares_with_the_output_the_week_chains_to():
    from flows.weekly import health_against

    monday = datetime(2026, 12, 7, 6, tzinfo=UTC)
    assert health_against("/out/{previous:%G-w%V}", None, monday) == ["/out/2026-w49"]
    assert health_against("/out/{previous:%G-w%V}", ["/base", "/out/2026-w49"], monday) == ["/base", "/out/2026-w49"]
    assert health_against(None, "/base/{date:%G}", monday) == ["/base/2026"]
    assert health_against(None, None, monday) == []


def test_a_bad_template_says_which_fields_exist():
    with pytest.raises(TemplateError, match=r"\{date:%G-w%V\}"):
        fill("/data/{week}", datetime(2026, 12, 1, tzinfo=UTC))


def test_run_date_is_utc_and_a_backfill_date_overrides_it():
    assert run_date("2026-12-01") == datetime(2026, 12, 1, tzinfo=UTC)
    assert run_date("2026-12-01T01:00:00+02:00") == datetime(2026, 11, 30, 23, tzinfo=UTC)
    assert abs((run_date() - datetime.now(UTC)).total_seconds()) < 60  # outside a run: now


def test_weekly_deployment_in_prefect_yaml_is_a_paused_monday_schedule_of_templates():
    entry = _weekly_entry()
    assert entry["entrypoint"] == "flows/weekly.py:fruit_features_weekly"
    assert entry["parameters"]["deployment"] == "fruit-features/local"
    assert "{date:%G-w%V}" in entry["parameters"]["images"] and "{date:%G-w%V}" in entry["parameters"]["output"]
    # Paused on its first deploy, until the user points it at real folders: no red run every Monday on a fresh clone.
    (schedule,) = entry["schedules"]
    assert (schedule["cron"], schedule["timezone"], schedule["slug"]) == ("0 6 * * 1", "UTC", "monday-0600-utc")
    assert served_active(entry, schedule, ask_server=False) is False


# ---- the failure notice's trigger -----------------------------------------------------------------------------


def _state_event(state: str, flow_name: str) -> ReceivedEvent:
    """A flow-run state event as the Prefect server emits it (resource: the run; related: its flow)."""
    return ReceivedEvent(
        occurred=datetime.now(UTC),
        event=f"prefect.flow-run.{state}",
        resource={"prefect.resource.id": f"prefect.flow-run.{uuid.uuid4()}", "prefect.resource.name": "small-coati"},
        related=[
            {
                "prefect.resource.id": f"prefect.flow.{uuid.uuid4()}",
                "prefect.resource.role": "flow",
                "prefect.resource.name": flow_name,
            }
        ],
        id=uuid.uuid4(),
    )


def _server_trigger(trigger: dict) -> ServerEventTrigger:
    return ServerEventTrigger.model_validate(trigger)


def test_trigger_matches_failed_and_crashed_fruit_features_runs_only():
    (spec,) = automation_specs(str(uuid.uuid4()))
    trigger = _server_trigger(spec["trigger"])
    assert trigger.immediate  # reactive, threshold 1: one notice per failed run, at once
    assert trigger.covers(_state_event("Failed", "fruit-features"))
    assert trigger.covers(_state_event("Crashed", "fruit-features"))
    assert not trigger.covers(_state_event("Completed", "fruit-features"))
    assert not trigger.covers(_state_event("Cancelled", "fruit-features"))
    assert not trigger.covers(_state_event("Failed", "reap-clusters"))
    assert not trigger.covers(_state_event("Failed", "fruit-features-weekly"))  # its child's notice is enough


def test_automation_file_needs_only_the_block_id():
    block_id = str(uuid.uuid4())
    (spec,) = automation_specs(block_id)
    (action,) = spec["actions"]
    assert action["type"] == "send-notification" and action["block_document_id"] == block_id
    assert "{{ notification_block }}" in AUTOMATIONS_YAML.read_text()  # the file itself stays a template
    assert "flow_run.state.message" in action["body"] and "ui_url" in action["body"]


# ---- on the real server ---------------------------------------------------------------------------------------


class _Webhook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).received.append(json.loads(body or b"{}"))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict]]]:
    """A local HTTP endpoint that records what the notification block POSTs to it."""
    received: list[dict] = []
    handler = type("Webhook", (_Webhook,), {"received": received})
    httpd = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/notify", received
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def client(prefect_server) -> Iterator[SyncPrefectClient]:
    with temporary_settings({PREFECT_API_URL: prefect_server.api_url}), get_client(sync_client=True) as prefect:
        yield prefect


def _notify(server: PrefectServer, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "flows.weekly", "notify", *args],
        cwd=REPO,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    return done.stdout


def _wait_final(client: SyncPrefectClient, server: PrefectServer, flow_run_id, timeout_s: float = 300):
    return wait_final(client, server, flow_run_id, timeout_s)


@pytest.mark.slow
def test_weekly_deployment_is_deployed_paused(prefect_server, client):
    deployment = client.read_deployment_by_name("fruit-features-weekly/weekly-local")
    (schedule,) = deployment.schedules
    assert schedule.schedule.cron == "0 6 * * 1" and schedule.schedule.timezone == "UTC"
    assert not schedule.active
    assert deployment.parameters["images"] == "/data/fruits/{date:%G-w%V}"


@pytest.mark.slow
def test_failed_weekly_run_sends_the_notice(prefect_server, client, webhook, tmp_path):
    url, received = webhook
    out = _notify(prefect_server, "--webhook-url", url)
    assert "automation" in out
    (automation,) = client.read_automations_by_name("fruit-features-failed")
    try:
        assert automation.enabled
        assert _server_trigger(automation.trigger.model_dump(mode="json")).covers(
            _state_event("Failed", "fruit-features")
        )
        # Created again (the documented command, run twice): replaced, not duplicated.
        _notify(prefect_server, "--block", "custom-webhook/fruitflow-failures")
        (automation,) = client.read_automations_by_name("fruit-features-failed")

        weekly = client.read_deployment_by_name("fruit-features-weekly/weekly-local")
        parameters = {
            "images": f"{tmp_path}/fruits/{{date:%G-w%V}}",  # this week's folder was never made
            "output": f"{tmp_path}/out/{{date:%G-w%V}}",
            "date": "2026-12-01",
            "parameters": {"weights": "random"},
        }
        parent = client.create_flow_run_from_deployment(weekly.id, parameters=parameters)
        parent = _wait_final(client, prefect_server, parent.id)
        assert parent.state.type == StateType.FAILED
        (child,) = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent.id]))
        )
        assert child.parameters["job"]["images"] == f"{tmp_path}/fruits/2026-w49"
        assert child.parameters["job"]["output"] == f"{tmp_path}/out/2026-w49"
        assert child.state.type == StateType.FAILED and child.name in parent.state.message

        deadline = time.monotonic() + 90
        while not received and time.monotonic() < deadline:
            time.sleep(1)
        assert received, f"no notice within 90 s; server log:\n{prefect_server.log_tail('server')}"
        (notice,) = received  # one per failed fruit-features run: not the weekly parent's failure too
        assert notice["subject"] == f"fruit-features run {child.name} Failed"
        assert f"{tmp_path}/fruits/2026-w49" in notice["body"] and "does not exist" in notice["body"]
    finally:
        # Leave the shared server as it was: no notices for other modules' failing runs.
        client.delete_automation(automation.id)


def test_notify_without_a_block_says_what_to_give(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "flows.weekly", "notify"],
        cwd=REPO,
        env={**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "--webhook-url" in done.stderr
    assert Path(AUTOMATIONS_YAML).exists()
