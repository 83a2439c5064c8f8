"""Preflight for EMR Serverless: the shared AWS checks, then the release label, the application (reused, or the
capacity of one to create) and the job's execution role (trust, S3 permissions). Every problem says how to fix it,
all are listed at once, and nothing is created here.
"""

from __future__ import annotations

from botocore.exceptions import ClientError
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from blocks.emr_serverless_config import EmrServerlessConfig
from fruitjob.options import JobOptions
from tasks.aws.clients import AwsClients
from tasks.aws.model_preflight import check_reads
from tasks.aws.output_lease import held_by_another_run
from tasks.aws.preflight import check_account_and_data, error_code, refuse
from tasks.aws.s3_uris import split_s3_uri
from tasks.emr_serverless.role_check import Need, check_execution_role, role_arn

SUPPORTED_MAJOR = "emr-7."  # the job (Python 3.9) and its shipped environment are built for EMR 7's Spark 3.5
PROBE = "fruitflow-preflight-probe"
FIX = "set it in the EmrServerlessConfig block"


def _object(uri: str, key: str | None = PROBE) -> str:
    bucket, prefix = split_s3_uri(uri)
    path = "/".join(part.strip("/") for part in (prefix, key or "") if part and part.strip("/"))
    return f"arn:aws:s3:::{bucket}/{path}"


def _bucket(uri: str) -> str:
    return f"arn:aws:s3:::{split_s3_uri(uri)[0]}"


def job_needs(job: JobOptions, staging_uri: str, log_uri: str) -> list[Need]:
    """What the execution role must allow in S3 for this run (a probe key stands for each prefix's objects)."""
    needs = [
        Need("s3:ListBucket", _bucket(job.images), "listing the images"),
        Need("s3:GetObject", _object(job.images), "reading the images"),
        Need("s3:GetObject", _object(staging_uri), "reading the staged job"),
        Need("s3:PutObject", _object(log_uri), "writing the job's logs"),
        Need("s3:ListBucket", _bucket(job.output), "listing the output"),
    ]
    for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
        needs.append(Need(action, _object(job.output), "writing the output (and its temporary files)"))
    if job.weights.startswith("s3://"):
        needs.append(Need("s3:GetObject", _object(job.weights, None), "reading --weights"))
    if job.pca_model:
        needs.append(Need("s3:GetObject", _object(job.pca_model), "reading --pca-model"))
    return needs


def _release_labels(emr) -> list[str]:
    labels, token = [], None
    while True:
        page = emr.list_release_labels(Filters={"Prefix": SUPPORTED_MAJOR}, **({"NextToken": token} if token else {}))
        labels += page.get("ReleaseLabels", [])
        token = page.get("NextToken")
        if not token:
            return labels


def check_release(aws: AwsClients, label: str) -> list[str]:
    """The label is EMR 7.x and EMR lists it in the region (EMR Serverless runs the same releases)."""
    if not label.startswith(SUPPORTED_MAJOR):
        return [
            f"release_label {label} is not EMR 7.x: the job and its Python environment are built for EMR 7 "
            f"(Spark 3.5, Python 3.9); {FIX} (e.g. emr-7.13.0)"
        ]
    try:
        known = _release_labels(aws("emr"))
    except ClientError as exc:
        get_run_logger().warning("release label %s not checked: ListReleaseLabels refused (%s)", label, error_code(exc))
        return []
    if label not in known:
        listed = ", ".join(known[:4]) or "none"
        return [f"release label {label} is not known to EMR in {aws.region} (newest: {listed}); {FIX}"]
    return []


def check_application(client, application_id: str) -> list[str]:
    """A reused application: it exists, runs Spark on EMR 7, and can take a job (started, or starts by itself)."""
    try:
        application = client.get_application(applicationId=application_id)["application"]
    except ClientError as exc:
        return [
            f"application {application_id} cannot be read ({error_code(exc)}): check application_id in the "
            "EmrServerlessConfig block and the region"
        ]
    state, problems = application["state"], []
    if state in ("TERMINATED", "STOPPING"):
        problems.append(f"application {application_id} is {state}: clear application_id to create one per run")
    if application.get("type", "").upper() != "SPARK":
        problems.append(f"application {application_id} is a {application.get('type')} application, not Spark")
    if not application.get("releaseLabel", "").startswith(SUPPORTED_MAJOR):
        problems.append(f"application {application_id} runs {application.get('releaseLabel')}, not EMR 7.x")
    auto_start = (application.get("autoStartConfiguration") or {}).get("enabled", True)
    if state in ("CREATED", "STOPPED") and not auto_start:
        problems.append(
            f"application {application_id} is {state} without auto-start: start it "
            f"(`aws emr-serverless start-application --application-id {application_id}`)"
        )
    return problems


def check_capacity(config: EmrServerlessConfig) -> list[str]:
    """A created application's maximum capacity must hold the driver and every executor the job may ask for."""
    vcpus = config.driver_cores + config.max_executors * config.executor_cores
    if vcpus > config.max_vcpus:
        return [
            f"the driver and {config.max_executors} executors need {vcpus} vCPUs, more than max_vcpus "
            f"{config.max_vcpus}: raise max_vcpus or lower max_executors in the EmrServerlessConfig block"
        ]
    return []


# StartJobRun's executionTimeoutMinutes (API reference): 0 turned the timeout off, which BATCH job runs no longer
# accept from EMR 7.11; the longest a BATCH job run may take is 10080 minutes (7 days). Checked here because the API
# refuses it only at StartJobRun, after the application was created and started.
TIMEOUT_MINUTES_RANGE = (1, 10080)


def check_timeout(timeout_minutes: int) -> list[str]:
    """``--step-timeout-minutes`` becomes the job run's ``executionTimeoutMinutes``: within what AWS accepts."""
    low, high = TIMEOUT_MINUTES_RANGE
    if low <= timeout_minutes <= high:
        return []
    return [
        f"--step-timeout-minutes {timeout_minutes} is not a valid EMR Serverless executionTimeoutMinutes: it must be "
        f"{low} to {high} minutes (a batch job run needs a timeout, 7 days at most); the job run is cancelled then"
    ]


@task(name="preflight", cache_policy=NO_CACHE)
def preflight(
    job: JobOptions,
    aws: AwsClients,
    bucket: str,
    config: EmrServerlessConfig,
    *,
    staging_uri: str,
    log_uri: str,
    cluster_id: str | None = None,
    timeout_minutes: int = 180,
) -> dict:
    """Check everything the run needs before anything is created; raise ``PreflightError`` listing each gap.

    Args:
        job: the run.
        aws: the clients, from the AwsCredentials block.
        bucket: the staging bucket (S3Bucket block): the job files and, by default, the logs.
        config: the EmrServerlessConfig block.
        staging_uri: the s3:// prefix the job will be staged under (the role must read it).
        log_uri: the job run's log destination (the role must write there).
        cluster_id: ``--cluster-id``, which this engine does not take (a reused application is a block field).
        timeout_minutes: ``--step-timeout-minutes``, the job run's execution timeout.

    Returns:
        account, region, image count and bytes under the input prefix, and the execution role's ARN.
    """
    checked, problems = check_account_and_data(job, aws, bucket, get_run_logger())
    problems += check_reads(job, aws("s3"), get_run_logger()) + held_by_another_run(aws, job.output)
    if cluster_id:
        problems.append(
            "--cluster-id is for --engine emr; to reuse an EMR Serverless application set "
            "application_id in the EmrServerlessConfig block"
        )
    problems += check_timeout(timeout_minutes)
    problems += check_release(aws, config.release_label)
    if config.application_id:
        problems += check_application(aws("emr-serverless"), config.application_id)
    else:
        problems += check_capacity(config)
    checked["execution_role_arn"] = role_arn(config.execution_role_arn, checked["account"])
    problems += check_execution_role(aws, checked["execution_role_arn"], job_needs(job, staging_uri, log_uri))
    refuse(problems)
    return checked
