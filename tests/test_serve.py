"""``python -m flows.serve``: the deployments of prefect.yaml, served from one process without a work pool.

The deployments it builds are compared field by field with prefect.yaml (read independently here); the slow test
serves them against a fresh Prefect server of its own (serving re-points deployments of the same names at the
serving process, which must not happen to the shared server the worker tests use), runs one, and stops serving.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
import yaml
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import StateType
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.serve import build_deployments
from tests.prefect_server import (
    REPO,
    PrefectServer,
    emptied,
    poll,
)
from tests.prefect_server import serving as serving_flows

ENTRIES = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]
FLOW_NAMES = {
    "flows/fruit_features.py:fruit_features": "fruit-features",
    "flows/reap.py:reap_clusters": "reap-clusters",
    "flows/weekly.py:fruit_features_weekly": "fruit-features-weekly",
}


def _full_name(entry: dict) -> str:
    return f"{FLOW_NAMES[entry['entrypoint']]}/{entry['name']}"


def _expected_schedule(entry: dict, item: dict) -> dict:
    """A schedule of prefect.yaml as serve builds it without a server: ``active`` from its schedule_state step."""
    (step,) = [step["flows.deployment_steps.schedule_state"] for step in entry["build"]]
    assert item["active"] == "{{ " + step["id"] + ".active }}" and item["slug"] == step["slug"]
    return {
        "cron": item["cron"],
        "timezone": item["timezone"],
        "slug": item["slug"],
        "active": step["first_deploy_active"],
    }


def test_serves_every_deployment_of_prefect_yaml_with_the_same_settings():
    built = {f"{d.flow_name}/{d.name}": d for d in build_deployments()}
    assert set(built) == {_full_name(entry) for entry in ENTRIES}
    assert {"fruit-features/local", "fruit-features/emr", "reap-clusters/reap-every-30-min"} <= set(built)
    for entry in ENTRIES:
        deployment = built[_full_name(entry)]
        assert deployment.entrypoint == entry["entrypoint"]
        assert deployment.description == entry["description"]
        assert deployment.tags == entry["tags"]
        assert deployment.parameters == entry["parameters"]
        assert deployment.work_pool_name is None  # served: run by the serving process, not a worker
        schedules = [
            {"cron": s.schedule.cron, "timezone": s.schedule.timezone, "slug": s.slug, "active": s.active}
            for s in deployment.schedules
        ]
        assert schedules == [_expected_schedule(entry, item) for item in entry["schedules"] or []]
        limit = entry.get("concurrency_limit")
        if limit:
            assert deployment.concurrency_limit == limit["limit"]
            assert deployment.concurrency_options.collision_strategy == limit["collision_strategy"]
        else:
            assert deployment.concurrency_limit is None


def test_the_reaper_keeps_its_30_minute_cron():
    reapers = {d.name: d for d in build_deployments() if d.flow_name == "reap-clusters"}
    (schedule,) = reapers["reap-every-30-min"].schedules
    assert schedule.schedule.cron == "*/30 * * * *" and schedule.schedule.timezone == "UTC" and schedule.active
    assert reapers["scheduled"].schedules == []  # its former name, kept for commands, runs on no schedule
    assert reapers["scheduled"].parameters == reapers["reap-every-30-min"].parameters


def test_list_prints_what_would_be_served():
    done = subprocess.run(
        [sys.executable, "-m", "flows.serve", "--list"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    for entry in ENTRIES:
        assert f"{_full_name(entry)}: {entry['entrypoint']}" in done.stdout
    assert "reap-clusters/reap-every-30-min: flows/reap.py:reap_clusters  */30 * * * * UTC" in done.stdout


@pytest.fixture
def own_server(spare_server) -> PrefectServer:
    """The session's spare server, emptied: no pool, no deployments."""
    return emptied(spare_server)


@pytest.fixture
def serving(own_server) -> Iterator[subprocess.Popen]:
    """``python -m flows.serve`` against the test's server, in its own session; stopped (SIGTERM) after."""
    with serving_flows(own_server) as process:
        yield process


def _client(server: PrefectServer):
    return temporary_settings({PREFECT_API_URL: server.api_url})


def _deployment(client: SyncPrefectClient, name: str):
    try:
        return client.read_deployment_by_name(name)
    except ObjectNotFound:  # not there yet
        return None


@pytest.mark.slow
def test_serve_runs_a_deployment_and_stops(own_server, serving):
    with _client(own_server), get_client(sync_client=True) as client:
        deployed = poll(
            lambda: all(found := [_deployment(client, _full_name(entry)) for entry in ENTRIES]) and found,
            120,
            "not every deployment served",
            own_server,
        )
        for entry, deployment in zip(ENTRIES, deployed, strict=True):
            assert deployment.work_pool_name is None
            assert deployment.parameters == entry["parameters"] and deployment.description == entry["description"]
        reaper = client.read_deployment_by_name("reap-clusters/reap-every-30-min")
        (schedule,) = reaper.schedules
        assert schedule.schedule.cron == "*/30 * * * *" and schedule.active

        # No AWS blocks on this server: the reaper has nothing to do and completes (run by the serving process).
        run = client.create_flow_run_from_deployment(reaper.id, parameters={"dry_run": True})
        run = poll(
            lambda: (found := client.read_flow_run(run.id)).state.is_final() and found,
            180,
            "served run not finished",
            own_server,
        )
        assert run.state.type == StateType.COMPLETED, run.state.message

        serving.terminate()  # Ctrl-C / SIGTERM: serving stops and pauses the schedules it served
        serving.wait(timeout=60)
        paused = client.read_deployment_by_name("reap-clusters/reap-every-30-min")
        assert paused.paused or not any(s.active for s in paused.schedules)
