"""``python -m flows.fruit_features``: the flow's command line, made from its parameter models.

Without an API to talk to (no ``PREFECT_API_URL``), :func:`main` starts a temporary Prefect server before anything
else, so that it boots on another core while the command line is parsed and the run is prepared.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from prefect import Flow
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
    temporary_settings,
)
from pydantic import ValidationError

from flows.cli_errors import failure_message, quiet_expected_errors
from flows.command_line import add_model_options, one_line
from flows.parameters import JobParameters
from flows.signals import end_runs_on_hangup_and_interrupt
from flows.temporary_server import TemporaryServer, start_if_needed
from tasks.engine_settings import ENGINE_NAMES, ENGINE_SETTINGS, SETTINGS_OF


def build_parser() -> argparse.ArgumentParser:
    """The command line: an ``--option`` per field of the job's model and of the engines' settings, ``--engine``
    (whose settings) and ``--dry-run``; an option not given takes the model's default."""
    parser = argparse.ArgumentParser(
        prog="python -m flows.fruit_features",
        description="MobileNetV2 features and a PCA for a folder (local) or S3 prefix (EMR) of fruit images.",
    )
    add_model_options(parser.add_argument_group("the job (the flow's `job` parameter)"), [JobParameters])
    where = parser.add_argument_group("where it runs (the flow's `engine` parameter)")
    where.add_argument("--engine", choices=ENGINE_NAMES, default="local", help="which engine (default: local)")
    add_model_options(where, ENGINE_SETTINGS, skip=("kind",))
    parser.add_argument(
        "--dry-run", action="store_true", help="Checks and a cost estimate only; nothing is created or run."
    )
    return parser


def parse_run(argv: list[str] | None = None) -> dict[str, Any]:
    """The flow's parameters (``job``, ``engine``, ``dry_run``) from a command line; a misuse (``--cluster-id`` with
    ``--engine local``) exits with the models' reason on one line."""
    parser = build_parser()
    given = vars(parser.parse_args(argv))
    kind, dry_run = given.pop("engine"), given.pop("dry_run")
    job = {name: value for name, value in given.items() if name in JobParameters.model_fields}
    settings = {name: value for name, value in given.items() if name not in job}
    try:
        return {
            "job": JobParameters(**job),
            "engine": SETTINGS_OF[kind](**settings),
            "dry_run": dry_run,
        }
    except ValidationError as error:  # the reason alone, on one line (argparse's usage block would bury it)
        parser.exit(2, f"{parser.prog}: error: {one_line(error)}\n")
        raise  # parser.exit exits


def _run_flow(flow: Flow, parameters: dict[str, Any], server: TemporaryServer | None) -> Any:
    if server is None:  # an API is configured, or ephemeral mode is off: Prefect's own way
        return flow(**parameters, return_state=True)
    print("prefect: temporary server on %s" % server.api_url.removesuffix("/api"), file=sys.stderr)
    server.wait_until_healthy(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
    # stopped at exit (atexit, registered before Prefect's log and event workers: they flush to it first).
    # No heartbeats: they detect crashed runs for a server that outlives them, and this one ends with the command;
    # their thread sleeps in 1 s steps, which the flow's end waited out (0-1 s, ~0.7 s measured) for nothing.
    with temporary_settings(updates={PREFECT_API_URL: server.api_url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        return flow(**parameters, return_state=True)


def main(flow: Flow, argv: list[str] | None = None) -> int:
    """Run ``flow`` (fruit-features) from a command line: 0 when it completed, 1 with the reason on stderr when not.

    Where no API is configured, a temporary server is started first and stopped at exit.
    """
    server = start_if_needed()
    parameters = parse_run(argv)
    # A closed terminal (SIGHUP) and Ctrl-C (SIGINT) end the run as SIGTERM does: nothing remote runs on without it.
    end_runs_on_hangup_and_interrupt()
    # The temporary server started for this run would log an ERROR for every telemetry send it cannot make offline.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    quiet_expected_errors()
    state = _run_flow(flow, parameters, server)
    if state.is_failed() or state.is_crashed():
        print(f"fruit-features failed: {failure_message(state)}", file=sys.stderr)
        return 1
    result = state.result()
    if result.dry_run:
        cost = result.estimate.text if result.estimate else "nothing to pay"
        print(f"dry run: preflight passed; cost estimate: {cost}")
        return 0
    print(f"output: {result.output}\nsummary: {result.output.rstrip('/')}/summary.md")
    return 0
