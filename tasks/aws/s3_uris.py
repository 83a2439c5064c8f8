"""s3:// URIs: split, joined and checked before they go into a request or a step's arguments."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlparse

from tasks.errors import FruitflowError


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``; also accepts s3a:// and s3n://.

    Example:
        >>> split_s3_uri("s3://fruit/in/Apple/")
        ('fruit', 'in/Apple/')
    """
    parsed = urlparse(uri)
    if parsed.scheme not in ("s3", "s3a", "s3n") or not parsed.netloc:
        raise ValueError(f"expected an s3://bucket/prefix URI, got {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


class S3UriError(FruitflowError, ValueError):
    """An s3:// URI given as a parameter that cannot be used as is; the message says which rule it breaks."""


# https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html (general purpose buckets)
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_RESERVED_BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def bucket_name_problem(bucket: str) -> str | None:
    """Why ``bucket`` is not a valid S3 bucket name, or None when it is."""
    if not _BUCKET_NAME.match(bucket):
        return "3-63 characters: lower-case letters, digits, dots and hyphens, starting and ending alphanumeric"
    if ".." in bucket or ".-" in bucket or "-." in bucket:
        return "no two adjacent periods, and no period next to a hyphen"
    try:
        ipaddress.IPv4Address(bucket)
        return "not formatted as an IP address"
    except ValueError:
        pass
    if bucket.startswith(_RESERVED_BUCKET_PREFIXES) or bucket.endswith(_RESERVED_BUCKET_SUFFIXES):
        return "a reserved prefix or suffix"
    return None


def check_s3_uri(uri: str, what: str = "URI") -> str:
    """Refuse an s3:// URI that is malformed or could reach somewhere else than it reads; returns it unchanged.

    Checked: the scheme is ``s3``; the bucket name follows S3's rules; no credentials, port, query or fragment;
    no ``.`` or ``..`` path segment, no backslash and no control character in the key.

    Example:
        >>> check_s3_uri("s3://fruit-data/images/Apple Red/")
        's3://fruit-data/images/Apple Red/'
    """
    if any(ord(char) < 32 or ord(char) == 127 for char in uri):
        raise S3UriError(f"{what} {uri!r} contains a control character")
    parsed = urlparse(uri)
    if parsed.scheme != "s3":
        raise S3UriError(f"{what} {uri!r} must be an s3://bucket/prefix URI")
    if parsed.username or parsed.password or "@" in parsed.netloc or ":" in parsed.netloc:
        raise S3UriError(f"{what} must not carry credentials or a port in its host part (s3://bucket/prefix)")
    problem = bucket_name_problem(parsed.netloc)
    if problem:
        raise S3UriError(f"{what} {uri!r}: bucket name {parsed.netloc!r} is invalid ({problem})")
    if parsed.query or parsed.fragment or "?" in uri or "#" in uri:
        raise S3UriError(f"{what} {uri!r} must not have a query or a fragment (? or #)")
    if "\\" in parsed.path or any(part in (".", "..") for part in parsed.path.split("/")):
        raise S3UriError(f"{what} {uri!r} must not contain '.' or '..' segments or backslashes")
    return uri


def s3_uri(bucket: str, *parts: str) -> str:
    """Join key parts with single slashes (S3 keys are not OS paths)."""
    key = "/".join(part.strip("/") for part in parts if part and part.strip("/"))
    return f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
