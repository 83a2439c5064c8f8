"""Serve every deployment of ``prefect.yaml`` from this one process: no work pool, no worker, no ``prefect deploy``.

For one machine: a server in one terminal, this in another::

    prefect server start
    PREFECT_API_URL=http://127.0.0.1:4200/api python -m flows.serve      # --list: only print what it would serve

Each entry of ``prefect.yaml``'s ``deployments:`` becomes ``flow.to_deployment(...)`` with the same name, entrypoint,
description, tags, version, parameters, schedules (the reaper's 30-minute cron included) and concurrency limit,
read from the file, so the two ways of deploying cannot drift apart. Runs are started as subprocesses of this
process, from this clone; Ctrl-C stops serving (and pauses the served schedules, as ``serve`` does). For a team,
with workers on other machines, use ``prefect deploy --all`` and a work pool instead (README).

Deployments of the same names that ``prefect deploy --all`` made are taken over (``flows.deployment_steps.take_over``:
no work pool, no pull step, served from here; one line each says so), and schedules keep the state the server holds
(a paused weekly schedule stays paused, a resumed one resumed), as a redeploy does.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from typing import Any

import yaml
from prefect import Flow, serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron, Interval, RRule, Schedule

from flows.deployment_steps import served_active, take_over

REPO = Path(__file__).resolve().parent.parent
PREFECT_YAML = REPO / "prefect.yaml"


def load_deployment_entries(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    """The ``deployments:`` list of a prefect.yaml (its anchors resolved)."""
    return yaml.safe_load(Path(path).read_text())["deployments"]


def load_flow(entrypoint: str) -> Flow:
    """``flows/fruit_features.py:fruit_features`` -> the flow object, imported as a module of this package."""
    file, _, name = entrypoint.partition(":")
    module = importlib.import_module(file.removesuffix(".py").replace("/", "."))
    found = getattr(module, name)
    if not isinstance(found, Flow):
        raise TypeError(f"{entrypoint} is not a Prefect flow")
    return found


def _schedule(entry: dict[str, Any], item: dict[str, Any], ask_server: bool) -> Schedule:
    """One ``schedules:`` item of prefect.yaml (cron, interval or rrule, with timezone/active/parameters/slug)."""
    common = {
        "timezone": item.get("timezone"),
        "active": served_active(entry, item, ask_server),
        "parameters": item.get("parameters") or None,
        "slug": item.get("slug"),
    }
    if "cron" in item:
        return Cron(item["cron"], day_or=item.get("day_or", True), **common)
    if "interval" in item:
        return Interval(item["interval"], anchor_date=item.get("anchor_date"), **common)
    if "rrule" in item:
        return RRule(item["rrule"], **common)
    raise ValueError(f"unsupported schedule in prefect.yaml: {item}")


def _concurrency(entry: dict[str, Any]) -> int | ConcurrencyLimitConfig | None:
    limit = entry.get("concurrency_limit")
    if isinstance(limit, dict):
        return ConcurrencyLimitConfig(**limit)
    return limit


def build_deployments(path: Path = PREFECT_YAML, ask_server: bool = False) -> list[RunnerDeployment]:
    """The deployments ``python -m flows.serve`` serves: one per entry of prefect.yaml, nothing served yet.

    With ``ask_server``, a schedule whose ``active`` comes from the ``schedule_state`` step keeps the server's state
    (as ``prefect deploy`` does); without, it gets the step's ``first_deploy_active`` (``--list``, tests).
    """
    deployments = []
    for entry in load_deployment_entries(path):
        flow = load_flow(entry["entrypoint"])
        deployments.append(
            flow.to_deployment(
                name=entry["name"],
                description=entry.get("description"),
                tags=entry.get("tags") or [],
                version=entry.get("version"),
                parameters=entry.get("parameters") or {},
                schedules=[_schedule(entry, item, ask_server) for item in entry.get("schedules") or []],
                concurrency_limit=_concurrency(entry),
            )
        )
    return deployments


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flows.serve",
        description="Serve fruitflow's deployments (from prefect.yaml) from this process, without a work pool.",
    )
    parser.add_argument("--list", action="store_true", help="print the deployments and their schedules, then exit")
    parser.add_argument("--limit", type=int, default=None, help="at most this many flow runs at once")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.chdir(REPO)  # the entrypoints (flows/...) are relative to the repo root, as in prefect.yaml
    deployments = build_deployments(ask_server=not args.list)
    if args.list:
        for deployment in deployments:
            schedules = ", ".join(
                f"{s.schedule.cron} {s.schedule.timezone}{'' if s.active else ' (paused on its first deploy)'}"
                if hasattr(s.schedule, "cron")
                else str(s.schedule)
                for s in deployment.schedules or []
            )
            print(f"{deployment.flow_name}/{deployment.name}: {deployment.entrypoint}  {schedules or 'no schedule'}")
        return 0
    for line in take_over(deployments):
        print(line, flush=True)
    serve(*deployments, limit=args.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
