"""S3's own SHA-256 of staged files: sent with each upload, read back on HEAD, compared with the local bytes.

An object's user metadata is whatever its writer said; S3's checksum is computed by S3 from the bytes it stored
(``ChecksumAlgorithm="SHA256"`` on the PUT, and S3 refuses a body that does not match it). A staged file is trusted
only when that checksum equals the sha256 of the file we meant to ship.

Every staged file goes up in one PUT: a multipart upload's SHA-256 is a checksum of the parts' checksums, which a
reader cannot compare with the file's own sha256 (S3 allows 5 GB in one PUT; the largest archive is a few hundred MB).
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from tasks.errors import FruitflowError

ONE_PUT = TransferConfig(multipart_threshold=5 * 1024**3)
CHECKSUM_ARGS = {"ChecksumAlgorithm": "SHA256"}


class StagedFileMismatch(FruitflowError, RuntimeError):
    """A staged object's S3 checksum is not the sha256 of the file that was uploaded to it."""


def sha256_base64(path: Path) -> str:
    """The sha256 of a file as S3 writes ``ChecksumSHA256`` (base64 of the digest)."""
    with open(path, "rb") as handle:
        return base64.b64encode(hashlib.file_digest(handle, "sha256").digest()).decode()


def stored_sha256(s3, bucket: str, key: str) -> tuple[str | None, int | None]:
    """(S3's ChecksumSHA256, size) of an object; (None, None) when there is none; a checksum of None when S3 holds
    no SHA-256 for it (written without one, or in parts)."""
    try:
        head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None, None
        raise
    checksum = head.get("ChecksumSHA256")
    if checksum and "-" in checksum:  # a checksum of parts' checksums: not comparable with a file's sha256
        checksum = None
    return checksum, head.get("ContentLength")


def upload_checked(s3, local: Path, bucket: str, key: str, extra_args: dict) -> str:
    """Upload ``local`` in one PUT with its SHA-256, then compare what S3 stored with it; returns that checksum.

    Raises:
        StagedFileMismatch: S3's checksum of the object is not the file's (another writer replaced it meanwhile).
    """
    expected = sha256_base64(local)
    s3.upload_file(str(local), bucket, key, ExtraArgs={**extra_args, **CHECKSUM_ARGS}, Config=ONE_PUT)
    stored, _size = stored_sha256(s3, bucket, key)
    if stored != expected:
        raise StagedFileMismatch(
            f"s3://{bucket}/{key}: S3's sha256 of the staged object is {stored or 'missing'}, the file uploaded has "
            f"{expected}; another writer replaced it while staging: run again, and check who writes under that prefix"
        )
    return expected
