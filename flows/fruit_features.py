"""The ``fruit-features`` flow: images in, features + PCA out, on the engine its ``engine`` parameter names.

Run it::

    python -m flows.fruit_features --images DIR --output DIR [--weights random] [--engine local|emr|emr-serverless]

Without ``--images`` it makes a small set of sample images and writes to ``./output/<run>``. Its parameters are the
models of flows/parameters.py (the job's options) and tasks/contract.py (each engine's settings); the command line
is made from the same models (flows/fruit_features_cli.py).
"""

import sys
from datetime import UTC, datetime
from typing import Any

from prefect import get_run_logger
from prefect.logging.loggers import flow_run_logger

from flows.parameters import (
    JOB_DEFAULTS,
    LOCAL_ENGINE,
    JobParameters,
    engine_settings,
    flow_taking_former_parameters,
)
from flows.run_failures import fails_with_reason, worded_for, worded_report
from flows.run_paths import record_paths
from fruitjob.options import JobOptions
from tasks.aws.output_lease import held_output
from tasks.contract import Engine, RunResult
from tasks.engine_settings import EngineSettings
from tasks.registry import engine_for
from tasks.reporting import publish_summary
from tasks.validation import validate_output


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
            result.record(engine.run(job, result.checked))
        with result.timed("validate"):
            result.validation = worded_report(validate_output(job.output, engine.filesystem(), job.images))
        publish_summary(result.validation, result, engine.filesystem())
    return result


@flow_taking_former_parameters(
    name="fruit-features",
    log_prints=True,
    # A failure ends what the run created in the engine's own lifecycle (tasks/aws/remote.py: provisioning
    # included); the hooks are for what skips it: a crash, a cancellation.
    on_cancellation=[end_what_the_run_left],
    on_crashed=[end_what_the_run_left],
)
@fails_with_reason  # an error the user can fix: the state message is its one line, worded for where the run started
def fruit_features(
    job: JobParameters = JOB_DEFAULTS,
    engine: EngineSettings = LOCAL_ENGINE,
    dry_run: bool = False,
) -> RunResult:
    """MobileNetV2 features and a PCA for a folder (local) or S3 prefix (EMR) of fruit images.

    Args:
        job: What to featurize, where to write it, and how: the job's options.
        engine: Where the job runs: `local` (Spark on this machine, or `master`), `emr` (a cluster the flow creates
            and tears down, or `cluster_id`) or `emr-serverless` (a job run on an EMR Serverless application).
        dry_run: Checks and a cost estimate only; nothing is created or run.

    Example:
        >>> fruit_features(JobParameters(weights="random"))  # doctest: +SKIP
    """
    runner = engine_for(engine)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    images, output = runner.complete(job.images, job.output, stamp)
    record_paths(images, output)  # the failure notice and the Parameters tab show the paths the run uses
    options = job.job_options(images, output)
    result = run_engine(runner, options, dry_run)
    if result.validation is not None:
        m = result.validation.metrics
        get_run_logger().info(
            "done: %d images ok, %d failed, %d components explain %.3f; output %s",
            m.images_ok,
            m.images_failed,
            m.pca_components,
            m.explained_variance_total,
            options.output,
        )
    return result


if __name__ == "__main__":  # python -m flows.fruit_features: the command line (flows/fruit_features_cli.py)
    from flows.fruit_features_cli import main

    sys.exit(main(fruit_features))
