"""The reaper's rules, the same for every AWS engine: when something fruitflow created is stale, and when a live run
still uses it (whoever created it).

A SIGKILLed flow runs no cleanup; the run's own deadline and the place's idle stop end its work, and the reapers
(tasks/emr/reaper.py, tasks/emr_serverless/reaper.py) end what is left: ours by tag, older than a limit or of a flow
run that has ended, and never under a live step or job run of a live flow run.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.exceptions import ObjectNotFound

from tasks.aws.tags import TAG_KEEP, TAG_MAX_AGE, is_ours


@dataclass(frozen=True)
class LiveRun:
    """A pending or running step or job run, and the flow run its name carries (``fruitflow extract-features <flow
    run id> <token>``; empty for one fruitflow did not name)."""

    run_id: str
    flow_run_id: str
    age_hours: float


# A flow run in one of these may still be using what it created.
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


def run_in_use(run: LiveRun, limit_hours: float, run_state: StateType | None) -> bool:
    """Whether a live step or job run still belongs to a live flow run: its flow run is live, or unknown to this Prefect
    server (a CLI run's temporary server, another server, one fruitflow did not name) and it is younger than the limit.

    Example:
        >>> run_in_use(LiveRun("s-1", "r", 7.0), 6.0, StateType.RUNNING)
        True
        >>> run_in_use(LiveRun("s-1", "r", 0.5), 6.0, StateType.COMPLETED)
        False
        >>> run_in_use(LiveRun("s-1", "", 7.0), 6.0, None)
        False
    """
    if run_state is None:
        return run.age_hours <= limit_hours
    return run_state in LIVE_RUN_STATES
