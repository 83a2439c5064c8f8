"""The EMR step: its definition and name (the flow run id in it), submitted once (idempotently), found, cancelled."""

from __future__ import annotations

import time
from functools import partial

from botocore.exceptions import ClientError
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.aws.clients import AwsClients
from tasks.aws.environment import UNPACKED
from tasks.aws.remote_wait import RunWatch
from tasks.aws.run_names import is_run_name, run_name

# States in which an existing step with our name is the one to follow rather than adding another.
LIVE_STATES = ["PENDING", "RUNNING", "COMPLETED", "CANCEL_PENDING"]
# States in which a step still runs (or will): what a cancelled, crashed or failed run must cancel.
ACTIVE_STEP_STATES = ["PENDING", "RUNNING"]
FAILED_STATES = ("FAILED", "CANCELLED", "INTERRUPTED")
# How long a failed step waits for EMR to upload its log (every few minutes) before reporting without its tail.
LOG_WAIT_MINUTES = 6
# EMR refused these before doing anything: safe to send again (anything else may have added the step).
_REFUSED_CODES = {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"}
_SUBMIT_ATTEMPTS = 5
# The step's command: the run's environment variables, then the job's packages for the driver. EMR steps run
# spark-submit in client mode, so the driver is a process on the master, outside YARN: ``--archives`` reaches only the
# executors. The wrapper fetches the same archive into the step's own directory (/mnt/var/lib/hadoop/steps/s-...),
# checks its sha256 against the one the flow staged (the object may have been replaced since: tasks/aws/checksums.py),
# unpacks it and puts it on the driver's PYTHONPATH; the executors get it from YARN as ./environment
# (spark.executorEnv.PYTHONPATH). spark-submit runs under ``timeout``: the step ends itself at the run's
# --step-timeout-minutes even when the flow that watches it is gone (SIGKILL); a step that overran exits 124, and TERM
# is followed by KILL after a grace period. spark-submit's stdout goes to the step's stderr: PySpark merges the Python
# driver's stderr (the job's log, its error line) into spark-submit's stdout, and a failed step is reported from
# stderr.gz (:func:`step_watch`). The cluster ($1) and flow run ($5) name the step for a reader of its command line;
# the job gets them as --cluster-id and --flow-run-id (its lease, tasks/aws/output_lease.py), and the step's own id,
# known only once it runs, as FRUITFLOW_STEP_ID.
_STEP_WRAPPER = (
    "set -euo pipefail; "
    'environment="$2"; digest="$3"; deadline="$4"; shift 5; '
    'case "$(basename "$PWD")" in s-*) export FRUITFLOW_STEP_ID="$(basename "$PWD")";; esac; '
    f"mkdir -p {UNPACKED}; "
    f'aws s3 cp --quiet "$environment" {UNPACKED}.tar.gz; '
    f'echo "$digest  {UNPACKED}.tar.gz" | sha256sum --check --status - '
    '|| { echo "fruitflow: $environment is not the archive the flow staged (sha256 $digest); not unpacking it" >&2; '
    "exit 1; }; "
    f"tar -xzf {UNPACKED}.tar.gz -C {UNPACKED}; rm -f {UNPACKED}.tar.gz; "
    f'export PYTHONPATH="$PWD/{UNPACKED}${{PYTHONPATH:+:$PYTHONPATH}}"; '
    'exec timeout --kill-after=120 "${deadline}m" "$@" >&2'
)


def environment_arguments(environment_uri: str) -> list[str]:
    """spark-submit options that ship the job's packages to the executors: YARN unpacks the archive as
    ``./environment`` in each container, put first on the Python workers' path (the cluster's own python3 runs them).

    Example:
        >>> environment_arguments("s3://b/env.tar.gz")[:2]
        ['--archives', 's3://b/env.tar.gz#environment']
    """
    return ["--archives", f"{environment_uri}#{UNPACKED}", "--conf", f"spark.executorEnv.PYTHONPATH=./{UNPACKED}"]


def step_definition(
    *,
    cluster_id: str,
    script_uri: str,
    py_files_uri: str,
    environment_uri: str,
    environment_sha256: str,
    job_args: list[str],
    token: str,
    flow_run_id: str,
    timeout_minutes: float,
    terminate_cluster_on_failure: bool = False,
) -> dict:
    """``command-runner.jar`` running ``spark-submit`` with the shipped environment and the job's own arguments.

    ``environment_uri`` is the archive :func:`tasks.aws.environment.upload_environment` staged, ``environment_sha256``
    the hex sha256 of its bytes: the wrapper refuses an archive that does not match. The driver (through the wrapper)
    and the executors (``--archives``) import the job's packages from it; no node installs anything. The command ends
    itself after ``timeout_minutes``. ``terminate_cluster_on_failure`` (a cluster the run created and does not keep):
    a failed or timed-out step terminates the cluster itself, without the flow.
    """
    submit = [
        "spark-submit",
        "--deploy-mode",
        "client",
        *environment_arguments(environment_uri),
        "--py-files",
        py_files_uri,
        script_uri,
        *job_args,
    ]
    # the wrapper's own arguments, "$1".."$5"
    wrapper_args = [cluster_id, environment_uri, environment_sha256, f"{timeout_minutes:g}", flow_run_id]
    return {
        "Name": run_name(flow_run_id, token),
        # A cluster left running (reused, kept) continues, and the flow reads the step's state; one the run created
        # ends with its step's failure, so that a step whose flow is gone (SIGKILL) does not leave it running.
        "ActionOnFailure": "TERMINATE_CLUSTER" if terminate_cluster_on_failure else "CONTINUE",
        "HadoopJarStep": {
            "Jar": "command-runner.jar",
            "Args": ["bash", "-c", _STEP_WRAPPER, "fruitflow-step", *wrapper_args, *submit],
        },
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
def submit_step(aws: AwsClients, cluster_id: str, step: dict) -> str:
    """Add the step unless this run already did: a retry (say, after a timeout on the response) finds it by name.

    botocore never resends the AddJobFlowSteps request itself (that would add a second step after a lost reply):
    it is sent on a one-attempt client, and this task's own retry looks the step up before sending again.

    Returns:
        the step id.
    """
    logger = get_run_logger()
    emr = aws("emr")
    step_id = find_step(emr, cluster_id, step["Name"])
    if step_id:
        logger.info("step %s already submitted on %s; following it", step_id, cluster_id)
        return step_id
    step_id = _add_step_once(aws.once("emr"), cluster_id, step)
    logger.info("submitted step %s on cluster %s", step_id, cluster_id)
    return step_id


def run_steps(emr, cluster_id: str, flow_run_id: str, states: list[str] | None = None) -> list[str]:
    """Ids of this flow run's steps on a cluster (by the run id in their name), in ``states`` (default: active)."""
    found = []
    for page in emr.get_paginator("list_steps").paginate(ClusterId=cluster_id, StepStates=states or ACTIVE_STEP_STATES):
        found += [step["Id"] for step in page["Steps"] if is_run_name(step["Name"], flow_run_id)]
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


def _failure_reason(response: dict) -> str:
    status = response["Step"]["Status"]
    failure = status.get("FailureDetails") or {}
    reason = failure.get("Message") or failure.get("Reason") or status.get("StateChangeReason", {}).get("Message")
    return reason or "EMR gave no reason"


def _log_location(emr, cluster_id: str, step_id: str, response: dict) -> str | None:
    """The failed step's stderr: where EMR's failure details point, else under the cluster's log URI."""
    failure = response["Step"]["Status"].get("FailureDetails") or {}
    if failure.get("LogFile", "").startswith("s3"):
        log = failure["LogFile"]
        return log if log.endswith(".gz") else log.rstrip("/") + "/stderr.gz"
    log_uri = emr.describe_cluster(ClusterId=cluster_id)["Cluster"].get("LogUri")
    if not log_uri:
        return None
    return f"{log_uri.rstrip('/')}/{cluster_id}/steps/{step_id}/stderr.gz"


def step_watch(aws: AwsClients, cluster_id: str, step_id: str, log_wait_minutes: float = LOG_WAIT_MINUTES) -> RunWatch:
    """The step as waiter data (tasks/aws/remote_wait.py); a step past its deadline is cancelled with its process."""
    emr = aws("emr")

    def cancel() -> None:
        emr.cancel_steps(ClusterId=cluster_id, StepIds=[step_id], StepCancellationOption="TERMINATE_PROCESS")

    return RunWatch(
        what=f"EMR step {step_id} on {cluster_id}",
        client=emr,
        operation="DescribeStep",
        request={"ClusterId": cluster_id, "StepId": step_id},
        state_path="Step.Status.State",
        running=("RUNNING", "CANCEL_PENDING"),
        succeeded=("COMPLETED",),
        failed=FAILED_STATES,
        reason=_failure_reason,
        log_uri=partial(_log_location, emr, cluster_id, step_id),
        cancel=cancel,
        log_wait_minutes=log_wait_minutes,
    )
