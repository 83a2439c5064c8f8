"""Old deployment names after the issue 21 renames, on a server deployed before them.

``reap-clusters/scheduled`` (INTERFACE.md) stays runnable, as an unscheduled alias of
``reap-clusters/reap-every-30-min``: after ``prefect deploy --all`` and under ``python -m flows.serve``, a run of it
completes, it holds no schedule and no scheduled runs, and the one active 30-minute reaper schedule on the server is
reap-every-30-min's, in the state the old deployment had. ``fruit-features-weekly/local`` is renamed (its old name
would keep "local" twice): the deploy says the new name. The tests share the session's spare server; each empties it and
fills it with tests/prefect_before_issue_21.yaml (the file as it was), deployed by the real ``prefect deploy``, with
the weekly schedule resumed, as a user had it, and the scheduler's runs already waiting.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL, temporary_settings

from tests.prefect_server import (
    POOL,
    REPO,
    PrefectServer,
    deploy_all,
    emptied,
    poll,
    start_process,
    stop_process,
)
from tests.prefect_server import serving as serving_flows

BEFORE = REPO / "tests" / "prefect_before_issue_21.yaml"
ALIAS = "reap-clusters/scheduled"
REAPER = "reap-clusters/reap-every-30-min"
OLD_WEEKLY, WEEKLY = "fruit-features-weekly/local", "fruit-features-weekly/weekly-local"
EVERY_30_MIN = "*/30 * * * *"
RUN_TIMEOUT_S = 180

pytestmark = pytest.mark.slow


def _auto_scheduled_runs(client: SyncPrefectClient, name: str) -> list:
    deployment = client.read_deployment_by_name(name)
    runs = client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
        ),
    )
    return [run for run in runs if run.auto_scheduled]


def _as_deployed_then(folder: Path) -> Path:
    """tests/prefect_before_issue_21.yaml, its fruit-features deployments unchecked by this server: their flat
    parameters (``engine: local``) matched the flat schema the code of then gave them, not this code's models (a
    server deployed then holds that schema; ``prefect deploy --no-enforce-parameter-schema`` does not reach --all)."""
    config = yaml.safe_load(BEFORE.read_text())
    for deployment in config["deployments"]:
        if deployment.get("entrypoint", "").endswith(":fruit_features"):
            deployment["enforce_parameter_schema"] = False
    path = folder / "prefect_before_issue_21.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def server(spare_server) -> PrefectServer:
    """The session's spare server (its scheduler and workers poll every second), with the process pool."""
    emptied(spare_server).cli("work-pool", "create", POOL, "--type", "process")
    return spare_server


@pytest.fixture
def client(server) -> Iterator[SyncPrefectClient]:
    with temporary_settings({PREFECT_API_URL: server.api_url}), get_client(sync_client=True) as opened:
        yield opened


def _forget_everything(client: SyncPrefectClient) -> None:
    """The server as a fresh one: no deployment and no flow run an earlier test left."""
    for deployment in client.read_deployments():
        client.delete_deployment(deployment.id)
    for run in client.read_flow_runs():
        client.delete_flow_run(run.id)


@pytest.fixture
def last_month(server, client, tmp_path) -> tuple[PrefectServer, SyncPrefectClient]:
    """The server holding only the deployments made before the renames, their schedules active, the scheduler's
    runs of the reaper waiting; with a client of it."""
    _forget_everything(client)
    deploy_all(server, "--prefect-file", str(_as_deployed_then(tmp_path)))
    weekly = client.read_deployment_by_name(OLD_WEEKLY)
    (schedule,) = weekly.schedules
    client.update_deployment_schedule(weekly.id, schedule.id, active=True)  # resumed by its user
    poll(lambda: _auto_scheduled_runs(client, ALIAS), 120, "no scheduled reaper run", server, "server")
    return server, client


def _assert_one_reaper_schedule(client: SyncPrefectClient) -> None:
    """The alias holds no schedule and no runs its old schedule made; reap-every-30-min holds the one active
    30-minute schedule of the server (active, as the old deployment's was); the weekly one moved, resumed."""
    alias = client.read_deployment_by_name(ALIAS)
    assert alias.schedules == [], alias.schedules
    assert "former name" in alias.description.lower() and "no schedule" in alias.description
    assert not _auto_scheduled_runs(client, ALIAS), "the alias's old schedule still has runs waiting"
    reaper = client.read_deployment_by_name(REAPER)
    assert alias.entrypoint == reaper.entrypoint and alias.parameters == reaper.parameters
    (schedule,) = reaper.schedules
    assert schedule.active and schedule.schedule.cron == EVERY_30_MIN
    every_30_min = [
        (deployment.name, s.id)
        for deployment in client.read_deployments()
        for s in deployment.schedules
        if s.active and getattr(s.schedule, "cron", None) == EVERY_30_MIN
    ]
    assert every_30_min == [("reap-every-30-min", schedule.id)], every_30_min
    with pytest.raises(ObjectNotFound):
        client.read_deployment_by_name(OLD_WEEKLY)
    (weekly,) = client.read_deployment_by_name(WEEKLY).schedules
    assert weekly.active, "the weekly schedule its user had resumed came over paused"


def _run_alias(server: PrefectServer, client: SyncPrefectClient, log: str):
    """``prefect deployment run 'reap-clusters/scheduled'`` (dry run: no AWS needed), waited for until final."""
    said = server.cli("deployment", "run", ALIAS, "--param", "dry_run=true")
    (flow_run_id,) = re.findall(r"UUID: ([0-9a-f-]{36})", said)
    run = poll(
        lambda: (found := client.read_flow_run(flow_run_id)).state.is_final() and found,
        RUN_TIMEOUT_S,
        f"the run of {ALIAS} not finished",
        server,
        log,
    )
    assert run.state.type == StateType.COMPLETED, f"{run.state.message}\n{server.log_tail(log)}"
    assert run.parameters.get("dry_run") is True
    return run


def test_deploy_all_keeps_reap_clusters_scheduled_runnable_and_unscheduled(last_month):
    server, client = last_month
    first = deploy_all(server)
    _assert_one_reaper_schedule(client)
    assert f"{ALIAS}: its schedule moved to {REAPER} (active)" in first
    assert f"{OLD_WEEKLY} is renamed {WEEKLY}: run it as `prefect deployment run '{WEEKLY}'`" in first

    again = deploy_all(server)  # a redeploy changes nothing, and says nothing about the old names
    assert "its schedule moved" not in again and "is renamed" not in again
    for output in (first, again):
        assert "deprecated" not in output.lower() and "FutureWarning" not in output, output
    _assert_one_reaper_schedule(client)

    worker = start_process("worker", ["worker", "start", "--pool", POOL, "--limit", "1"], server)
    try:
        run = _run_alias(server, client, "worker")
    finally:
        stop_process(worker)
    assert run.deployment_id == client.read_deployment_by_name(ALIAS).id


def test_deploy_all_moves_a_paused_reaper_schedule_off_the_alias_paused(last_month):
    """The old schedule's state moves, not prefect.yaml's first-deploy value (active): a paused reaper stays paused."""
    server, client = last_month
    alias = client.read_deployment_by_name(ALIAS)
    (schedule,) = alias.schedules
    client.update_deployment_schedule(alias.id, schedule.id, active=False)  # paused by its user

    output = deploy_all(server)

    assert client.read_deployment_by_name(ALIAS).schedules == []
    (moved,) = client.read_deployment_by_name(REAPER).schedules
    assert not moved.active and moved.schedule.cron == EVERY_30_MIN
    assert f"{ALIAS}: its schedule moved to {REAPER} (paused)" in output


def test_serve_keeps_reap_clusters_scheduled_runnable_and_unscheduled(last_month):
    server, client = last_month
    with serving_flows(server):
        poll(lambda: "deployments are being served" in server.log_tail("serve"), 120, "not serving", server, "serve")
        _assert_one_reaper_schedule(client)
        assert client.read_deployment_by_name(ALIAS).work_pool_name is None  # this process runs it, no worker
        said = server.log_tail("serve", 400)
        assert f"{ALIAS}: its schedule moved to {REAPER} (active)" in said
        assert f"{ALIAS}: taken over from work pool 'fruitflow'" in said
        assert "deprecated" not in said.lower() and "FutureWarning" not in said, said

        _run_alias(server, client, "serve")


def test_a_deployment_holding_the_former_flat_engine_still_runs(server, client, tmp_path, fruit_images):
    """fruit-features/local as a server holds it from before the parameters were models (``engine: local``, made here
    through the API as `prefect deploy` made it then), run by a worker of this code: the engine's name is taken as its
    settings, and the run records its paths in the models' shape."""
    _forget_everything(client)
    worker = start_process("worker", ["worker", "start", "--pool", POOL, "--limit", "1"], server)
    try:
        deployment_id = client.create_deployment(
            flow_id=client.create_flow_from_name("fruit-features"),
            name="local",
            entrypoint="flows/fruit_features.py:fruit_features",
            parameters={"engine": "local"},
            work_pool_name=POOL,
            pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}],
            enforce_parameter_schema=False,  # its old flat schema is the server's to check, not this code's
        )
        job = {"images": str(fruit_images), "output": str(tmp_path / "out"), "weights": "random"}
        run_id = client.create_flow_run_from_deployment(deployment_id, parameters={"job": job, "dry_run": True}).id
        run = poll(
            lambda: (found := client.read_flow_run(run_id)).state.is_final() and found,
            RUN_TIMEOUT_S,
            "the run of the old deployment not finished",
            server,
            "worker",
        )
    finally:
        stop_process(worker)
    assert run.state.type == StateType.COMPLETED, f"{run.state.message}\n{server.log_tail('worker')}"
    assert run.parameters["engine"]["kind"] == "local" and run.parameters["job"]["images"] == str(fruit_images)
