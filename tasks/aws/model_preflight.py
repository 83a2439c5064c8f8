"""Preflight of what an AWS run reads besides the images: ``--weights s3://...`` and ``--pca-model`` exist, can be
read, and fit this run (the PCA model's recorded identity names the same weights sha256, alpha and featurizer).

Without it such a run fails only on the cluster, after it was created and billed. The weights' sha256 is known here
when S3 stores one for the object (uploaded with ``--checksum-algorithm SHA256``: S3 computes it) or the file is on
this machine; otherwise the job compares it, as it compares everything else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from typing import Any

from botocore.exceptions import ClientError

from fruitjob import layout
from fruitjob.identity import IDENTITY_FILE, SpaceMismatch, check_same_space
from fruitjob.options import NAMED_WEIGHTS, JobOptions
from tasks.aws.preflight import error_code
from tasks.aws.s3_uris import split_s3_uri

_MISSING = ("404", "NoSuchKey", "NotFound")


def _object_problem(s3, uri: str, flag: str) -> str | None:
    """Why the object ``uri`` cannot be read (None when it can)."""
    bucket, key = split_s3_uri(uri)
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if error_code(exc) in _MISSING:
            upload = f"aws s3 cp <file> {uri} --checksum-algorithm SHA256"
            return f"{flag} {uri} does not exist: upload it (`{upload}`) or fix {flag}"
        return f"{flag} {uri} cannot be read ({error_code(exc) or exc}): check that these credentials may read it"
    return None


def known_weights_sha256(s3, weights: str) -> str | None:
    """The sha256 of the weights file, where preflight can know it without downloading it; else None."""
    if weights.startswith("s3://"):
        bucket, key = split_s3_uri(weights)
        head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        checksum = head.get("ChecksumSHA256") or ""
        if not checksum or "-" in checksum or head.get("ChecksumType") == "COMPOSITE":  # of the parts, not the file
            return None
        try:
            return base64.b64decode(checksum).hex()
        except (binascii.Error, ValueError):
            return None
    if weights not in NAMED_WEIGHTS and os.path.isfile(weights):
        digest = hashlib.sha256()
        with open(weights, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    return None


def _keys_under(s3, uri: str) -> bool:
    bucket, prefix = split_s3_uri(uri.rstrip("/") + "/")
    return s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1).get("KeyCount", 0) > 0


def _json(s3, uri: str) -> dict[str, Any] | None:
    bucket, key = split_s3_uri(uri)
    try:
        data = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError as exc:
        if error_code(exc) in _MISSING:
            return None
        raise
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def recorded_identity(s3, pca_model: str) -> tuple[str | None, dict[str, Any] | None]:
    """(the model folder ``--pca-model`` names, or None; the feature space it records, or None).

    ``--pca-model`` is a run's output folder (its ``pca_model/``) or a model folder itself (``metadata/`` in it), as the
    job reads it; the identity is the model's ``identity.json``, else the output's ``space.json`` or ``metrics.json``.
    """
    given = pca_model.rstrip("/")
    folder = layout.child(given, layout.PCA_MODEL)
    if not _keys_under(s3, layout.child(folder, "metadata")):
        folder = given if _keys_under(s3, layout.child(given, "metadata")) else None
    if folder is None:
        return None, None
    identity = _json(s3, layout.child(folder, IDENTITY_FILE))
    if identity is None:
        identity = (_json(s3, layout.child(given, layout.SPACE)) or {}).get("identity")
    if identity is None:
        identity = _json(s3, layout.child(given, layout.METRICS))
    return folder, identity


def _space_problem(job: JobOptions, folder: str, recorded: dict[str, Any], weights_sha256: str | None) -> str | None:
    """Why the model's space is not this run's, by what preflight knows of this run's identity."""
    current: dict[str, Any] = {"alpha": float(job.alpha), "featurizer": job.featurizer}
    if weights_sha256:
        current["weights_sha256"] = weights_sha256
    other = {key: recorded.get(key) for key in current}
    if isinstance(other["alpha"], (int, float)):
        other["alpha"] = float(other["alpha"])
    try:
        check_same_space(current, other, f"PCA model {folder}")
    except SpaceMismatch as exc:
        return str(exc)
    named = recorded.get("weights")
    if job.weights in NAMED_WEIGHTS and named in NAMED_WEIGHTS and named != job.weights:
        return f"--pca-model {folder} was fitted on features of --weights {named}, this run uses {job.weights}"
    return None


def check_reads(job: JobOptions, s3, logger) -> list[str]:
    """Problems with ``--weights`` (on S3) and ``--pca-model``: missing, unreadable, or from another feature space."""
    problems: list[str] = []
    weights_sha256 = None
    if job.weights.startswith("s3://"):
        missing = _object_problem(s3, job.weights, "--weights")
        problems += [missing] if missing else []
        weights_sha256 = None if missing else known_weights_sha256(s3, job.weights)
    else:
        weights_sha256 = known_weights_sha256(s3, job.weights)
    if not job.pca_model:
        return problems
    folder, recorded = recorded_identity(s3, job.pca_model)
    if folder is None:
        problems.append(
            f"--pca-model {job.pca_model} holds no PCA model (neither pca_model/ nor metadata/ under it): "
            "pass a finished run's output folder, or its pca_model/ folder"
        )
    elif recorded is None:
        logger.warning("--pca-model %s records no feature space; the job checks it against this run's", folder)
    else:
        problems += [p for p in [_space_problem(job, folder, recorded, weights_sha256)] if p]
    return problems
