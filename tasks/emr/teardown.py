"""Ending what a run started on EMR, on every path: terminate our clusters, cancel our steps on the others.

Everything here runs while an error may be on its way out (a ``finally``, a flow hook): a teardown failure is
logged with what to do by hand and never replaces the run's own error.
"""

from __future__ import annotations

import sys

from tasks.aws.clients import AwsClients, run_logger
from tasks.emr.cluster import find_run_clusters, terminate, terminate_cluster
from tasks.emr.steps import cancel_run_steps


def terminate_quietly(aws: AwsClients, cluster_id: str, poll_seconds: int) -> None:
    """Terminate; if an error is already on its way out, a teardown failure is logged rather than masking it."""
    if sys.exc_info()[0] is None:
        terminate_cluster(aws, cluster_id, poll_seconds)
        return
    try:
        terminate_cluster(aws, cluster_id, poll_seconds)
    except Exception as exc:  # noqa: BLE001 - the original error matters more; the idle policy is the backstop
        run_logger().error("could not terminate cluster %s (%s); terminate it by hand", cluster_id, exc)


def terminate_strays(aws: AwsClients, flow_run_id: str, poll_seconds: int) -> None:
    """Any other cluster tagged with this run: RunJobFlow has no idempotency token, so a request that botocore
    retried after the first had reached EMR (a timeout on the reply) leaves a second, identical cluster."""
    try:
        strays = find_run_clusters(aws("emr"), flow_run_id)
    except Exception as exc:  # noqa: BLE001 - never mask the run's own outcome; the reaper is the backstop
        run_logger().warning("could not look for other clusters of this run: %s", exc)
        return
    for stray in strays:
        run_logger().warning("cluster %s also carries this run's tags: terminating it too", stray)
        terminate_quietly(aws, stray, poll_seconds)


def cancel_steps_quietly(aws: AwsClients, cluster_id: str, flow_run_id: str, state_name: str = "", logger=None) -> None:
    """Cancel this run's live steps on a cluster left running; logged, never raised (an error is on its way out)."""
    logger = logger or run_logger()
    try:
        cancelled = cancel_run_steps(aws("emr"), cluster_id, flow_run_id)
    except Exception as exc:  # noqa: BLE001 - the run's own error matters more; say what to do by hand
        logger.error(
            "could not cancel this run's step on cluster %s (%s): cancel it by hand (aws emr cancel-steps)",
            cluster_id,
            exc,
        )
        return
    if cancelled:
        run = f"flow run {state_name}: " if state_name else ""
        logger.warning("%scancelled step(s) %s on cluster %s, which is left running", run, cancelled, cluster_id)


def end_what_the_run_left(
    aws: AwsClients, flow_run_id: str, state_name: str, logger, *, reused: str | None, keep: bool, poll_seconds: int
) -> None:
    """For the flow hooks (cancelled, crashed, failed): terminate the clusters created for the run (by its tags)
    unless ``keep``; on a kept cluster and on a ``reused`` one (never terminated) cancel the run's live steps.

    Never raises: a cluster that will not terminate is logged with what to do, and the others are still ended.
    """
    try:
        ours = find_run_clusters(aws("emr"), flow_run_id)
    except Exception as exc:  # noqa: BLE001 - nothing found is better than a hook that raises; the reaper remains
        logger.error("could not list this run's clusters (%s); the reaper will end them", exc)
        ours = []
    left_running = [reused] if reused else []
    if keep:
        left_running, ours = left_running + ours, []
    for cluster_id in dict.fromkeys(left_running):
        cancel_steps_quietly(aws, cluster_id, flow_run_id, state_name, logger)
    for cluster_id in ours:
        logger.warning("flow run %s: terminating cluster %s", state_name, cluster_id)
        try:
            terminate(aws, cluster_id, poll_seconds)
        except Exception as exc:  # noqa: BLE001 - go on with the others; the idle policy and the reaper are left
            logger.error("could not terminate cluster %s (%s): terminate it by hand", cluster_id, exc)
            continue
        logger.info("cluster %s is terminated", cluster_id)
