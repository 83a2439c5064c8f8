"""botocore has no waiters for EMR Serverless: ours, as data (one model, every waiter the engine uses).

Each is polled one attempt at a time by ``tasks.aws.waiting.wait``, which logs the state as it changes.
"""

from __future__ import annotations

from botocore.waiter import Waiter, WaiterModel, create_waiter_with_client

APPLICATION_STATE = "application.state"
JOB_RUN_STATE = "jobRun.state"
JOB_RUN_ENDED = ("SUCCESS", "FAILED", "CANCELLED")
JOB_RUN_LIVE = ("SUBMITTED", "PENDING", "SCHEDULED", "QUEUED", "RUNNING", "CANCELLING")


def _acceptors(path: str, success: tuple[str, ...], failure: tuple[str, ...] = ()) -> list[dict]:
    return [{"state": "success", "matcher": "path", "argument": path, "expected": state} for state in success] + [
        {"state": "failure", "matcher": "path", "argument": path, "expected": state} for state in failure
    ]


def _waiter(operation: str, acceptors: list[dict]) -> dict:
    return {"operation": operation, "delay": 15, "maxAttempts": 60, "acceptors": acceptors}


WAITERS = WaiterModel(
    {
        "version": 2,
        "waiters": {
            # CreateApplication answers at once; the application is CREATING until it may be started.
            "ApplicationCreated": _waiter(
                "GetApplication", _acceptors(APPLICATION_STATE, ("CREATED", "STARTED", "STOPPED"), ("TERMINATED",))
            ),
            "ApplicationStarted": _waiter(
                "GetApplication", _acceptors(APPLICATION_STATE, ("STARTED",), ("STOPPED", "TERMINATED"))
            ),
            # DeleteApplication needs CREATED or STOPPED.
            "ApplicationStopped": _waiter(
                "GetApplication", _acceptors(APPLICATION_STATE, ("STOPPED", "CREATED", "TERMINATED"))
            ),
            "ApplicationDeleted": _waiter("GetApplication", _acceptors(APPLICATION_STATE, ("TERMINATED",))),
            # Out of the queue: running, or already over (a job may fail before it ever runs).
            "JobRunStarted": _waiter("GetJobRun", _acceptors(JOB_RUN_STATE, ("RUNNING", *JOB_RUN_ENDED))),
            "JobRunSucceeded": _waiter("GetJobRun", _acceptors(JOB_RUN_STATE, ("SUCCESS",), ("FAILED", "CANCELLED"))),
            # For teardown: any end will do (CancelJobRun goes through CANCELLING).
            "JobRunEnded": _waiter("GetJobRun", _acceptors(JOB_RUN_STATE, JOB_RUN_ENDED)),
        },
    }
)


def waiter(name: str, client) -> Waiter:
    """One of :data:`WAITERS` bound to an ``emr-serverless`` client."""
    return create_waiter_with_client(name, WAITERS, client)


def application_state(response: dict) -> str:
    """The state a GetApplication response shows, for the wait's log lines."""
    return response["application"]["state"]


def job_run_state(response: dict) -> str:
    """The state a GetJobRun response shows, for the wait's log lines."""
    return response["jobRun"]["state"]
