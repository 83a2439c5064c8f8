"""Stage what the cluster needs in the bucket: under a per-run prefix the job, its package and the weights; the job's
Python environment (tasks/aws/environment.py) under a prefix shared by every run, named by its content."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from fruitjob.packaging import zip_package
from fruitjob.shipped_model import MANIFEST_SUFFIX
from tasks.aws.checksums import upload_checked
from tasks.aws.clients import AwsClients
from tasks.aws.environment import UPLOAD_ARGS, file_sha256, upload_environment
from tasks.aws.s3_uris import s3_uri
from tasks.job_files import JOB_SCRIPT

ENVIRONMENTS = "fruitflow-environments"


def run_prefix(bucket_folder: str, flow_run_id: str) -> str:
    """The key prefix of one run's staged files (and default logs live beside them).

    Example:
        >>> run_prefix("team", "abc")
        'team/fruitflow-runs/abc'
    """
    return "/".join(p.strip("/") for p in (bucket_folder, "fruitflow-runs", flow_run_id) if p and p.strip("/"))


def environments_prefix(bucket_folder: str) -> str:
    """The key prefix the job's Python environments are staged under, shared by runs (each archive is named by the
    sha256 of its bytes, so a run never overwrites another's).

    Example:
        >>> environments_prefix("team")
        'team/fruitflow-environments'
    """
    return "/".join(p.strip("/") for p in (bucket_folder, ENVIRONMENTS) if p and p.strip("/"))


@task(name="stage-job", cache_policy=NO_CACHE)
def stage_job(
    aws: AwsClients,
    bucket: str,
    prefix: str,
    weights: str,
    environment: Path | None = None,
    environment_prefix: str | None = None,
    model: Path | None = None,
) -> dict:
    """Upload the job script, its ``fruitjob`` zip, a local weights file and the job's Python environment.

    Uploads are idempotent (same keys, same content), so the task may be retried. Each goes up with its SHA-256 and
    is compared with S3's checksum on HEAD (tasks/aws/checksums.py): nothing staged is trusted on its metadata.

    Args:
        environment: the archive :func:`tasks.aws.environment.build_environment` made, if the engine ships one.
        environment_prefix: where it goes (default: ``<prefix>/environment``); engines pass
            :func:`environments_prefix`, so that runs of the same pins share one upload.
        model: the converted model :func:`tasks.aws.model_export.model_for_cluster` made; its ``.json`` manifest
            goes beside it, under the run's ``weights/``.

    Returns:
        ``script``, ``py_files``, ``environment`` and ``model`` (None when not given) s3:// URIs, ``weights``
        (the staged URI for a local file, else None) and ``environment_sha256`` (hex, what the step verifies).
    """
    logger = get_run_logger()
    s3 = aws("s3")

    def upload(local: Path, *key: str) -> str:
        full_key = "/".join([prefix, *key])
        upload_checked(s3, local, bucket, full_key, UPLOAD_ARGS)  # S3's sha256 of what it stored, compared
        return s3_uri(bucket, full_key)

    with tempfile.TemporaryDirectory(prefix="fruitflow-stage-") as tmp:
        package = Path(zip_package(tmp))
        staged = {
            "script": upload(JOB_SCRIPT, "job", JOB_SCRIPT.name),
            "py_files": upload(package, "job", package.name),
        }
    staged["weights"] = None
    if os.path.isfile(weights):
        staged["weights"] = upload(Path(weights), "weights", Path(weights).name)
    staged["model"] = None
    if model is not None:
        upload(model.with_name(model.name + MANIFEST_SUFFIX), "weights", model.name + MANIFEST_SUFFIX)
        staged["model"] = upload(model, "weights", model.name)
    staged["environment"], staged["environment_sha256"] = None, None
    if environment is not None:
        shared = environment_prefix or f"{prefix}/environment"
        staged["environment"] = upload_environment(s3, bucket, shared, environment)
        staged["environment_sha256"] = file_sha256(environment)  # the step checks the archive against it
    logger.info("staged the job under %s", s3_uri(bucket, prefix))
    return staged
