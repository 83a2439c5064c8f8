"""The ``fruit-features`` flow: images in, features + PCA out, on the engine ``--engine`` names.

Run it::

    python -m flows.fruit_features --images DIR --output DIR [--weights random] [--engine local|emr]

Without ``--images`` it makes a small set of sample images and writes to ``./output/<run>``. Its parameters are
declared once, in ``JobOptions`` (the job's) and ``EngineSettings`` (where it runs): see flows/parameters.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from typing import Any

from flows.temporary_server import TemporaryServer, start_if_needed

# The command line: the temporary Prefect server boots on another core while the rest is imported.
_SERVER: TemporaryServer | None = start_if_needed() if __name__ == "__main__" else None

from prefect import flow, get_run_logger  # noqa: E402
from prefect.logging.loggers import flow_run_logger  # noqa: E402
from prefect.settings import (  # noqa: E402
    PREFECT_API_URL,
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
    temporary_settings,
)

from flows.cli_errors import failure_message, quiet_expected_errors  # noqa: E402
from flows.command_line import parser_for  # noqa: E402
from flows.parameters import declared_parameters, engine_settings, split  # noqa: E402
from flows.run_failures import fails_with_reason, worded_for  # noqa: E402
from flows.run_paths import record_paths  # noqa: E402
from flows.signals import end_runs_on_hangup_and_interrupt  # noqa: E402
from fruitjob.options import JobOptions  # noqa: E402
from tasks.aws.output_lease import held_output  # noqa: E402
from tasks.contract import Engine, RunResult  # noqa: E402
from tasks.registry import engine_for  # noqa: E402
from tasks.reporting import publish_summary  # noqa: E402
from tasks.validation import validate_output  # noqa: E402


def end_what_the_run_left(flow: Any, flow_run: Any, state: Any) -> None:
    """Flow hook (cancelled, crashed): the run's engine ends whatever this run left running.

    The EMR engine terminates clusters created for the run (found by tags) unless ``keep_cluster``, and cancels the
    run's steps on a kept or reused cluster; the local engine has nothing left (its task stops spark-submit).
    """
    logger = worded_for(flow_run, flow_run_logger(flow_run, flow))  # a UI run's messages name parameters
    engine_for(engine_settings(flow_run)).cleanup(str(flow_run.id), state.name, logger)


def run_engine(engine: Engine, job: JobOptions, dry_run: bool) -> RunResult:
    """Check, (estimate and stop on a dry run), run, validate against the input, publish the summary.

    Each step's wall time goes to ``result.durations_s`` (the flow's own overhead around the job shows there).
    """
    result = RunResult(engine=engine.name, output=job.output, dry_run=dry_run)
    with result.timed("check"):
        result.checked = engine.check(job)
        result.estimate = engine.estimate(job, result.checked)
    if dry_run:
        result.cost_estimate = getattr(result.estimate, "upper_bound", result.estimate)
        get_run_logger().info("dry run: checks passed; nothing was created or run")
        return result
    with held_output(engine, job):  # an S3 output's lease, this flow run's until its summary is written
        with result.timed("run"):
            engine.run(job, result)
        with result.timed("validate"):
            result.validation = validate_output(job.output, engine.filesystem(), job.images)
        publish_summary(result.validation, result, engine.filesystem())
    return result


@flow(
    name="fruit-features",
    log_prints=True,
    # A failure ends what the run created in the engine's own lifecycle (tasks/aws/remote.py: provisioning
    # included); the hooks are for what skips it: a crash, a cancellation.
    on_cancellation=[end_what_the_run_left],
    on_crashed=[end_what_the_run_left],
)
@fails_with_reason  # an error the user can fix: the state message is its one line, worded for where the run started
@declared_parameters
def fruit_features(**parameters: Any) -> RunResult:
    """MobileNetV2 features and a PCA for a folder (local) or S3 prefix (EMR) of fruit images.

    Example:
        >>> fruit_features(weights="random")  # doctest: +SKIP
    """
    fields, settings = split(parameters)
    engine = engine_for(settings)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    images, output = engine.complete(fields["images"], fields["output"], stamp)
    record_paths(images, output)  # the failure notice and the Parameters tab show the paths the run uses
    job = JobOptions(**{**fields, "images": images, "output": output})
    result = run_engine(engine, job, settings.dry_run)
    if result.validation is not None:
        m = result.validation.metrics
        get_run_logger().info(
            "done: %d images ok, %d failed, %d components explain %.3f; output %s",
            m.images_ok,
            m.images_failed,
            m.pca_components,
            m.explained_variance_total,
            job.output,
        )
    return result


def build_parser() -> argparse.ArgumentParser:
    """The command line: one ``--option`` per flow parameter (names with dashes), same defaults."""
    return parser_for(fruit_features, prog="python -m flows.fruit_features")


def _run_flow(args: dict[str, Any], server: TemporaryServer | None):
    if server is None:  # an API is configured, or main() was called from Python: Prefect's own way
        return fruit_features(**args, return_state=True)
    print("prefect: temporary server on %s" % server.api_url.removesuffix("/api"), file=sys.stderr)
    server.wait_until_healthy(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
    # stopped at exit (atexit, registered before Prefect's log and event workers: they flush to it first)
    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        return fruit_features(**args, return_state=True)


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    # A closed terminal (SIGHUP) and Ctrl-C (SIGINT) end the run as SIGTERM does: nothing remote runs on without it.
    end_runs_on_hangup_and_interrupt()
    # The temporary server started for this run would log an ERROR for every telemetry send it cannot make offline.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    quiet_expected_errors()
    state = _run_flow(args, _SERVER)
    if state.is_failed() or state.is_crashed():
        print(f"fruit-features failed: {failure_message(state)}", file=sys.stderr)
        return 1
    result: RunResult = state.result()
    if result.dry_run:
        cost = result.estimate.text if result.estimate else "nothing to pay"
        print(f"dry run: preflight passed; cost estimate: {cost}")
        return 0
    print(f"output: {result.output}\nsummary: {result.output.rstrip('/')}/summary.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
