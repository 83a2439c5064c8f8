"""How ``prefect deploy`` and ``python -m flows.serve`` treat the deployments already on the server.

- :func:`schedule_state` is a build step of ``prefect.yaml`` (serve calls it too): the ``active`` a schedule gets on
  this deploy. Prefect 3.9 patches a schedule by its ``slug`` and re-applies whatever ``active`` the file says, so
  ``active: false`` would pause the weekly schedule again on every redeploy, and ``active: true`` would resume the
  reaper that paused itself. The step answers the server's own state instead (a user's pause or resume stays), and
  the file's value only where the schedule is new. ``formerly`` names the deployment's old name: its schedule's state
  is carried over and the old deployment deleted, so that a renamed deployment never runs twice; or, with
  ``formerly_stays_unscheduled`` (the reaper's old name, which commands still run), only the old deployment's
  schedules are deleted (and with them the runs they had scheduled), on every deploy.
- :func:`take_over` points deployments that ``prefect deploy`` made (work pool ``fruitflow``, a pull step, no
  ``path``) at the serving process, which otherwise keeps their ``path=None`` and crashes every run with
  ``FileNotFoundError: '<repo>/None'``.
"""

from __future__ import annotations

from typing import Any

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import DeploymentUpdate
from prefect.client.schemas.responses import DeploymentResponse
from prefect.deployments.runner import RunnerDeployment
from prefect.exceptions import ObjectNotFound

SCHEDULE_STATE_STEP = "flows.deployment_steps.schedule_state"
# What Flow.to_deployment stores for a file entrypoint served from the repo root (serve's working directory).
SERVED_PATH = "."


def _read(client: SyncPrefectClient, name: str) -> DeploymentResponse | None:
    try:
        return client.read_deployment_by_name(name)
    except ObjectNotFound:
        return None


def _stored_active(deployment: DeploymentResponse, slug: str) -> bool | None:
    """The ``active`` of the deployment's schedule ``slug`` (or of its one schedule without a slug); None: none."""
    schedules = deployment.schedules or []
    matching = [s for s in schedules if s.slug == slug] or [s for s in schedules if s.slug is None][:1]
    return matching[0].active if matching else None


def schedule_state(
    deployment: str,
    slug: str,
    first_deploy_active: bool,
    formerly: str | None = None,
    formerly_stays_unscheduled: bool = False,
) -> dict[str, Any]:
    """A ``prefect.yaml`` build step: ``{"active": ...}`` for the schedule ``slug`` of ``deployment`` (flow/name).

    The server's value when the schedule exists (under this name, else under ``formerly``), otherwise
    ``first_deploy_active``. An old deployment ``formerly`` is deleted once its state is read (it was renamed); with
    ``formerly_stays_unscheduled`` it stays (an alias that prefect.yaml deploys without a schedule) and its schedules
    are deleted instead, so that only ``deployment``'s schedule runs the flow.

    Example:
        ``build: [{flows.deployment_steps.schedule_state: {id: weekly, deployment: f/n, slug: s,
        first_deploy_active: false}}]`` and ``active: "{{ weekly.active }}"`` on the schedule.
    """
    with get_client(sync_client=True) as client:
        current = _read(client, deployment)
        old = _read(client, formerly) if formerly else None
        active = None
        for found in (current, old):
            if active is None and found is not None:
                active = _stored_active(found, slug)
        active = first_deploy_active if active is None else active
        state = "active" if active else "paused"
        if old is not None and not formerly_stays_unscheduled:
            client.delete_deployment(old.id)
            print(
                f"{formerly} is renamed {deployment}: run it as `prefect deployment run '{deployment}'` "
                f"(its schedule carried over, {state}; the deployment under the old name is deleted)"
            )
        elif old is not None and old.schedules:
            for schedule in old.schedules:
                client.delete_deployment_schedule(old.id, schedule.id)
            print(
                f"{formerly}: its schedule moved to {deployment} ({state}); {formerly} stays, without a schedule, "
                "for the commands that run it by that name"
            )
    return {"active": active}


def served_active(entry: dict[str, Any], schedule: dict[str, Any], ask_server: bool = True) -> bool:
    """A schedule's ``active`` for serve: literal in prefect.yaml, or ``{{ ID.active }}`` from the entry's step ID
    (asked of the server, as ``prefect deploy`` does; without ``ask_server``, the step's ``first_deploy_active``)."""
    active = schedule.get("active", True)
    if not isinstance(active, str):
        return bool(active)
    step_id = active.strip().removeprefix("{{").removesuffix("}}").strip().removesuffix(".active")
    for step in entry.get("build") or []:
        inputs = dict(step.get(SCHEDULE_STATE_STEP) or {})
        if inputs.pop("id", None) == step_id:
            return schedule_state(**inputs)["active"] if ask_server else inputs["first_deploy_active"]
    raise ValueError(f"prefect.yaml: {active!r} names no {SCHEDULE_STATE_STEP} step of {entry['name']}")


def take_over(deployments: list[RunnerDeployment]) -> list[str]:
    """Make deployments of the same names that ``prefect deploy`` left on the server runnable by serve.

    Their work pool is cleared (a worker would otherwise take their runs too), their pull steps removed and their
    ``path`` set as serve sets it for a deployment it creates. Returns one line per deployment taken over.
    """
    taken = []
    with get_client(sync_client=True) as client:
        for deployment in deployments:
            name = f"{deployment.flow_name}/{deployment.name}"
            existing = _read(client, name)
            if existing is None or (existing.work_pool_name is None and existing.path and not existing.pull_steps):
                continue
            update = DeploymentUpdate(work_pool_name=None, pull_steps=None, path=SERVED_PATH)
            client.update_deployment(existing.id, update)
            pool = f"work pool {existing.work_pool_name!r}" if existing.work_pool_name else "its pull steps"
            back = "`prefect deploy --all` hands it back"
            taken.append(f"{name}: taken over from {pool}; its runs start in this process now ({back})")
    return taken
