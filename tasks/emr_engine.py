"""The EMR engine: preflight -> stage -> provision -> submit step -> wait -> validate -> terminate, as tasks.

How the flow wires it in (``flows/fruit_features.py``)::

    from tasks.emr_engine import run_on_emr, terminate_on_cancel_or_crash

    @flow(name="fruit-features", on_cancellation=[terminate_on_cancel_or_crash],
          on_crashed=[terminate_on_cancel_or_crash])
    def fruit_features(..., engine: str = "local", cluster_block: str = "fruitflow",
                       aws_credentials_block: str = "fruitflow", s3_bucket_block: str = "fruitflow",
                       cluster_id: str | None = None, keep_cluster: bool = False, dry_run: bool = False,
                       step_timeout_minutes: int = 180):
        spec = JobSpec(...)
        if engine == "emr":
            result = run_on_emr(spec, aws_credentials_block=..., s3_bucket_block=..., cluster_block=...,
                                cluster_id=cluster_id, keep_cluster=keep_cluster, dry_run=dry_run,
                                step_timeout_minutes=step_timeout_minutes)
            report = result["validation"]  # None on a dry run

``run_on_emr`` must be called inside a flow run: the flow run id tags the cluster, names the staging prefix and
makes the step submission idempotent. The hook reads the flow run's parameters by those names; it does nothing
for ``engine="local"``; it never terminates a reused cluster (only ours carry our tags) or a kept one, but it cancels
this run's pending or running step on them (found by the flow run id in the step's name).
A failure anywhere after provisioning terminates the cluster in this function's ``finally`` (or, on a reused or kept
cluster, cancels the run's step); the hooks cover crashes and cancellations that skip it; a SIGKILL runs neither, and
the idle auto-termination policy and the reaper are left. Nothing in the ``finally`` replaces the run's own error.
"""

from __future__ import annotations

import inspect
import sys
import time
from typing import Any

from prefect import get_run_logger
from prefect.context import get_run_context
from prefect.logging.loggers import flow_run_logger
from prefect_aws import AwsCredentials, S3Bucket

from blocks.emr_cluster import EmrClusterConfig
from tasks.aws_clients import client, region_of, s3_filesystem, s3_uri
from tasks.emr_cluster import (
    cluster_hours,
    cluster_request,
    console_url,
    find_run_clusters,
    provision_cluster,
    run_max_age_hours,
    terminate,
    terminate_cluster,
)
from tasks.emr_steps import cancel_run_steps, run_token, step_definition, submit_step, wait_for_step
from tasks.job_spec import JobSpec, job_arguments
from tasks.preflight import preflight
from tasks.staging import run_prefix, stage_job
from tasks.validation import validate_output


def _flow_run() -> Any:
    flow_run = getattr(get_run_context(), "flow_run", None)
    if flow_run is None:
        raise RuntimeError("run_on_emr must be called inside a flow run (its id tags the cluster)")
    return flow_run


def run_on_emr(
    spec: JobSpec,
    *,
    aws_credentials_block: str = "fruitflow",
    s3_bucket_block: str = "fruitflow",
    cluster_block: str = "fruitflow",
    cluster_id: str | None = None,
    keep_cluster: bool = False,
    dry_run: bool = False,
    step_timeout_minutes: int = 180,
) -> dict:
    """Run the job as an EMR step and validate its output in S3; terminate the cluster we created on every path.

    Args:
        spec: the run (``images`` and ``output`` are s3:// URIs).
        aws_credentials_block: name of the AwsCredentials block every client comes from.
        s3_bucket_block: name of the S3Bucket block that holds the staged job and, by default, the logs.
        cluster_block: name of the EmrClusterConfig block.
        cluster_id: an existing cluster to run on; it is never terminated by us (a failing run cancels its step).
        keep_cluster: leave the created cluster running (its idle auto-termination still applies; a failing run
            cancels its step).
        dry_run: preflight and cost estimate only; nothing is created.
        step_timeout_minutes: a step running longer is cancelled and the run fails.

    Returns:
        cluster_id, step_id, output, created, kept, cost_estimate, console_url, log_uri, step_log_uri, preflight,
        and validation (the report dict; None on a dry run).
    """
    logger = get_run_logger()
    flow_run = _flow_run()
    flow_run_id = str(flow_run.id)
    credentials = AwsCredentials.load(aws_credentials_block)
    bucket = S3Bucket.load(s3_bucket_block)
    config = EmrClusterConfig.load(cluster_block)
    region = region_of(credentials)
    log_uri = config.log_uri or s3_uri(bucket.bucket_name, bucket.bucket_folder, "emr-logs") + "/"

    checked = preflight(spec, credentials, bucket.bucket_name, config, cluster_id)
    result: dict = {
        "engine": "emr",
        "output": spec.output,
        "cluster_id": cluster_id,
        "step_id": None,
        "created": False,
        "kept": bool(cluster_id) or keep_cluster,
        "region": region,
        "log_uri": log_uri,
        "preflight": checked,
        "validation": None,
        "cost_estimate": config.estimate_cost(step_timeout_minutes / 60),
    }
    if dry_run:
        estimate = result["cost_estimate"]
        logger.info(
            "dry run: nothing created; this cluster costs about $%s/hour (estimate), at most ~$%s for a %d-minute "
            "step timeout",
            estimate["usd_per_hour"],
            estimate["usd"],
            step_timeout_minutes,
        )
        return result

    staged = stage_job(credentials, bucket.bucket_name, run_prefix(bucket.bucket_folder, flow_run_id), spec.weights)
    created = cluster_id is None
    started = time.monotonic()
    if created:
        request = cluster_request(
            config,
            name=f"fruitflow {flow_run.name}",
            log_uri=log_uri,
            bootstrap_uri=staged["bootstrap"],
            requirements_uri=staged["requirements"],
            flow_run_id=flow_run_id,
            keep=keep_cluster,
            max_age_hours=run_max_age_hours(config, step_timeout_minutes),
        )
        cluster_id = provision_cluster(credentials, request, flow_run_id, config)
    else:
        logger.info(
            "running on existing cluster %s (%s); it will be left running", cluster_id, console_url(region, cluster_id)
        )
    result.update(cluster_id=cluster_id, created=created, console_url=console_url(region, cluster_id))
    if not created:
        logger.info("cluster %s: %s", cluster_id, result["console_url"])
    try:
        job_args = job_arguments(spec, weights=staged["weights"])
        step = step_definition(
            cluster_id=cluster_id,
            script_uri=staged["script"],
            py_files_uri=staged["py_files"],
            job_args=job_args,
            token=run_token(flow_run_id, job_args),
            flow_run_id=flow_run_id,
        )
        step_id = submit_step(credentials, cluster_id, step)
        result.update(step_id=step_id, step_log_uri=f"{log_uri}{cluster_id}/steps/{step_id}/")
        logger.info("step %s logs: %s", step_id, result["step_log_uri"])
        wait_for_step(
            credentials, cluster_id, step_id, timeout_minutes=step_timeout_minutes, poll_seconds=config.poll_seconds
        )
        result["validation"] = validate_output(spec.output, s3_filesystem(credentials), spec.images)
    finally:
        failing = sys.exc_info()[0] is not None
        if created and not keep_cluster:
            _terminate_quietly(credentials, cluster_id, config.poll_seconds)
            _terminate_strays(credentials, flow_run_id, config.poll_seconds)
        elif failing:  # the cluster stays up (reused or kept): our step must not go on writing to the output
            _cancel_steps_quietly(credentials, cluster_id, flow_run_id)
        if created and keep_cluster:
            logger.warning(
                "keeping cluster %s (--keep-cluster): about $%s/hour (estimate) until you terminate it or it idles "
                "for %d minutes",
                cluster_id,
                config.hourly_usd(),
                config.idle_timeout_minutes,
            )
        result["cost_estimate"] = config.estimate_cost(_hours_quietly(credentials, cluster_id, created, started))
    return result


def _hours_quietly(credentials: AwsCredentials, cluster_id: str, created: bool, started: float) -> float:
    """Hours for the cost estimate; EMR's timeline when it answers, else this run's own clock.

    Called in the ``finally``: an error here must never replace the run's own error (or fail a finished run).
    """
    hours = (time.monotonic() - started) / 3600
    if not created:
        return hours
    try:
        return max(hours, cluster_hours(credentials, cluster_id))
    except Exception as exc:  # noqa: BLE001 - only an estimate; the run's outcome matters more
        get_run_logger().warning("cost estimate from this run's clock: cluster %s not described (%s)", cluster_id, exc)
        return hours


def _cancel_steps_quietly(credentials: AwsCredentials, cluster_id: str, flow_run_id: str) -> None:
    """Cancel this run's live steps on a cluster left running; logged, never raised (an error is on its way out)."""
    try:
        cancelled = cancel_run_steps(client(credentials, "emr"), cluster_id, flow_run_id)
    except Exception as exc:  # noqa: BLE001 - the run's own error matters more; say what to do by hand
        get_run_logger().error(
            "could not cancel this run's step on cluster %s (%s): cancel it by hand (aws emr cancel-steps)",
            cluster_id,
            exc,
        )
        return
    if cancelled:
        get_run_logger().warning("cancelled step(s) %s on cluster %s, which is left running", cancelled, cluster_id)


def _terminate_quietly(credentials: AwsCredentials, cluster_id: str, poll_seconds: int) -> None:
    """Terminate; if an error is already on its way out, a teardown failure is logged rather than masking it."""
    if sys.exc_info()[0] is None:
        terminate_cluster(credentials, cluster_id, poll_seconds)
        return
    try:
        terminate_cluster(credentials, cluster_id, poll_seconds)
    except Exception as exc:  # noqa: BLE001 - the original error matters more; the idle policy is the backstop
        get_run_logger().error("could not terminate cluster %s (%s); terminate it by hand", cluster_id, exc)


def _terminate_strays(credentials: AwsCredentials, flow_run_id: str, poll_seconds: int) -> None:
    """Any other cluster tagged with this run: RunJobFlow has no idempotency token, so a request that botocore
    retried after the first had reached EMR (a timeout on the reply) leaves a second, identical cluster."""
    try:
        strays = find_run_clusters(client(credentials, "emr"), flow_run_id)
    except Exception as exc:  # noqa: BLE001 - never mask the run's own outcome; the reaper is the backstop
        get_run_logger().warning("could not look for other clusters of this run: %s", exc)
        return
    for stray in strays:
        get_run_logger().warning("cluster %s also carries this run's tags: terminating it too", stray)
        _terminate_quietly(credentials, stray, poll_seconds)


def _parameters(flow: Any, flow_run: Any) -> dict:
    """The flow run's parameters over the flow's defaults (a deployment run stores only what was passed)."""
    defaults = {}
    fn = getattr(flow, "fn", None)
    if fn is not None:
        defaults = {
            name: param.default
            for name, param in inspect.signature(fn).parameters.items()
            if param.default is not inspect.Parameter.empty
        }
    return {**defaults, **(flow_run.parameters or {})}


def terminate_on_cancel_or_crash(flow: Any, flow_run: Any, state: Any) -> None:
    """Flow hook (``on_cancellation``/``on_crashed``/``on_failure``): end what this run left running on EMR.

    Clusters created for the run (found by the ``fruitflow:flow-run-id`` and ``fruitflow:created-by`` tags) are
    terminated, unless ``keep_cluster``; on a kept cluster and on a reused one (``cluster_id``, never terminated) the
    run's pending or running steps are cancelled, found by the flow run id in their name.
    """
    logger = flow_run_logger(flow_run, flow)
    params = _parameters(flow, flow_run)
    if params.get("engine", "emr") != "emr":
        return
    run_id = str(flow_run.id)
    credentials = AwsCredentials.load(params.get("aws_credentials_block") or "fruitflow")
    try:
        poll_seconds = EmrClusterConfig.load(params.get("cluster_block") or "fruitflow").poll_seconds
    except ValueError:
        poll_seconds = 30
    emr = client(credentials, "emr")
    ours = find_run_clusters(emr, run_id)
    left_running = [params["cluster_id"]] if params.get("cluster_id") else []
    if params.get("keep_cluster"):
        left_running += ours
        ours = []
    for cluster_id in dict.fromkeys(left_running):
        try:
            cancelled = cancel_run_steps(emr, cluster_id, run_id)
        except Exception as exc:  # noqa: BLE001 - still terminate what is ours; say what to do by hand
            logger.error("could not cancel this run's step on cluster %s (%s): cancel it by hand", cluster_id, exc)
            continue
        if cancelled:
            logger.warning("flow run %s: cancelled step(s) %s on cluster %s", state.name, cancelled, cluster_id)
    for cluster_id in ours:
        logger.warning("flow run %s: terminating cluster %s", state.name, cluster_id)
        terminate(credentials, cluster_id, poll_seconds)
        logger.info("cluster %s is terminated", cluster_id)
