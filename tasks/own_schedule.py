"""Pausing the schedule that started this flow run: what a scheduled flow does once it knows it has nothing to do.

The reaper runs every 30 minutes; on a server without AWS blocks each run would find nothing and still fill the Runs
list. Its first scheduled run there pauses the schedule instead, and says why once. Only a run the scheduler made
(``auto_scheduled``) pauses anything: a run started by hand, or outside a deployment, leaves the schedules alone.
"""

from __future__ import annotations

from prefect import task
from prefect.client.orchestration import get_client
from prefect.runtime import flow_run


@task(name="pause-own-schedule")
def pause_own_schedule() -> list[str]:
    """Pause the active schedules of this run's deployment if the scheduler started this run.

    Returns:
        The paused schedules (slug, or id where it has none); empty when nothing was paused.

    Example:
        >>> pause_own_schedule()  # doctest: +SKIP
    """
    if flow_run.get_id() is None:
        return []
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run.get_id())
        if run.deployment_id is None or not run.auto_scheduled:
            return []
        paused = []
        for schedule in client.read_deployment_schedules(run.deployment_id):
            if schedule.active:
                client.update_deployment_schedule(run.deployment_id, schedule.id, active=False)
                paused.append(schedule.slug or str(schedule.id))
        return paused
