"""Waiting for the job run: its state logged as it goes; on failure its stateDetails and the driver's stderr tail."""

from __future__ import annotations

import time

from botocore.exceptions import ClientError, WaiterError
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.aws.clients import AwsClients
from tasks.aws.preflight import error_code
from tasks.aws.waiting import wait
from tasks.emr.step_wait import read_log_tail
from tasks.emr_serverless.waiters import JOB_RUN_ENDED, job_run_state, waiter
from tasks.errors import FruitflowError
from tasks.progress import JobProgress

_PERCENT = {"SUBMITTED": 0.0, "SCHEDULED": 10.0, "RUNNING": 50.0, "SUCCESS": 100.0}


# How long a failed job run waits for its driver's stderr to reach S3 before reporting without its tail.
LOG_WAIT_MINUTES = 3


class JobRunFailed(FruitflowError, RuntimeError):
    """The job run ended FAILED or CANCELLED (or timed out): EMR Serverless' stateDetails and the driver's stderr."""

    def __init__(self, message: str, *, reason: str = "", log_uri: str | None = None, log_tail: str = ""):
        super().__init__(message)
        self.reason = reason
        self.log_uri = log_uri
        self.log_tail = log_tail


def driver_log_uri(log_uri: str, application_id: str, job_run_id: str, stream: str = "stderr") -> str:
    """Where EMR Serverless puts the driver's log of a job run under the run's S3 log destination.

    Example:
        >>> driver_log_uri("s3://b/logs/", "00app", "00job")
        's3://b/logs/applications/00app/jobs/00job/SPARK_DRIVER/stderr.gz'
    """
    return f"{log_uri.rstrip('/')}/applications/{application_id}/jobs/{job_run_id}/SPARK_DRIVER/{stream}.gz"


@task(name="wait-for-job-run", cache_policy=NO_CACHE)
def wait_for_job_run(
    aws: AwsClients,
    application_id: str,
    job_run_id: str,
    *,
    log_uri: str,
    timeout_minutes: float = 180,
    poll_seconds: int = 15,
    log_wait_minutes: float = LOG_WAIT_MINUTES,
) -> dict:
    """Wait for the job run to succeed; returns its GetJobRun description (billed resources included).

    Raises :class:`JobRunFailed` with the stateDetails and the driver's stderr tail when it failed or was cancelled; a
    job run still going after ``timeout_minutes`` is cancelled first (the caller's teardown waits for its end).
    """
    logger = get_run_logger()
    client = aws("emr-serverless")
    ids = {"applicationId": application_id, "jobRunId": job_run_id}
    progress = JobProgress(f"EMR Serverless job run {job_run_id}")
    started = time.monotonic()
    what = f"job run {job_run_id} on {application_id}"
    try:
        wait(waiter("JobRunStarted", client), what=f"{what} started", state=job_run_state, delay=poll_seconds,
             timeout_minutes=timeout_minutes, **ids)  # fmt: skip
        progress.update(_PERCENT["RUNNING"], "RUNNING")
        left = max(timeout_minutes - (time.monotonic() - started) / 60, poll_seconds / 60)
        wait(waiter("JobRunSucceeded", client), what=f"{what} done", state=job_run_state, delay=poll_seconds,
             timeout_minutes=left, **ids)  # fmt: skip
    except WaiterError:
        pass  # judged by the job run's state below: failed, cancelled, or still going past the timeout
    job_run = client.get_job_run(**ids)["jobRun"]
    state = job_run["state"]
    if state == "SUCCESS":
        progress.update(_PERCENT["SUCCESS"], "SUCCESS")
        logger.info("job run %s succeeded", job_run_id)
        return job_run
    progress.update(progress.percent, f"{state} (failed)" if state in JOB_RUN_ENDED else f"{state} (timed out)")
    if state not in JOB_RUN_ENDED:
        reason = f"still {state} after {timeout_minutes} minutes; cancelled (--step-timeout-minutes)"
        try:
            client.cancel_job_run(**ids)
        except ClientError as exc:  # the teardown that follows cancels again, or deletes the application
            reason += f", but EMR Serverless refused the cancel ({error_code(exc)})"
        logger.error("job run %s %s", job_run_id, reason)
        raise JobRunFailed(f"job run {job_run_id} {reason}", reason=reason)
    reason = f"{state}: {job_run.get('stateDetails') or 'EMR Serverless gave no details'}"
    log = driver_log_uri(log_uri, application_id, job_run_id)
    tail = read_log_tail(aws, log, poll_seconds, log_wait_minutes)
    logger.error("job run %s %s; driver log %s; stderr tail:\n%s", job_run_id, reason, log, tail)
    raise JobRunFailed(
        f"EMR Serverless job run {job_run_id} on {application_id} {reason}\nlog: {log}\nstderr (last lines):\n{tail}",
        reason=reason,
        log_uri=log,
        log_tail=tail,
    )
