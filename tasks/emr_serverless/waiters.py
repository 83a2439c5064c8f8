"""botocore has no waiters for EMR Serverless: ours, as data (tasks/aws/waiting.py's ``state_waiter``).

Each is polled one attempt at a time by ``tasks.aws.waiting.wait``, which logs the state as it changes. The job run's
own wait (started, succeeded) is made from its :class:`tasks.aws.remote_wait.RunWatch`.
"""

from __future__ import annotations

from botocore.waiter import Waiter

from tasks.aws.waiting import state_waiter

JOB_RUN_ENDED = ("SUCCESS", "FAILED", "CANCELLED")
JOB_RUN_LIVE = ("SUBMITTED", "PENDING", "SCHEDULED", "QUEUED", "RUNNING", "CANCELLING")

# name: (operation, state path, success states, failure states)
WAITERS: dict[str, tuple[str, str, tuple[str, ...], tuple[str, ...]]] = {
    # CreateApplication answers at once; the application is CREATING until it may be started.
    "ApplicationCreated": ("GetApplication", "application.state", ("CREATED", "STARTED", "STOPPED"), ("TERMINATED",)),
    "ApplicationStarted": ("GetApplication", "application.state", ("STARTED",), ("STOPPED", "TERMINATED")),
    # DeleteApplication needs CREATED or STOPPED.
    "ApplicationStopped": ("GetApplication", "application.state", ("STOPPED", "CREATED", "TERMINATED"), ()),
    "ApplicationDeleted": ("GetApplication", "application.state", ("TERMINATED",), ()),
    # For teardown: any end will do (CancelJobRun goes through CANCELLING).
    "JobRunEnded": ("GetJobRun", "jobRun.state", JOB_RUN_ENDED, ()),
}


def waiter(name: str, client) -> Waiter:
    """One of :data:`WAITERS` bound to an ``emr-serverless`` client."""
    return state_waiter(client, name, *WAITERS[name])


def application_state(response: dict) -> str:
    """The state a GetApplication response shows, for the wait's log lines."""
    return response["application"]["state"]


def job_run_state(response: dict) -> str:
    """The state a GetJobRun response shows, for the wait's log lines."""
    return response["jobRun"]["state"]
