"""Every AWS client fruitflow makes, built from the ``AwsCredentials`` block (keys, profile, region, endpoint).

The block's ``aws_client_parameters`` carry the endpoint URL, which is how the tests point everything at moto.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from botocore.config import Config
from prefect_aws import AwsCredentials
from pyarrow import fs as pafs

# Standard retry mode backs off on throttling (EMR's DescribeCluster and ListSteps are throttled under load).
_RETRIES = Config(retries={"max_attempts": 8, "mode": "standard"})
DEFAULT_REGION = "us-east-1"


def region_of(credentials: AwsCredentials) -> str:
    """The region clients use: the block's, else the session's (profile or environment), else us-east-1."""
    return credentials.region_name or credentials.get_boto3_session().region_name or DEFAULT_REGION


def endpoint_of(credentials: AwsCredentials) -> str | None:
    """The endpoint URL set in the block's client parameters (moto, LocalStack), or None for real AWS."""
    return credentials.aws_client_parameters.endpoint_url


def client(credentials: AwsCredentials, service: str) -> Any:
    """A boto3 client for ``service`` from the block, with standard retries unless the block sets a config."""
    params = credentials.aws_client_parameters.get_params_override()
    params.setdefault("config", _RETRIES)
    params["region_name"] = region_of(credentials)
    return credentials.get_boto3_session().client(service, **params)


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


def s3_uri(bucket: str, *parts: str) -> str:
    """Join key parts with single slashes (S3 keys are not OS paths)."""
    key = "/".join(part.strip("/") for part in parts if part and part.strip("/"))
    return f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
