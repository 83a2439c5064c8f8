"""Deployments that coexist (issue 21): unique names, schedules that survive a redeploy, serve after ``deploy --all``,
and a reaper that stops scheduling itself where there is nothing to reap.

One Prefect server of this module's own (no worker): a process work pool and ``prefect --no-prompt deploy --all``
from the repo root, as the README does it; then the tests redeploy, rename and finally serve against it (serve
re-points deployments at the serving process, which must not happen to the session's shared server).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import yaml
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import StateType
from prefect.exceptions import ObjectNotFound
from prefect.schedules import Cron
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Scheduled

from tests.conftest import TEST_ALPHA
from tests.prefect_server import (
    REPO,
    PrefectServer,
    deploy_all,
    emptied,
    poll,
    wait_final,
)
from tests.prefect_server import serving as serving_flows

ENTRIES = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]
WEEKLY = "fruit-features-weekly/weekly-local"
REAPER = "reap-clusters/reap-every-30-min"
RUN_TIMEOUT_S = 300


def test_deployment_names_are_unique_across_flows():
    """`prefect deploy --name NAME` deploys one deployment, and the Deployments page never shows a name twice."""
    names = [entry["name"] for entry in ENTRIES]
    assert len(names) == len(set(names)), sorted(names)
    assert "local" in names  # the name users call as fruit-features/local stays
    assert {"weekly-local", "reap-every-30-min"} <= set(names)


@pytest.fixture(scope="module")
def deployed(spare_server) -> tuple[PrefectServer, str]:
    """The session's spare server emptied, the process pool ``fruitflow`` and ``deploy --all``; with the first
    deploy's output. (Its scheduler runs every second: the reaper's scheduled run is there at once.)"""
    server = emptied(spare_server)
    server.cli("work-pool", "create", "fruitflow", "--type", "process")
    return server, deploy_all(server)


@pytest.fixture
def client(deployed) -> Iterator[SyncPrefectClient]:
    server, _ = deployed
    with temporary_settings({PREFECT_API_URL: server.api_url}), get_client(sync_client=True) as prefect:
        yield prefect


def _schedule(client: SyncPrefectClient, name: str):
    (schedule,) = client.read_deployment_by_name(name).schedules
    return schedule


@pytest.mark.slow
def test_neither_deploy_nor_redeploy_prints_the_schedules_deprecation(deployed):
    """Prefect 3.9 warns on ``schedules: []`` when it updates a deployment: every deploy after the first."""
    server, first = deployed
    again = deploy_all(server)
    for output in (first, again):
        assert "deprecated" not in output and "schedules: null" not in output, output


@pytest.mark.slow
def test_a_redeploy_keeps_the_schedules_as_the_user_left_them(deployed, client):
    server, _ = deployed
    weekly, reaper = _schedule(client, WEEKLY), _schedule(client, REAPER)
    assert not weekly.active and reaper.active  # the first deploy: prefect.yaml's first_deploy_active
    deployment_ids = {name: client.read_deployment_by_name(name).id for name in (WEEKLY, REAPER)}
    client.update_deployment_schedule(deployment_ids[WEEKLY], weekly.id, active=True)  # the user resumes it
    client.update_deployment_schedule(deployment_ids[REAPER], reaper.id, active=False)  # and pauses this one

    deploy_all(server)

    assert _schedule(client, WEEKLY).active, "the redeploy paused the weekly schedule the user had resumed"
    assert not _schedule(client, REAPER).active, "the redeploy resumed the reaper schedule the user had paused"
    assert _schedule(client, WEEKLY).schedule.cron == "0 6 * * 1"


@pytest.mark.slow
def test_a_deployment_under_its_old_name_is_replaced_with_its_schedule_state(deployed, client):
    """A server deployed before the rename holds fruit-features-weekly/local, resumed by its user: the next deploy
    deletes it (no second weekly run) and the renamed deployment carries its schedule on, resumed."""
    server, _ = deployed
    from flows.weekly import fruit_features_weekly

    client.delete_deployment(client.read_deployment_by_name(WEEKLY).id)
    old = fruit_features_weekly.to_deployment(name="local", schedules=[Cron("0 6 * * 1", timezone="UTC")])
    with temporary_settings({PREFECT_API_URL: server.api_url}):
        old.apply()
    assert _schedule(client, "fruit-features-weekly/local").active

    output = deploy_all(server)

    assert "fruit-features-weekly/local is renamed fruit-features-weekly/weekly-local: run it as" in output
    with pytest.raises(ObjectNotFound):
        client.read_deployment_by_name("fruit-features-weekly/local")
    assert _schedule(client, WEEKLY).active


@pytest.fixture(scope="module")
def serving(deployed) -> Iterator[PrefectServer]:
    """``python -m flows.serve`` against the module's server (which ``deploy --all`` filled); stopped after."""
    server, _ = deployed
    with serving_flows(server):
        yield server


@pytest.mark.slow
def test_serve_after_deploy_all_takes_the_deployments_over_and_runs_them(
    deployed, client, serving, fruit_images, tmp_path
):
    before = client.read_deployment_by_name("fruit-features/local")
    if before.work_pool_name is not None:  # made by `prefect deploy --all`: a worker's deployment
        assert before.pull_steps and before.path is None
    poll(lambda: "deployments are being served" in serving.log_tail("serve"), 120, "not serving", serving)

    parameters = {"images": str(fruit_images), "output": str(tmp_path / "served"), "weights": "random"}
    parameters |= {"alpha": TEST_ALPHA, "pca_components": 5, "batch_size": 8}
    # a dry run: the flow's code loaded from where serve keeps it and run (what failed), without the job's own minutes
    run = client.create_flow_run_from_deployment(before.id, parameters={"job": parameters, "dry_run": True})
    run = poll(
        lambda: (found := client.read_flow_run(run.id)).state.is_final() and found,
        RUN_TIMEOUT_S,
        "served run not finished",
        serving,
    )
    assert run.state.type == StateType.COMPLETED, run.state.message

    served = client.read_deployment_by_name("fruit-features/local")
    assert served.work_pool_name is None and not served.pull_steps and served.path  # no worker takes its runs
    assert "fruit-features/local: taken over from work pool 'fruitflow'" in serving.log_tail("serve", 200)
    assert run.parameters["dry_run"] is True and run.parameters["job"]["output"] == str(tmp_path / "served")


def _scheduled_runs(client: SyncPrefectClient, deployment_id) -> list:
    return client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
        ),
    )


@pytest.mark.slow
def test_a_scheduled_reaper_without_aws_blocks_pauses_its_schedule_and_says_why(client, serving):
    reaper = client.read_deployment_by_name(REAPER)
    schedule = _schedule(client, REAPER)
    if not schedule.active:  # an earlier test of this module paused it as a user
        client.update_deployment_schedule(reaper.id, schedule.id, active=True)
    # The scheduler's next run of the reaper (at the next half hour), moved to now: a run the schedule made.
    (run, *_) = poll(
        lambda: [r for r in _scheduled_runs(client, reaper.id) if r.auto_scheduled],
        120,
        "the scheduler made no reaper run",
        serving,
    )
    client.set_flow_run_state(run.id, Scheduled(scheduled_time=datetime.now(UTC)), force=True)
    run = wait_final(client, serving, run.id, RUN_TIMEOUT_S)
    assert run.state.type == StateType.COMPLETED, run.state.message

    assert not _schedule(client, REAPER).active
    said = poll(
        lambda: [
            log.message
            for log in client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
            if "paused this deployment's schedule" in log.message
        ],
        30,
        "no log line saying why the schedule was paused",
        serving,
    )
    assert "python -m blocks.create_blocks" in said[0] and REAPER in said[0]
    # Paused: no more reaper runs wait in the Runs list.
    assert not [r for r in _scheduled_runs(client, reaper.id) if r.auto_scheduled]


@pytest.mark.slow
def test_a_deploy_after_serve_gives_the_deployments_back_to_the_work_pool(deployed, client, serving):
    poll(lambda: "taken over" in serving.log_tail("serve", 200), 120, "no take-over", serving)
    deploy_all(deployed[0])
    deployment = client.read_deployment_by_name("fruit-features/local")
    assert deployment.work_pool_name == "fruitflow"
    assert deployment.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}]
