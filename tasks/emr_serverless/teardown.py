"""Ending what a run started on EMR Serverless, on every path: cancel its job runs, stop and delete the applications it
created; a reused application is left as it was (only this run's job runs on it are cancelled).

StopApplication needs every job run on the application ended, so job runs are cancelled and waited for first.
Everything here may run while an error is on its way out (a ``finally``, a flow hook): a teardown failure is logged
with what to do by hand, and never replaces the run's own error.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from botocore.exceptions import WaiterError

from tasks.aws.clients import AwsClients, run_logger
from tasks.aws.waiting import wait
from tasks.emr_serverless.application import find_run_applications, stop_and_delete
from tasks.emr_serverless.job_run import live_job_runs, run_job_runs
from tasks.emr_serverless.waiters import JOB_RUN_LIVE, job_run_state, waiter

CANCEL_TIMEOUT_MINUTES = 10


def cancel_job_runs(aws: AwsClients, application_id: str, job_run_ids: list[str], poll_seconds: int) -> list[str]:
    """Cancel the live ones among ``job_run_ids`` and wait until each has ended; returns those cancelled."""
    client = aws("emr-serverless")
    cancelled = []
    for job_run_id in job_run_ids:
        ids = {"applicationId": application_id, "jobRunId": job_run_id}
        if client.get_job_run(**ids)["jobRun"]["state"] not in JOB_RUN_LIVE:
            continue
        client.cancel_job_run(**ids)
        cancelled.append(job_run_id)
        try:
            wait(waiter("JobRunEnded", client), what=f"job run {job_run_id} cancelled", state=job_run_state,
                 delay=poll_seconds, timeout_minutes=CANCEL_TIMEOUT_MINUTES, **ids)  # fmt: skip
        except WaiterError:
            run_logger().error("job run %s did not end after its cancel; check it in the console", job_run_id)
    return cancelled


def end_run_on(aws: AwsClients, application_id: str, flow_run_id: str, poll_seconds: int, logger=None) -> None:
    """Cancel this flow run's live job runs on an application (found by the flow run id in their name)."""
    logger = logger or run_logger()
    job_run_ids = run_job_runs(aws("emr-serverless"), application_id, flow_run_id)
    cancelled = cancel_job_runs(aws, application_id, job_run_ids, poll_seconds)
    if cancelled:
        logger.warning("cancelled job run(s) %s on application %s", cancelled, application_id)


def delete_application(aws: AwsClients, application_id: str, poll_seconds: int, logger=None) -> None:
    """Cancel whatever runs on an application we created, then stop and delete it."""
    logger = logger or run_logger()
    live = [job_run["id"] for job_run in live_job_runs(aws("emr-serverless"), application_id)]
    cancel_job_runs(aws, application_id, live, poll_seconds)
    logger.info("stopping and deleting application %s", application_id)
    stop_and_delete(aws, application_id, poll_seconds)
    logger.info("application %s is deleted", application_id)


def quietly(what: str, action: Callable[[], None], logger=None, *, always: bool = False) -> None:
    """Run a teardown action; if an error is already on its way out (or ``always``: a hook, which must not raise), a
    failure here is logged with what to do by hand instead of raised."""
    if sys.exc_info()[0] is None and not always:
        action()
        return
    try:
        action()
    except Exception as exc:  # noqa: BLE001 - the run's own error matters more; the nets are auto-stop and the reaper
        (logger or run_logger()).error("could not %s (%s); do it by hand (docs/emr.md, EMR Serverless)", what, exc)


def end_what_the_run_left(
    aws: AwsClients, flow_run_id: str, state_name: str, logger, *, reused: str | None, poll_seconds: int
) -> None:
    """For the flow hooks (cancelled, crashed, failed): delete the applications created for the run (by its tags),
    after cancelling their job runs; on a ``reused`` application (never stopped) cancel the run's live job runs."""
    if reused:
        quietly(f"cancel this run's job runs on application {reused}",
                lambda: end_run_on(aws, reused, flow_run_id, poll_seconds, logger), logger, always=True)  # fmt: skip
    for application_id in find_run_applications(aws("emr-serverless"), flow_run_id):
        logger.warning("flow run %s: deleting application %s", state_name, application_id)
        quietly(f"delete application {application_id}",
                lambda app=application_id: delete_application(aws, app, poll_seconds, logger), logger,
                always=True)  # fmt: skip
