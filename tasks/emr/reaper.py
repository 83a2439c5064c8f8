"""Clusters a dead flow left behind: ours by tag, and older than a limit or belonging to a flow run that has ended.

A SIGKILLed flow runs no cleanup. The idle auto-termination policy ends its cluster once nothing runs on it; this is
the second net, for a cluster whose step hangs (idle never fires while a step runs) or whose run is gone.

A cluster is judged by its live steps too, not only by its creator's tags: a kept cluster (``--keep-cluster``) that
another run is using (``--cluster-id``) is never ended under that run's pending or running step.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.exceptions import ObjectNotFound

from tasks.aws.clients import AwsClients
from tasks.aws.tags import TAG_FLOW_RUN, TAG_KEEP, TAG_MAX_AGE, is_ours
from tasks.emr.cluster import our_clusters
from tasks.emr.steps import STEP_PREFIX


@dataclass(frozen=True)
class LiveStep:
    """A pending or running fruitflow step, and the flow run its name carries (``fruitflow extract-features <flow
    run id> <token>``; empty for a step fruitflow did not name)."""

    step_id: str
    flow_run_id: str
    age_hours: float


@dataclass(frozen=True)
class StaleCluster:
    cluster_id: str
    name: str
    flow_run_id: str
    age_hours: float
    reason: str


# A flow run in one of these may still be using its cluster.
LIVE_RUN_STATES = {StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED, StateType.CANCELLING}


def flow_run_state(flow_run_id: str) -> StateType | None:
    """The state type of a flow run, or None when this Prefect server does not know it."""
    try:
        run_id = uuid.UUID(flow_run_id)
    except ValueError:
        return None
    with get_client(sync_client=True) as prefect:
        try:
            flow_run = prefect.read_flow_run(run_id)
        except ObjectNotFound:
            return None
    return flow_run.state.type if flow_run.state else None


def run_limit_hours(tags: dict[str, str]) -> float:
    """The run's own age limit from its tag (0 when absent or unreadable: then only ``max_age_hours`` counts)."""
    try:
        return max(float(tags.get(TAG_MAX_AGE, "0")), 0.0)
    except ValueError:
        return 0.0


def stale_reason(
    tags: dict[str, str], age_hours: float, max_age_hours: float, run_state: StateType | None
) -> str | None:
    """Why a cluster should go, or None to leave it.

    A run unknown to this Prefect server is left until the age limit: it may belong to another server. The age limit
    is never below the run's own (tag ``fruitflow:max-age-hours``: provisioning + its step timeout + teardown), so a
    legitimate long step is not cut short by a reaper run with a smaller ``max_age_hours``.

    Example:
        >>> stale_reason({"fruitflow:created-by": "fruitflow"}, 1.0, 6.0, StateType.COMPLETED)
        'its flow run is COMPLETED'
        >>> stale_reason({"fruitflow:created-by": "fruitflow", "fruitflow:max-age-hours": "8"}, 7.0, 6.0, None)
    """
    if not is_ours(tags):
        return None
    limit = max(max_age_hours, run_limit_hours(tags))
    if age_hours > limit:
        return f"older than {limit:g} h ({age_hours:.1f} h)"
    if tags.get(TAG_KEEP) == "true" or run_state is None or run_state in LIVE_RUN_STATES:
        return None
    return f"its flow run is {run_state.value}"


def named_flow_run(name: str | None) -> str:
    """The flow run id in a step's (or EMR Serverless job run's) name, empty when fruitflow did not name it.

    Example:
        >>> named_flow_run("fruitflow extract-features 0f1e ab12"), named_flow_run("nightly ETL")
        ('0f1e', '')
    """
    prefix = f"{STEP_PREFIX} "
    return name.removeprefix(prefix).split(" ")[0] if (name or "").startswith(prefix) else ""


def live_steps(emr, cluster_id: str, now: datetime) -> list[LiveStep]:
    """The cluster's pending and running steps (ListSteps: allowed on our clusters only)."""
    steps = []
    for page in emr.get_paginator("list_steps").paginate(ClusterId=cluster_id, StepStates=["PENDING", "RUNNING"]):
        for step in page["Steps"]:
            timeline = step.get("Status", {}).get("Timeline", {})
            since = timeline.get("StartDateTime") or timeline.get("CreationDateTime") or now
            age_hours = max((now - since).total_seconds(), 0.0) / 3600
            steps.append(LiveStep(step["Id"], named_flow_run(step.get("Name")), age_hours))
    return steps


def step_in_use(step: LiveStep, limit_hours: float, run_state: StateType | None) -> bool:
    """Whether a live step still belongs to a live run: its flow run is live, or unknown to this Prefect server (a CLI
    run's temporary server, another server, a step fruitflow did not name) and the step younger than the limit.

    Example:
        >>> step_in_use(LiveStep("s-1", "r", 7.0), 6.0, StateType.RUNNING)
        True
        >>> step_in_use(LiveStep("s-1", "r", 0.5), 6.0, StateType.COMPLETED)
        False
        >>> step_in_use(LiveStep("s-1", "", 7.0), 6.0, None)
        False
    """
    if run_state is None:
        return step.age_hours <= limit_hours
    return run_state in LIVE_RUN_STATES


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
        using = [step for step in steps if step_in_use(step, limit, flow_run_state(step.flow_run_id))]
        if using:
            why = f"step {using[0].step_id} of flow run {using[0].flow_run_id or 'unknown'} is live"
            logger.info("cluster %s (%s) is left running: %s", cluster["Id"], reason, why)
            continue
        stale.append(StaleCluster(cluster["Id"], cluster.get("Name", ""), run_id, round(age_hours, 2), reason))
    return stale
