"""Clusters a dead flow left behind: ours by tag, and older than a limit or belonging to a flow run that has ended.

A SIGKILLed flow runs no cleanup. The idle auto-termination policy ends its cluster once nothing runs on it; this is
the second net, for a cluster whose step hangs (idle never fires while a step runs) or whose run is gone.

A cluster is judged by its live steps too, not only by its creator's tags: a kept cluster (``--keep-cluster``) that
another run is using (``--cluster-id``) is never ended under that run's pending or running step.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.aws.clients import AwsClients
from tasks.aws.reaping import LiveRun, flow_run_state, run_in_use, run_limit_hours, stale_reason
from tasks.aws.run_names import named_flow_run
from tasks.aws.tags import TAG_FLOW_RUN
from tasks.emr.cluster import our_clusters


@dataclass(frozen=True)
class StaleCluster:
    cluster_id: str
    name: str
    flow_run_id: str
    age_hours: float
    reason: str


def live_steps(emr, cluster_id: str, now: datetime) -> list[LiveRun]:
    """The cluster's pending and running steps (ListSteps: allowed on our clusters only)."""
    steps = []
    for page in emr.get_paginator("list_steps").paginate(ClusterId=cluster_id, StepStates=["PENDING", "RUNNING"]):
        for step in page["Steps"]:
            timeline = step.get("Status", {}).get("Timeline", {})
            since = timeline.get("StartDateTime") or timeline.get("CreationDateTime") or now
            age_hours = max((now - since).total_seconds(), 0.0) / 3600
            steps.append(LiveRun(step["Id"], named_flow_run(step.get("Name")), age_hours))
    return steps


@task(name="find-stale-clusters", cache_policy=NO_CACHE)
def find_stale_clusters(aws: AwsClients, max_age_hours: float) -> list[StaleCluster]:
    """Active clusters with our tags that are older than ``max_age_hours`` or whose flow run is no longer live, and
    that have no live step of a live flow run (whoever created the cluster).

    Returns:
        one entry per cluster to terminate.
    """
    logger = get_run_logger()
    now = datetime.now(UTC)
    stale = []
    emr = aws("emr")
    for cluster, tags in our_clusters(emr):
        created = cluster["Status"]["Timeline"].get("CreationDateTime") or now
        age_hours = (now - created).total_seconds() / 3600
        run_id = tags.get(TAG_FLOW_RUN, "")
        state = flow_run_state(run_id)
        reason = stale_reason(tags, age_hours, max_age_hours, state)
        if reason is None:
            logger.info("cluster %s (flow run %s, %s) is left running", cluster["Id"], run_id, state or "unknown")
            continue
        limit = max(max_age_hours, run_limit_hours(tags))
        steps = live_steps(emr, cluster["Id"], now)
        using = [step for step in steps if run_in_use(step, limit, flow_run_state(step.flow_run_id))]
        if using:
            why = f"step {using[0].run_id} of flow run {using[0].flow_run_id or 'unknown'} is live"
            logger.info("cluster %s (%s) is left running: %s", cluster["Id"], reason, why)
            continue
        stale.append(StaleCluster(cluster["Id"], cluster.get("Name", ""), run_id, round(age_hours, 2), reason))
    return stale
