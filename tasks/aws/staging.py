"""Stage what the cluster needs under a per-run prefix of the bucket: the job, its package, the bootstrap, weights."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from fruitjob.packaging import zip_package
from tasks.aws.clients import AwsClients
from tasks.aws.s3_uris import s3_uri
from tasks.job_files import BOOTSTRAP_DIR, JOB_SCRIPT

BOOTSTRAP_SCRIPT = BOOTSTRAP_DIR / "install_packages.sh"
REQUIREMENTS = BOOTSTRAP_DIR / "requirements-emr.txt"
# Encrypted at rest whatever the bucket's default (the job's own output: emrfs-site in the cluster request).
UPLOAD_ARGS = {"ServerSideEncryption": "AES256"}


def run_prefix(bucket_folder: str, flow_run_id: str) -> str:
    """The key prefix of one run's staged files (and default logs live beside them).

    Example:
        >>> run_prefix("team", "abc")
        'team/fruitflow-runs/abc'
    """
    return "/".join(p.strip("/") for p in (bucket_folder, "fruitflow-runs", flow_run_id) if p and p.strip("/"))


@task(name="stage-job", cache_policy=NO_CACHE)
def stage_job(aws: AwsClients, bucket: str, prefix: str, weights: str) -> dict:
    """Upload the job script, its ``fruitjob`` zip, the bootstrap and its pinned requirements, and a local weights file.

    Uploads are idempotent (same keys, same content), so the task may be retried.

    Returns:
        ``script``, ``py_files``, ``bootstrap``, ``requirements`` s3:// URIs, and ``weights`` (the staged URI
        for a local file, else None).
    """
    logger = get_run_logger()
    s3 = aws("s3")

    def upload(local: Path, *key: str) -> str:
        full_key = "/".join([prefix, *key])
        s3.upload_file(str(local), bucket, full_key, ExtraArgs=UPLOAD_ARGS)
        return s3_uri(bucket, full_key)

    with tempfile.TemporaryDirectory(prefix="fruitflow-stage-") as tmp:
        package = Path(zip_package(tmp))
        staged = {
            "script": upload(JOB_SCRIPT, "job", JOB_SCRIPT.name),
            "py_files": upload(package, "job", package.name),
        }
    staged["bootstrap"] = upload(BOOTSTRAP_SCRIPT, "bootstrap", BOOTSTRAP_SCRIPT.name)
    staged["requirements"] = upload(REQUIREMENTS, "bootstrap", REQUIREMENTS.name)
    staged["weights"] = None
    if os.path.isfile(weights):
        staged["weights"] = upload(Path(weights), "weights", Path(weights).name)
    logger.info("staged the job under %s", s3_uri(bucket, prefix))
    return staged
