"""Clusters a dead flow left behind: ours by tag, and older than a limit or belonging to a flow run that has ended.

A SIGKILLed flow runs no cleanup. The idle auto-termination policy ends its cluster once nothing runs on it; this is
the second net, for a cluster whose step hangs (idle never fires while a step runs) or whose run is gone.
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


@task(name="find-stale-clusters", cache_policy=NO_CACHE)
def find_stale_clusters(aws: AwsClients, max_age_hours: float) -> list[StaleCluster]:
    """Active clusters with our tags that are older than ``max_age_hours`` or whose flow run is no longer live.

    Returns:
        one entry per cluster to terminate.
    """
    logger = get_run_logger()
    now = datetime.now(UTC)
    stale = []
    for cluster, tags in our_clusters(aws("emr")):
        created = cluster["Status"]["Timeline"].get("CreationDateTime") or now
        age_hours = (now - created).total_seconds() / 3600
        run_id = tags.get(TAG_FLOW_RUN, "")
        state = flow_run_state(run_id)
        reason = stale_reason(tags, age_hours, max_age_hours, state)
        if reason is None:
            logger.info("cluster %s (flow run %s, %s) is left running", cluster["Id"], run_id, state or "unknown")
            continue
        stale.append(StaleCluster(cluster["Id"], cluster.get("Name", ""), run_id, round(age_hours, 2), reason))
    return stale
