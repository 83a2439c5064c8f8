"""Serve every deployment of ``prefect.yaml`` from this one process: no work pool, no worker, no ``prefect deploy``.

For one machine: a server in one terminal, this in another::

    prefect server start
    PREFECT_API_URL=http://127.0.0.1:4200/api python -m flows.serve      # --list: only print what it would serve

Each entry of ``prefect.yaml``'s ``deployments:`` becomes ``flow.to_deployment(...)`` with the same name, entrypoint,
description, tags, version, parameters, schedules (the reaper's 30-minute cron included) and concurrency limit,
read from the file, so the two ways of deploying cannot drift apart. Runs are started as subprocesses of this
process, from this clone; Ctrl-C stops serving (and pauses the served schedules, as ``serve`` does). For a team,
with workers on other machines, use ``prefect deploy --all`` and a work pool instead (README).
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


def _schedule(entry: dict[str, Any]) -> Schedule:
    """One ``schedules:`` item of prefect.yaml (cron, interval or rrule, with timezone/active/parameters)."""
    common = {
        "timezone": entry.get("timezone"),
        "active": entry.get("active", True),
        "parameters": entry.get("parameters") or None,
    }
    if "cron" in entry:
        return Cron(entry["cron"], day_or=entry.get("day_or", True), **common)
    if "interval" in entry:
        return Interval(entry["interval"], anchor_date=entry.get("anchor_date"), **common)
    if "rrule" in entry:
        return RRule(entry["rrule"], **common)
    raise ValueError(f"unsupported schedule in prefect.yaml: {entry}")


def _concurrency(entry: dict[str, Any]) -> int | ConcurrencyLimitConfig | None:
    limit = entry.get("concurrency_limit")
    if isinstance(limit, dict):
        return ConcurrencyLimitConfig(**limit)
    return limit


def build_deployments(path: Path = PREFECT_YAML) -> list[RunnerDeployment]:
    """The deployments ``python -m flows.serve`` serves: one per entry of prefect.yaml, nothing served yet."""
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
                schedules=[_schedule(schedule) for schedule in entry.get("schedules") or []],
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
    deployments = build_deployments()
    if args.list:
        for deployment in deployments:
            schedules = ", ".join(
                f"{s.schedule.cron} {s.schedule.timezone}{'' if s.active else ' (paused)'}"
                if hasattr(s.schedule, "cron")
                else str(s.schedule)
                for s in deployment.schedules or []
            )
            print(f"{deployment.flow_name}/{deployment.name}: {deployment.entrypoint}  {schedules or 'no schedule'}")
        return 0
    serve(*deployments, limit=args.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
