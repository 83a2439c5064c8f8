"""Waiting for the EMR step: its state logged as it goes, and on failure EMR's reason and the tail of its stderr."""

from __future__ import annotations

import gzip
import time

from botocore.exceptions import ClientError, WaiterError
from botocore.waiter import WaiterModel, create_waiter_with_client
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.aws.clients import AwsClients
from tasks.aws.s3_uris import split_s3_uri
from tasks.aws.waiting import wait
from tasks.emr.steps import FAILED_STATES
from tasks.errors import FruitflowError
from tasks.progress import STEP_STATE_PERCENT, JobProgress

LOG_TAIL_LINES = 40
# boto3 has no "step started" waiter; this one ends when the step leaves PENDING (a terminal state included).
_STEP_STARTED = WaiterModel(
    {
        "version": 2,
        "waiters": {
            "StepStarted": {
                "operation": "DescribeStep",
                "delay": 30,
                "maxAttempts": 60,
                "acceptors": [
                    {"state": "success", "matcher": "path", "argument": "Step.Status.State", "expected": state}
                    for state in ("RUNNING", "COMPLETED", "CANCEL_PENDING", *FAILED_STATES)
                ],
            }
        },
    }
)
# boto3's step_complete waiter ignores INTERRUPTED (it would wait out the whole timeout): every end state ends this one.
_STEP_DONE = WaiterModel(
    {
        "version": 2,
        "waiters": {
            "StepDone": {
                "operation": "DescribeStep",
                "delay": 30,
                "maxAttempts": 60,
                "acceptors": [
                    {"state": "success", "matcher": "path", "argument": "Step.Status.State", "expected": "COMPLETED"},
                    *(
                        {"state": "failure", "matcher": "path", "argument": "Step.Status.State", "expected": state}
                        for state in FAILED_STATES
                    ),
                ],
            }
        },
    }
)
# The job reads these into metrics.json. The step id is not known before the step exists; EMR runs each step in
# its own directory named after it, which is where the id comes from (left unset if that ever changes).


# How long a failed step waits for EMR to upload its log (every few minutes) before reporting without its tail.
LOG_WAIT_MINUTES = 6


class StepFailed(FruitflowError, RuntimeError):
    """The step ended FAILED/CANCELLED/INTERRUPTED (or timed out): EMR's reason and the tail of its stderr."""

    def __init__(self, message: str, *, reason: str = "", log_uri: str | None = None, log_tail: str = ""):
        super().__init__(message)
        self.reason = reason
        self.log_uri = log_uri
        self.log_tail = log_tail


def step_state(response: dict) -> str:
    """The state a DescribeStep response shows, for the wait's log lines."""
    return response["Step"]["Status"]["State"]


def _log_location(emr, cluster_id: str, step_id: str, failure: dict) -> str | None:
    if failure.get("LogFile", "").startswith("s3"):
        log = failure["LogFile"]
        return log if log.endswith(".gz") else log.rstrip("/") + "/stderr.gz"
    log_uri = emr.describe_cluster(ClusterId=cluster_id)["Cluster"].get("LogUri")
    if not log_uri:
        return None
    return f"{log_uri.rstrip('/')}/{cluster_id}/steps/{step_id}/stderr.gz"


def read_log_tail(aws: AwsClients, log_uri: str, poll_seconds: int, wait_minutes: float) -> str:
    """The last lines of a gzipped step log; EMR uploads logs every few minutes, so wait for it (a waiter)."""
    s3 = aws("s3")
    bucket, key = split_s3_uri(log_uri)
    try:
        wait(
            s3.get_waiter("object_exists"),
            what=f"step log {log_uri}",
            state=lambda response: "not uploaded yet",
            delay=poll_seconds,
            timeout_minutes=wait_minutes,
            Bucket=bucket,
            Key=key,
        )
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except (WaiterError, ClientError) as exc:
        return f"(no log at {log_uri}: {type(exc).__name__})"
    text = gzip.decompress(body).decode("utf-8", "replace") if body[:2] == b"\x1f\x8b" else body.decode()
    return "\n".join(text.rstrip().splitlines()[-LOG_TAIL_LINES:])


@task(name="wait-for-step", cache_policy=NO_CACHE)
def wait_for_step(
    aws: AwsClients,
    cluster_id: str,
    step_id: str,
    *,
    timeout_minutes: float = 180,
    poll_seconds: int = 30,
    log_wait_minutes: float = LOG_WAIT_MINUTES,
) -> str:
    """Wait for the step to finish; raise :class:`StepFailed` with EMR's reason and the stderr tail if it did not.

    A step still running after ``timeout_minutes`` is cancelled (idle auto-termination never fires while a step
    runs) and reported as failed.
    """
    logger = get_run_logger()
    emr = aws("emr")
    progress = JobProgress(f"EMR step {step_id}")
    progress.update(STEP_STATE_PERCENT["PENDING"], "PENDING")
    started = time.monotonic()
    try:
        ids = {"ClusterId": cluster_id, "StepId": step_id}
        waiter = create_waiter_with_client("StepStarted", _STEP_STARTED, emr)
        what = f"step {step_id} on {cluster_id}"
        wait(waiter, what=f"{what} started", state=step_state, delay=poll_seconds, timeout_minutes=timeout_minutes,
             **ids)  # fmt: skip
        progress.update(STEP_STATE_PERCENT["RUNNING"], "RUNNING")
        left = max(timeout_minutes - (time.monotonic() - started) / 60, poll_seconds / 60)
        waiter = create_waiter_with_client("StepDone", _STEP_DONE, emr)
        wait(waiter, what=f"{what} done", state=step_state, delay=poll_seconds, timeout_minutes=left, **ids)
        progress.update(STEP_STATE_PERCENT["COMPLETED"], "COMPLETED")
        logger.info("step %s completed", step_id)
        return "COMPLETED"
    except WaiterError:
        pass  # judged by the step's state below: failed, or still running past the timeout
    status = emr.describe_step(ClusterId=cluster_id, StepId=step_id)["Step"]["Status"]
    state = status["State"]
    progress.update(progress.percent, f"{state} (failed)" if state in FAILED_STATES else f"{state} (timed out)")
    if state not in FAILED_STATES:
        reason = f"still {state} after {timeout_minutes} minutes; cancelled (--step-timeout-minutes)"
        try:
            emr.cancel_steps(ClusterId=cluster_id, StepIds=[step_id], StepCancellationOption="TERMINATE_PROCESS")
        except ClientError as exc:  # terminating the cluster (the caller's finally) ends the step anyway
            reason += f", but EMR refused the cancel ({exc.response.get('Error', {}).get('Code', 'error')})"
        logger.error("step %s %s", step_id, reason)
        raise StepFailed(f"step {step_id} {reason}", reason=reason, log_uri=None, log_tail="")
    failure = status.get("FailureDetails") or {}
    reason = failure.get("Message") or failure.get("Reason") or status.get("StateChangeReason", {}).get("Message")
    reason = f"{state}: {reason or 'EMR gave no reason'}"
    log_uri = _log_location(emr, cluster_id, step_id, failure)
    tail = read_log_tail(aws, log_uri, poll_seconds, log_wait_minutes) if log_uri else "(no log URI)"
    logger.error("step %s %s; log %s; stderr tail:\n%s", step_id, reason, log_uri, tail)
    raise StepFailed(
        f"EMR step {step_id} on {cluster_id} {reason}\nlog: {log_uri}\nstderr (last lines):\n{tail}",
        reason=reason,
        log_uri=log_uri,
        log_tail=tail,
    )
