"""The fake EMR cluster playing a step as an EMR 7.x node runs it: on the cluster's stack, not in the test's session.

For tests marked ``cluster_stack``, :class:`tests.emr_fixtures.FakeCluster` hands each step to :class:`ClusterStack`,
which runs the step's own command line: ``bash -c <the wrapper of tasks/emr/steps.py>``, whose ``aws s3 cp`` fetches
the archive the flow staged (from moto: tests/fake_aws_cli.py) and unpacks it as the driver's PYTHONPATH; then
``spark-submit`` of Spark 3.5.6 on Python 3.9 with nothing else installed (tests/parity_env.py ``build_bare``), with
the staged script, ``fruitjob`` zip and weights, and the step's own ``spark.executorEnv.PYTHONPATH``.
A package missing from the archive, a pin whose wheel does not work on 3.9, or a broken wrapper fails the step here.

What differs from a node, and why: ``--master local[2,2]`` instead of YARN (a cluster's spark-defaults name the
master); no ``--archives`` (YARN's copy for the executors' containers; local executors share the driver's); and local
copies of the images and output instead of ``s3://`` (pip's pyspark has no S3 connector; the fixture rewrites the
local paths in the output to the S3 URIs before uploading it, as for in-process plays).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.parity_env import ParityEnv

JOB_SCRIPT_NAME = "extract_features.py"
# What a cluster's spark-defaults give spark-submit: here the master of a small local "cluster".
CLUSTER_DEFAULTS = ["--master", "local[2,2]", "--conf", "spark.ui.enabled=false", "--conf", "spark.driver.memory=2g"]
FAKE_AWS = Path(__file__).resolve().parent / "fake_aws_cli.py"


class StepProcessFailed(Exception):
    """The step's command exited non-zero: EMR's FAILED, with the process's stderr as the step's stderr.gz."""

    def __init__(self, returncode: int, stderr: str) -> None:
        super().__init__(f"the step exited {returncode}")
        self.returncode, self.stderr = returncode, stderr


@dataclass
class ClusterStack:
    """Python 3.9 + Spark 3.5.6 (``env``, pyspark only), moto's ``endpoint``, and a folder for the steps' files."""

    env: ParityEnv
    endpoint: str
    root: Path

    def _folder(self, kind: str, uri: str) -> Path:
        """One local folder per S3 prefix, the same for every step: an incremental run finds its earlier output."""
        return self.root / kind / hashlib.sha256(uri.encode()).hexdigest()[:12]

    def _aws_cli(self) -> Path:
        folder = self.root / "bin"
        folder.mkdir(parents=True, exist_ok=True)
        shim = folder / "aws"
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_AWS}" "$@"\n')
        shim.chmod(0o755)
        return folder

    def run(self, s3, step_id: str, args: list[str]) -> tuple[Path, dict[str, str], str]:
        """Run the step's command; returns its local output, the local -> S3 prefixes in it, and its stderr.

        Raises:
            StepProcessFailed: the command exited non-zero (the job's own error, as on EMR).
        """
        submit_at = args.index("spark-submit")
        wrapper, submit = args[:submit_at], args[submit_at:]
        script_at = next(i for i, arg in enumerate(submit) if arg.endswith(JOB_SCRIPT_NAME))
        job_args = submit[script_at + 1 :]
        images_uri, output_uri = (job_args[job_args.index(name) + 1] for name in ("--images", "--output"))
        images, output = self._folder("images", images_uri), self._folder("output", output_uri)
        _mirror(s3, images_uri, images)
        if "--incremental" not in job_args:
            shutil.rmtree(output, ignore_errors=True)
        step_dir = self.root / "steps" / step_id  # EMR's /mnt/var/lib/hadoop/steps/s-...: the wrapper reads its name
        step_dir.mkdir(parents=True)
        local = {images_uri: str(images), output_uri: str(output)}

        def fetched(value: str) -> str:  # staged files the step names: their bytes, as a node would read them
            if value in local:
                return local[value]
            uri, hash_, fragment = value.partition("#")
            if not uri.startswith("s3://"):
                return value
            return f"{download_staged(s3, uri, step_dir / 'staged')}{hash_}{fragment}"

        options = submit[1:]
        # The executors' copy of the archive: YARN unpacks it as ./environment in each container; in local mode the
        # Python workers run beside the driver, where the wrapper unpacked it (spark.executorEnv.PYTHONPATH finds it).
        at = options.index("--archives")
        del options[at : at + 2]
        command = [*wrapper, "spark-submit", *CLUSTER_DEFAULTS, *(fetched(arg) for arg in options)]
        env = self.env.environment(extra={"FAKE_AWS_ENDPOINT": self.endpoint})
        env["PATH"] = os.pathsep.join([str(self._aws_cli()), str(self.env.spark_home / "bin"), env["PATH"]])
        done = subprocess.run(command, cwd=step_dir, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise StepProcessFailed(done.returncode, done.stderr)  # EMR's stderr.gz; stdout.gz is not read
        return output, {str(images): images_uri.rstrip("/"), str(output): output_uri}, done.stderr


def download_staged(s3, uri: str, folder: Path) -> Path:
    """A staged file the job reads, and the objects beside it of the same name (a model's ``.json`` manifest),
    copied under ``folder`` by their keys; returns the file's copy. What a node reads from S3, for a job that
    cannot (pip's pyspark has no S3 connector)."""
    bucket, _, key = uri[len("s3://") :].partition("/")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
        for item in page.get("Contents", []):
            (folder / item["Key"]).parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, item["Key"], str(folder / item["Key"]))
    return folder / key


def delete_absent(s3, folder: Path, uri: str) -> None:
    """Delete the objects under ``uri`` that ``folder`` (the step's whole output) no longer has: the files Spark
    replaced or removed on S3 (``overwrite`` of pca/, a new part of features/), before the upload of the rest."""
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    prefix = prefix.rstrip("/") + "/"
    keep = {prefix + path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        stale = [{"Key": item["Key"]} for item in page.get("Contents", []) if item["Key"] not in keep]
        if stale:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": stale})


def _mirror(s3, uri: str, folder: Path) -> None:
    """Make ``folder`` hold the objects under ``uri``, each with its S3 modification time: an incremental run tells an
    unchanged image by it, and S3's LastModified does not move between steps (a fresh download's mtime would)."""
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    prefix = prefix.rstrip("/") + "/"
    listed = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        listed |= {folder / item["Key"][len(prefix) :]: item for item in page.get("Contents", [])}
    for path in [path for path in folder.rglob("*") if path.is_file() and path not in listed]:
        path.unlink()
    for path, item in listed.items():
        if not path.is_file() or path.stat().st_size != item["Size"]:
            path.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, item["Key"], str(path))
        stamp = item["LastModified"].timestamp()
        os.utime(path, (stamp, stamp))
