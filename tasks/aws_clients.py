"""Every AWS client fruitflow makes, built from the ``AwsCredentials`` block (keys, profile, region, endpoint).

The block's ``aws_client_parameters`` carry the endpoint URL, which is how the tests point everything at moto.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from typing import Any
from urllib.parse import urlparse

from botocore.config import Config
from prefect import get_run_logger
from prefect.exceptions import MissingContextError
from prefect_aws import AwsCredentials
from pyarrow import fs as pafs

# Standard retry mode backs off on throttling (EMR's DescribeCluster and ListSteps are throttled under load).
_RETRIES = Config(retries={"max_attempts": 8, "mode": "standard"})
# For calls that are not idempotent (AddJobFlowSteps has no client token): a lost reply resent by botocore would run
# the step twice. One attempt; the caller retries only what it knows EMR refused (see tasks/emr_steps.py).
_ONE_ATTEMPT = Config(retries={"total_max_attempts": 1, "mode": "standard"})  # max_attempts counts retries
DEFAULT_REGION = "us-east-1"


def region_of(credentials: AwsCredentials) -> str:
    """The region clients use: the block's, else the session's (profile or environment), else us-east-1."""
    return credentials.region_name or credentials.get_boto3_session().region_name or DEFAULT_REGION


def endpoint_of(credentials: AwsCredentials) -> str | None:
    """The endpoint URL set in the block's client parameters (moto, LocalStack), or None for real AWS."""
    return credentials.aws_client_parameters.endpoint_url


def _retry_logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        return get_run_logger()
    except MissingContextError:  # a flow hook, or a plain script: no run to log to
        return logging.getLogger("fruitflow.aws")


def _note_retry_cause(request_dict=None, response=None, caught_exception=None, **_kwargs: Any) -> None:
    """``needs-retry`` handler: remember why this attempt failed, for the line logged if botocore retries it."""
    if request_dict is None:
        return
    cause = None
    if caught_exception is not None:
        cause = type(caught_exception).__name__
    elif response is not None:
        http_response, parsed = response
        code = (parsed or {}).get("Error", {}).get("Code")
        cause = code or (f"HTTP {http_response.status_code}" if http_response.status_code >= 400 else None)
    if cause:
        request_dict["context"]["fruitflow_retry_cause"] = cause


def _log_retry(request=None, event_name: str = "", **_kwargs: Any) -> None:
    """``before-send`` handler: every attempt after the first is a retry botocore decided on; say so, once each."""
    context = getattr(request, "context", None) or {}
    attempt = context.get("retries", {}).get("attempt", 1)
    if attempt > 1:
        operation = ".".join(event_name.split(".")[1:3])
        _retry_logger().warning(
            "AWS %s: retry %d after %s (standard retry mode, with backoff)",
            operation,
            attempt - 1,
            context.get("fruitflow_retry_cause", "a transient error"),
        )


def client(credentials: AwsCredentials, service: str, *, retries: bool = True) -> Any:
    """A boto3 client for ``service`` from the block, with standard retries unless the block sets a config.

    Retries (throttling, 5xx, connection errors) are logged to the run's log, with the error that caused them.
    ``retries=False`` makes every call a single attempt, whatever the block says: for calls that must not be resent.
    """
    params = credentials.aws_client_parameters.get_params_override()
    params.setdefault("config", _RETRIES)
    if not retries:
        params["config"] = params["config"].merge(_ONE_ATTEMPT)
    params["region_name"] = region_of(credentials)
    made = credentials.get_boto3_session().client(service, **params)
    made.meta.events.register("needs-retry", _note_retry_cause)
    made.meta.events.register("before-send", _log_retry)
    return made


def s3_filesystem(credentials: AwsCredentials) -> pafs.S3FileSystem:
    """pyarrow's S3 file system with the block's credentials; pyarrow does not go through boto3, so map them."""
    frozen = credentials.get_boto3_session().get_credentials()
    frozen = frozen.get_frozen_credentials() if frozen is not None else None
    options: dict[str, Any] = {"region": region_of(credentials)}
    if frozen is not None:
        options.update(access_key=frozen.access_key, secret_key=frozen.secret_key, session_token=frozen.token)
    endpoint = endpoint_of(credentials)
    if endpoint:
        parsed = urlparse(endpoint)
        options.update(endpoint_override=parsed.netloc or parsed.path, scheme=parsed.scheme or "https")
    return pafs.S3FileSystem(**options)


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


class S3UriError(ValueError):
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
