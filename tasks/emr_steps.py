"""The EMR step: submit the job once (idempotently), wait for it, and on failure read why from its log."""

from __future__ import annotations

import gzip
import hashlib
import time

from botocore.exceptions import ClientError, WaiterError
from botocore.waiter import WaiterModel, create_waiter_with_client
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect_aws import AwsCredentials

from tasks.aws_clients import client, split_s3_uri
from tasks.emr_cluster import waiter_config
from tasks.progress import STEP_STATE_PERCENT, JobProgress

STEP_PREFIX = "fruitflow extract-features"
# States in which an existing step with our name is the one to follow rather than adding another.
LIVE_STATES = ["PENDING", "RUNNING", "COMPLETED", "CANCEL_PENDING"]
# States in which a step still runs (or will): what a cancelled, crashed or failed run must cancel.
ACTIVE_STEP_STATES = ["PENDING", "RUNNING"]
FAILED_STATES = ("FAILED", "CANCELLED", "INTERRUPTED")
# EMR refused these before doing anything: safe to send again (anything else may have added the step).
_REFUSED_CODES = {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"}
_SUBMIT_ATTEMPTS = 5
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
_STEP_WRAPPER = (
    'export FRUITFLOW_ENGINE=emr FRUITFLOW_CLUSTER_ID="$1"; shift; '
    'case "$(basename "$PWD")" in s-*) export FRUITFLOW_STEP_ID="$(basename "$PWD")";; esac; '
    'exec "$@"'
)


class StepFailed(RuntimeError):
    """The step ended FAILED/CANCELLED/INTERRUPTED (or timed out): EMR's reason and the tail of its stderr."""

    def __init__(self, message: str, *, reason: str = "", log_uri: str | None = None, log_tail: str = ""):
        super().__init__(message)
        self.reason = reason
        self.log_uri = log_uri
        self.log_tail = log_tail


def run_token(flow_run_id: str, job_args: list[str]) -> str:
    """Same flow run + same arguments -> same token: what makes a retried submit find its step."""
    return hashlib.sha256("\0".join([flow_run_id, *job_args]).encode()).hexdigest()[:16]


def step_name(flow_run_id: str, token: str) -> str:
    """The step's name: the full flow run id (hooks find the run's steps by it) and the submission token.

    Example:
        >>> step_name("0f1e", "ab12")
        'fruitflow extract-features 0f1e ab12'
    """
    return f"{STEP_PREFIX} {flow_run_id} {token}"


def is_run_step(name: str, flow_run_id: str) -> bool:
    """Whether a step name is one of this flow run's steps."""
    return name.startswith(f"{STEP_PREFIX} {flow_run_id} ")


def step_definition(
    *, cluster_id: str, script_uri: str, py_files_uri: str, job_args: list[str], token: str, flow_run_id: str
) -> dict:  # fmt: skip
    """``command-runner.jar`` running ``spark-submit`` with the job's own arguments (from ``job_arguments``)."""
    submit = ["spark-submit", "--deploy-mode", "client", "--py-files", py_files_uri, script_uri, *job_args]
    return {
        "Name": step_name(flow_run_id, token),
        # The flow tears the cluster down itself; CONTINUE keeps the cluster for the flow to read the step's state.
        "ActionOnFailure": "CONTINUE",
        "HadoopJarStep": {
            "Jar": "command-runner.jar",
            "Args": ["bash", "-c", _STEP_WRAPPER, "fruitflow-step", cluster_id, *submit],
        },  # fmt: skip
    }


def find_step(emr, cluster_id: str, name: str) -> str | None:
    """The id of a live (pending, running, done) step with this name, if any."""
    for page in emr.get_paginator("list_steps").paginate(ClusterId=cluster_id, StepStates=LIVE_STATES):
        for step in page["Steps"]:
            if step["Name"] == name:
                return step["Id"]
    return None


def _add_step_once(emr_once, cluster_id: str, step: dict, delay_seconds: float = 1.0) -> str:
    """AddJobFlowSteps on a one-attempt client: resent only when EMR refused it (throttling), never after a lost reply.

    A connection error or a 5xx may mean EMR added the step; it propagates, and the task's retry looks the step up by
    name first (:func:`submit_step`).
    """
    for attempt in range(1, _SUBMIT_ATTEMPTS + 1):
        try:
            return emr_once.add_job_flow_steps(JobFlowId=cluster_id, Steps=[step])["StepIds"][0]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code not in _REFUSED_CODES or attempt == _SUBMIT_ATTEMPTS:
                raise
            get_run_logger().warning(
                "AWS emr.AddJobFlowSteps: retry %d after %s (refused, so it cannot have been added)", attempt, code
            )
            time.sleep(delay_seconds * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


@task(name="submit-step", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def submit_step(credentials: AwsCredentials, cluster_id: str, step: dict) -> str:
    """Add the step unless this run already did: a retry (say, after a timeout on the response) finds it by name.

    botocore never resends the AddJobFlowSteps request itself (that would add a second step after a lost reply):
    it is sent on a one-attempt client, and this task's own retry looks the step up before sending again.

    Returns:
        the step id.
    """
    logger = get_run_logger()
    emr = client(credentials, "emr")
    step_id = find_step(emr, cluster_id, step["Name"])
    if step_id:
        logger.info("step %s already submitted on %s; following it", step_id, cluster_id)
        return step_id
    step_id = _add_step_once(client(credentials, "emr", retries=False), cluster_id, step)
    logger.info("submitted step %s on cluster %s", step_id, cluster_id)
    return step_id


def run_steps(emr, cluster_id: str, flow_run_id: str, states: list[str] | None = None) -> list[str]:
    """Ids of this flow run's steps on a cluster (by the run id in their name), in ``states`` (default: active)."""
    found = []
    for page in emr.get_paginator("list_steps").paginate(ClusterId=cluster_id, StepStates=states or ACTIVE_STEP_STATES):
        found += [step["Id"] for step in page["Steps"] if is_run_step(step["Name"], flow_run_id)]
    return found


def cancel_run_steps(emr, cluster_id: str, flow_run_id: str) -> list[str]:
    """Cancel this flow run's pending or running steps on a cluster we leave running (reused or kept).

    Without it the step would go on writing to the output after the run has ended, and the cluster's idle
    auto-termination never fires while a step runs. Returns the ids cancelled.
    """
    step_ids = run_steps(emr, cluster_id, flow_run_id)
    if step_ids:
        emr.cancel_steps(ClusterId=cluster_id, StepIds=step_ids, StepCancellationOption="TERMINATE_PROCESS")
    return step_ids


def _log_location(emr, cluster_id: str, step_id: str, failure: dict) -> str | None:
    if failure.get("LogFile", "").startswith("s3"):
        log = failure["LogFile"]
        return log if log.endswith(".gz") else log.rstrip("/") + "/stderr.gz"
    log_uri = emr.describe_cluster(ClusterId=cluster_id)["Cluster"].get("LogUri")
    if not log_uri:
        return None
    return f"{log_uri.rstrip('/')}/{cluster_id}/steps/{step_id}/stderr.gz"


def read_log_tail(credentials: AwsCredentials, log_uri: str, poll_seconds: int, wait_minutes: float) -> str:
    """The last lines of a gzipped step log; EMR uploads logs every few minutes, so wait for it (a waiter)."""
    s3 = client(credentials, "s3")
    bucket, key = split_s3_uri(log_uri)
    try:
        s3.get_waiter("object_exists").wait(
            Bucket=bucket, Key=key, WaiterConfig=waiter_config(poll_seconds, wait_minutes)
        )
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except (WaiterError, ClientError) as exc:
        return f"(no log at {log_uri}: {type(exc).__name__})"
    text = gzip.decompress(body).decode("utf-8", "replace") if body[:2] == b"\x1f\x8b" else body.decode()
    return "\n".join(text.rstrip().splitlines()[-LOG_TAIL_LINES:])


@task(name="wait-for-step", cache_policy=NO_CACHE)
def wait_for_step(
    credentials: AwsCredentials,
    cluster_id: str,
    step_id: str,
    *,
    timeout_minutes: float = 180,
    poll_seconds: int = 30,
    log_wait_minutes: float = 6,
) -> str:
    """Wait for the step to finish; raise :class:`StepFailed` with EMR's reason and the stderr tail if it did not.

    A step still running after ``timeout_minutes`` is cancelled (idle auto-termination never fires while a step
    runs) and reported as failed.
    """
    logger = get_run_logger()
    emr = client(credentials, "emr")
    progress = JobProgress(f"EMR step {step_id}")
    progress.update(STEP_STATE_PERCENT["PENDING"], "PENDING")
    started = time.monotonic()
    try:
        create_waiter_with_client("StepStarted", _STEP_STARTED, emr).wait(
            ClusterId=cluster_id, StepId=step_id, WaiterConfig=waiter_config(poll_seconds, timeout_minutes)
        )
        progress.update(STEP_STATE_PERCENT["RUNNING"], "RUNNING")
        left = max(timeout_minutes - (time.monotonic() - started) / 60, poll_seconds / 60)
        create_waiter_with_client("StepDone", _STEP_DONE, emr).wait(
            ClusterId=cluster_id, StepId=step_id, WaiterConfig=waiter_config(poll_seconds, left)
        )
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
    tail = read_log_tail(credentials, log_uri, poll_seconds, log_wait_minutes) if log_uri else "(no log URI)"
    logger.error("step %s %s; log %s; stderr tail:\n%s", step_id, reason, log_uri, tail)
    raise StepFailed(
        f"EMR step {step_id} on {cluster_id} {reason}\nlog: {log_uri}\nstderr (last lines):\n{tail}",
        reason=reason,
        log_uri=log_uri,
        log_tail=tail,
    )
