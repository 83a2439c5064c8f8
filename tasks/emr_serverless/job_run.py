"""The EMR Serverless job run: its request (the staged script, package and environment), started once, watched as
waiter data, found and cancelled.

Idempotency has two layers. StartJobRun's ``clientToken`` (from the flow run and the job's arguments) makes AWS
answer a resent request with the job run it already started; and before starting, the task looks for a live job run
with this run's name (which carries the flow run id and the same token), so a retried task follows the job run it
started instead of starting another.
"""

from __future__ import annotations

from botocore.exceptions import WaiterError
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from blocks.emr_serverless_config import EmrServerlessConfig
from tasks.aws.clients import AwsClients, run_logger
from tasks.aws.remote_wait import RunWatch
from tasks.aws.run_names import is_run_name, run_name
from tasks.aws.tags import TAG_MAX_AGE, run_tags
from tasks.aws.waiting import wait
from tasks.emr_serverless.waiters import JOB_RUN_ENDED, JOB_RUN_LIVE, job_run_state, waiter

# A job run with our name in one of these is the one to follow rather than starting another.
_FOLLOW_STATES = [*JOB_RUN_LIVE, "SUCCESS"]
# How long a failed job run waits for its driver's stderr to reach S3 before reporting without its tail.
LOG_WAIT_MINUTES = 3
# How long a cancel waits for the job run to end.
CANCEL_TIMEOUT_MINUTES = 10


def driver_log_uri(log_uri: str, application_id: str, job_run_id: str, stream: str = "stderr") -> str:
    """Where EMR Serverless puts the driver's log of a job run under the run's S3 log destination.

    Example:
        >>> driver_log_uri("s3://b/logs/", "00app", "00job")
        's3://b/logs/applications/00app/jobs/00job/SPARK_DRIVER/stderr.gz'
    """
    return f"{log_uri.rstrip('/')}/applications/{application_id}/jobs/{job_run_id}/SPARK_DRIVER/{stream}.gz"


def environment_confs(archive_uri: str, *, layout: str = "target") -> dict[str, str]:
    """What EMR Serverless needs to run the job's Python from a shipped archive (``spark.archives``, unpacked as
    ``./environment`` in the driver's and executors' working directories).

    ``target`` (what tasks/aws/environment.py builds): packages installed with ``pip --target``, put on PYTHONPATH of
    the release's own Python 3.9. ``venv``: a relocatable virtualenv (venv-pack) whose interpreter runs the job.
    """
    confs = {"spark.archives": f"{archive_uri}#environment"}
    if layout == "target":
        keys = ("spark.emr-serverless.driverEnv.PYTHONPATH", "spark.executorEnv.PYTHONPATH")
        return confs | dict.fromkeys(keys, "./environment")
    keys = (
        "spark.emr-serverless.driverEnv.PYSPARK_DRIVER_PYTHON",
        "spark.emr-serverless.driverEnv.PYSPARK_PYTHON",
        "spark.executorEnv.PYSPARK_PYTHON",
    )
    return confs | dict.fromkeys(keys, "./environment/bin/python")


def spark_confs(config: EmrServerlessConfig, *, py_files_uri: str) -> dict:
    """The job run's Spark properties: the package and the workers' size (the run's context is in the job's
    options: --engine, --cluster-id, --flow-run-id)."""
    return {
        "spark.submit.pyFiles": py_files_uri,
        "spark.driver.cores": str(config.driver_cores),
        "spark.driver.memory": f"{config.driver_memory_gb}g",
        "spark.executor.cores": str(config.executor_cores),
        "spark.executor.memory": f"{config.executor_memory_gb}g",
        "spark.dynamicAllocation.minExecutors": str(config.min_executors),
        "spark.dynamicAllocation.maxExecutors": str(config.max_executors),
        # EMRFS writes every object with SSE-S3, whatever the bucket's default (as the cluster's emrfs-site does).
        "spark.hadoop.fs.s3.enableServerSideEncryption": "true",
        **config.spark_configuration,
    }


def spark_submit_parameters(confs: dict[str, str]) -> str:
    """``--conf k=v`` for each property (EMR Serverless splits the string on spaces: values must have none).

    Example:
        >>> spark_submit_parameters({"spark.executor.cores": "4"})
        '--conf spark.executor.cores=4'
    """
    spaced = [key for key, value in confs.items() if " " in f"{key}{value}"]
    if spaced:
        raise ValueError(f"Spark properties with spaces cannot be passed to EMR Serverless: {spaced}")
    return " ".join(f"--conf {key}={value}" for key, value in confs.items())


def job_run_request(
    config: EmrServerlessConfig,
    *,
    application_id: str,
    role_arn: str,
    script_uri: str,
    job_args: list[str],
    confs: dict[str, str],
    token: str,
    flow_run_id: str,
    log_uri: str,
    timeout_minutes: int,
    max_age_hours: float,
) -> dict:
    """The ``start_job_run`` arguments: ``spark-submit <script> <job_args>`` with ``confs``, logs to ``log_uri``."""
    return {
        "applicationId": application_id,
        "clientToken": token,
        "name": run_name(flow_run_id, token),
        "executionRoleArn": role_arn,
        "jobDriver": {
            "sparkSubmit": {
                "entryPoint": script_uri,
                "entryPointArguments": list(job_args),
                "sparkSubmitParameters": spark_submit_parameters(confs),
            }
        },
        "configurationOverrides": {"monitoringConfiguration": {"s3MonitoringConfiguration": {"logUri": log_uri}}},
        "tags": {**run_tags(flow_run_id, config.tags), TAG_MAX_AGE: f"{max_age_hours:g}"},
        # EMR Serverless cancels the job itself after this long, even if the flow is gone (SIGKILL).
        "executionTimeoutMinutes": timeout_minutes,
    }


def find_job_run(client, application_id: str, name: str) -> str | None:
    """The id of a live or finished job run with this name on the application, if any."""
    pages = client.get_paginator("list_job_runs").paginate(applicationId=application_id, states=_FOLLOW_STATES)
    for page in pages:
        for job_run in page["jobRuns"]:
            if job_run.get("name") == name:
                return job_run["id"]
    return None


@task(name="start-job-run", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def start_job_run(aws: AwsClients, request: dict) -> str:
    """Start the job run unless this flow run already did (a retry finds it by name); returns the job run id."""
    logger = get_run_logger()
    client = aws("emr-serverless")
    application_id = request["applicationId"]
    job_run_id = find_job_run(client, application_id, request["name"])
    if job_run_id:
        logger.info("job run %s already started on %s; following it", job_run_id, application_id)
        return job_run_id
    job_run_id = client.start_job_run(**request)["jobRunId"]
    logger.info("started job run %s on application %s", job_run_id, application_id)
    return job_run_id


def live_job_runs(client, application_id: str) -> list[dict]:
    """The job runs still queued or running on an application (ListJobRuns summaries: id, name, state...)."""
    pages = client.get_paginator("list_job_runs").paginate(applicationId=application_id, states=list(JOB_RUN_LIVE))
    return [job_run for page in pages for job_run in page["jobRuns"]]


def run_job_runs(client, application_id: str, flow_run_id: str) -> list[str]:
    """Ids of this flow run's live job runs on an application (by the flow run id in their name)."""
    return [run["id"] for run in live_job_runs(client, application_id) if is_run_name(run.get("name"), flow_run_id)]


def cancel_job_runs(aws: AwsClients, application_id: str, job_run_ids: list[str], poll_seconds: float) -> list[str]:
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
            wait(
                waiter("JobRunEnded", client),
                what=f"job run {job_run_id} cancelled",
                state=job_run_state,
                delay=poll_seconds,
                timeout_minutes=CANCEL_TIMEOUT_MINUTES,
                **ids,
            )
        except WaiterError:
            run_logger().error("job run %s did not end after its cancel; check it in the console", job_run_id)
    return cancelled


def job_run_watch(
    aws: AwsClients, application_id: str, job_run_id: str, log_uri: str, log_wait_minutes: float = LOG_WAIT_MINUTES
) -> RunWatch:
    """The job run as waiter data (tasks/aws/remote_wait.py); past its deadline it is cancelled."""
    client = aws("emr-serverless")
    ids = {"applicationId": application_id, "jobRunId": job_run_id}
    return RunWatch(
        what=f"EMR Serverless job run {job_run_id} on {application_id}",
        client=client,
        operation="GetJobRun",
        request=ids,
        state_path="jobRun.state",
        running=("RUNNING", "CANCELLING"),
        succeeded=("SUCCESS",),
        failed=tuple(state for state in JOB_RUN_ENDED if state != "SUCCESS"),
        reason=lambda response: response["jobRun"].get("stateDetails") or "EMR Serverless gave no details",
        log_uri=lambda response: driver_log_uri(log_uri, application_id, job_run_id),
        cancel=lambda: client.cancel_job_run(**ids),
        log_wait_minutes=log_wait_minutes,
    )
