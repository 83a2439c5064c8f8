"""The job's Python packages as one archive for the cluster's Python and platform: built here, shipped with the step.

No node installs anything: :func:`build_environment` runs ``pip install --target`` for the cluster's Python (3.9)
and platform (manylinux, glibc up to Amazon Linux 2023's 2.34, x86_64 or aarch64), wheels only, with the job's pins
(:mod:`tasks.aws.job_pins`), and packs the folder as a tar.gz whose top level is what goes on ``PYTHONPATH``
(``numpy/``, ``pandas/``, ... and ``fruitflow-environment.json``, what was installed). It is built once per pin set and
platform and cached under ``~/.cache/fruitflow/environments/<sha256 of both>/``, its file named by the sha256 of its
bytes; :func:`upload_environment` (through ``tasks.aws.staging.stage_job``) uploads it once per content. Which one a
run ships: :func:`job_environment`. The EMR step (``tasks/emr/steps.py``) and the EMR Serverless job run both unpack
it as ``./environment`` (``--archives`` / ``spark.archives`` with ``#environment``).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tasks.aws.checksums import sha256_base64, stored_sha256, upload_checked
from tasks.aws.clients import run_logger
from tasks.aws.job_pins import ARCHITECTURES, job_requirements
from tasks.aws.s3_uris import s3_uri
from tasks.errors import FruitflowError
from tasks.job_files import CACHE

# Encrypted at rest whatever the bucket's default, as every staged file (tasks/aws/staging.py).
UPLOAD_ARGS = {"ServerSideEncryption": "AES256"}

# EMR 7.x and EMR Serverless 7.x run Amazon Linux 2023: glibc 2.34, and Python 3.9 for Spark.
CLUSTER_PYTHON = "3.9"
CLUSTER_GLIBC = (2, 34)
MANIFEST = "fruitflow-environment.json"
UNPACKED = "environment"  # the archive's fragment: the folder it is unpacked as, beside the driver and executors
_LAYOUT = "pip-target-v2"  # bump when the archive's layout changes: it is part of the cache key
_TAR_MTIME = 315532800  # 1980-01-01, as the job's own zip: the bytes depend on the contents only
_PIP_TIMEOUT_S = 1800
_OFFLINE_SIGNS = (
    "NewConnectionError",
    "Max retries exceeded",
    "Temporary failure in name resolution",
    "Could not fetch URL",
    "Network is unreachable",
    "ConnectTimeoutError",
    "ProxyError",
)


class EnvironmentBuildError(FruitflowError, RuntimeError):
    """pip could not build the archive; ``offline`` when the package index was out of reach."""

    def __init__(self, message: str, offline: bool = False) -> None:
        super().__init__(message)
        self.offline = offline


def platform_tags(arch: str, glibc: tuple[int, int] = CLUSTER_GLIBC) -> list[str]:
    """pip's ``--platform`` values a node with this glibc accepts, newest first (pip does not expand
    ``manylinux_2_34`` to the older tags itself, and Pillow or pyarrow only publish ``manylinux_2_28`` wheels).

    Example:
        >>> platform_tags("aarch64")[:2], platform_tags("aarch64")[-1]
        (['manylinux_2_34_aarch64', 'manylinux_2_33_aarch64'], 'manylinux2014_aarch64')
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"architecture {arch!r}: expected one of {', '.join(ARCHITECTURES)}")
    major, minor = glibc
    legacy = ["manylinux2014", "manylinux2010", "manylinux1"] if arch == "x86_64" else ["manylinux2014"]
    return [f"manylinux_{major}_{v}_{arch}" for v in range(minor, 16, -1)] + [f"{tag}_{arch}" for tag in legacy]


def pip_target_arguments(python_version: str, arch: str) -> list[str]:
    """What makes pip choose wheels for the cluster rather than for this machine (never a source build)."""
    abi = "cp" + python_version.replace(".", "")
    platforms = [f"--platform={tag}" for tag in platform_tags(arch)]
    return [
        f"--python-version={python_version}",
        "--implementation=cp",
        f"--abi={abi}",
        "--only-binary=:all:",
        *platforms,
    ]


def environment_key(requirements: Sequence[str], python_version: str, arch: str) -> str:
    """The sha256 of what the archive is made from: the pins, the Python, the platform tags and the layout."""
    made_from = {
        "requirements": sorted(requirements),
        "python": python_version,
        "arch": arch,
        "platforms": platform_tags(arch),
        "layout": _LAYOUT,
    }
    return hashlib.sha256(json.dumps(made_from, sort_keys=True).encode()).hexdigest()


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def build_environment(
    python_version: str = CLUSTER_PYTHON,
    arch: str = "x86_64",
    with_tensorflow: bool = False,
    extra: Sequence[str] = (),
) -> Path:
    """The archive of the job's packages for this Python and platform: from the cache, else built (needs the index).

    Args:
        python_version: the cluster's Python (EMR 7.x: 3.9).
        arch: ``x86_64`` or ``aarch64`` (Graviton).
        with_tensorflow: add TensorFlow and Keras (``--featurizer keras``): about 4x the size.
        extra: more requirements to build in (``EmrClusterConfig.bootstrap_packages``), e.g. ``["scipy==1.13.1"]``.

    Returns:
        the local path of ``fruitflow-env-py39-<arch>-<sha256 of its bytes>.tar.gz``.

    Raises:
        EnvironmentBuildError: pip failed (a pin without a wheel for that platform, or no package index).
    """
    requirements = job_requirements(python_version, arch, with_tensorflow=with_tensorflow, extra=extra)
    folder = CACHE / "environments" / environment_key(requirements, python_version, arch)[:32]
    stem = f"fruitflow-env-py{python_version.replace('.', '')}-{arch}-"
    for cached in sorted(folder.glob(f"{stem}*.tar.gz")):
        if file_sha256(cached)[:16] == cached.name[len(stem) : -len(".tar.gz")]:
            return cached
    run_logger().info(
        "building the cluster's Python environment (Python %s, %s%s): once per pin set, a minute or more",
        python_version,
        arch,
        ", with TensorFlow" if with_tensorflow else "",
    )
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".building-", dir=folder.parent))
    try:
        target = work / UNPACKED
        report = _pip_install(target, requirements, python_version, arch)
        shutil.rmtree(target / "bin", ignore_errors=True)  # console scripts, with this machine's interpreter in them
        installed = {item["metadata"]["name"]: item["metadata"]["version"] for item in report["install"]}
        manifest = {
            "python": python_version,
            "arch": arch,
            "platforms": platform_tags(arch),
            "requirements": requirements,
            "installed": dict(sorted(installed.items())),
        }
        (target / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        packed = work / "environment.tar.gz"
        _pack(target, packed)
        folder.mkdir(exist_ok=True)
        final = folder / f"{stem}{file_sha256(packed)[:16]}.tar.gz"
        os.replace(packed, final)  # atomic: a reader sees no archive or the whole one
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


def resolve_environment(
    requirements: Sequence[str], python_version: str = CLUSTER_PYTHON, arch: str = "x86_64"
) -> dict:
    """What pip would install for these requirements on that Python and platform (a dry run: the index only, nothing
    installed): distribution name -> version. Raises :class:`EnvironmentBuildError` when a pin has no wheel there."""
    with tempfile.TemporaryDirectory(prefix="fruitflow-resolve-") as tmp:
        report = _pip(["--dry-run", "--ignore-installed"], Path(tmp), list(requirements), python_version, arch)
    return {item["metadata"]["name"]: item["metadata"]["version"] for item in report["install"]}


def _pip_install(target: Path, requirements: list[str], python_version: str, arch: str) -> dict:
    return _pip(["--no-compile", "--target", str(target)], target.parent, requirements, python_version, arch)


def _pip(how: list[str], work: Path, requirements: list[str], python_version: str, arch: str) -> dict:
    report = work / "pip-report.json"
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-warn-script-location",
        *how,
        "--report",
        str(report),
        *pip_target_arguments(python_version, arch),
        *requirements,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S)
    if done.returncode != 0:
        said = done.stderr + done.stdout
        offline = any(sign in said for sign in _OFFLINE_SIGNS)
        tail = "\n".join(line for line in said.splitlines() if "is ignored" not in line)[-2000:]
        why = "the package index is out of reach from this machine" if offline else "pip refused the pin set"
        raise EnvironmentBuildError(
            f"the cluster's Python environment (Python {python_version}, {arch}) could not be built: {why}. "
            f"Every job pin in pyproject.toml needs a wheel for it (tests/test_pins.py checks them).\n{tail}",
            offline=offline,
        )
    return json.loads(report.read_text())


def _pack(folder: Path, archive: Path) -> None:
    """A tar.gz of ``folder``'s contents whose bytes depend on them only (sorted, fixed times, owners and modes)."""
    with open(archive, "wb") as raw, gzip.GzipFile("", "wb", 6, raw, mtime=0) as zipped:
        with tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar:
            # The manifest first, so that a reader finds it without decompressing the rest.
            paths = sorted(folder.rglob("*"), key=lambda p: (p.name != MANIFEST, p.relative_to(folder).as_posix()))
            for path in paths:
                info = tar.gettarinfo(str(path), arcname=path.relative_to(folder).as_posix())
                info.mtime, info.uid, info.gid, info.uname, info.gname = _TAR_MTIME, 0, 0, "", ""
                executable = info.isdir() or info.mode & 0o100
                info.mode = 0o755 if executable else 0o644
                if info.isfile():
                    with open(path, "rb") as handle:
                        tar.addfile(info, handle)
                else:
                    tar.addfile(info)


def needs_tensorflow(featurizer: str, model_shipped: bool) -> bool:
    """Whether the archive needs TensorFlow and Keras: ``keras`` runs them in every worker; the TFLite featurizers
    only on the driver, to convert the model, which a model the flow converted and shipped spares
    (fruitjob/shipped_model.py).

    Example:
        >>> needs_tensorflow("keras", True), needs_tensorflow("tflite", True), needs_tensorflow("tflite", False)
        (True, False, True)
    """
    return featurizer == "keras" or not model_shipped


def job_environment(
    featurizer: str, arch: str = "x86_64", extra: Sequence[str] = (), model_shipped: bool = False
) -> Path:
    """The archive a run of this featurizer ships to a cluster of ``arch`` (what every AWS engine calls).

    ``model_shipped``: the run's TFLite model was converted by the flow and travels with the job, so the driver needs
    no TensorFlow (:func:`tasks.aws.model_export.model_for_cluster`); otherwise the driver converts it itself.
    """
    return build_environment(CLUSTER_PYTHON, arch, needs_tensorflow(featurizer, model_shipped), extra)


def upload_environment(s3, bucket: str, prefix: str, archive: Path) -> str:
    """Upload the archive under ``prefix`` unless S3's own SHA-256 of the object there is the archive's.

    Named by its content, one object serves every run of the same pins; uploading again is idempotent. Its metadata
    is never trusted: an object of the same name and size whose bytes differ (replaced by another writer, whatever
    sha256 its metadata claims) is staged again, and the upload is compared on HEAD (tasks/aws/checksums.py). The step
    checks the sha256 again before it unpacks the archive (tasks/emr/steps.py).

    Returns:
        the archive's s3:// URI, for ``spark.archives`` / ``--archives`` (``<uri>#environment``).
    """
    logger = run_logger()
    key = f"{prefix.strip('/')}/{archive.name}"
    uri, size = s3_uri(bucket, key), archive.stat().st_size
    stored, stored_size = stored_sha256(s3, bucket, key)
    if stored is not None and stored == sha256_base64(archive) and stored_size == size:
        logger.info("the cluster's Python environment is already staged (S3's sha256 matches): %s", uri)
        return uri
    if stored_size is not None and stored is None:  # staged by an older fruitflow, or by another writer
        logger.info("the staged environment %s has no S3 SHA-256 to check: staging it again", uri)
    elif stored_size is not None:
        logger.warning("the staged environment %s is not this archive (S3's sha256 %s): staging it again", uri, stored)
    logger.info("staging the cluster's Python environment (%.0f MB): %s", size / 1e6, uri)
    upload_checked(s3, archive, bucket, key, {**UPLOAD_ARGS, "Metadata": {"sha256": file_sha256(archive)}})
    return uri
