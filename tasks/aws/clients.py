"""Every AWS client fruitflow makes, built from the ``AwsCredentials`` block (keys, profile, region, endpoint).

Standard retry mode backs off on throttling (EMR's DescribeCluster and ListSteps are throttled under load); the
setting lives on :class:`AwsClients`, which tasks receive (tests hand them one pointed at moto).

The block's ``aws_client_parameters`` carry the endpoint URL, which is how the tests point everything at moto.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from prefect import get_run_logger
from prefect.exceptions import MissingContextError
from prefect_aws import AwsCredentials
from pyarrow import fs as pafs

from tasks.errors import load_block

# For calls that are not idempotent (AddJobFlowSteps has no client token): a lost reply resent by botocore would run
# the step twice. One attempt; the caller retries only what it knows EMR refused (see tasks/emr/steps.py).
_ONE_ATTEMPT = Config(retries={"total_max_attempts": 1, "mode": "standard"})  # max_attempts counts retries
DEFAULT_REGION = "us-east-1"


def region_of(credentials: AwsCredentials) -> str:
    """The region clients use: the block's, else the session's (profile or environment), else us-east-1."""
    return credentials.region_name or credentials.get_boto3_session().region_name or DEFAULT_REGION


def endpoint_of(credentials: AwsCredentials) -> str | None:
    """The endpoint URL set in the block's client parameters (moto, LocalStack), or None for real AWS."""
    return credentials.aws_client_parameters.endpoint_url


def run_logger() -> logging.Logger | logging.LoggerAdapter:
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
        run_logger().warning(
            "AWS %s: retry %d after %s (standard retry mode, with backoff)",
            operation,
            attempt - 1,
            context.get("fruitflow_retry_cause", "a transient error"),
        )


STANDARD_RETRIES = Config(retries={"max_attempts": 8, "mode": "standard"})


class AwsClients:
    """Every AWS client of a run, made in one place from the ``AwsCredentials`` block; tasks take this object.

    ``retries`` is the botocore retry configuration (standard mode with backoff, unless the block sets a config);
    ``customize`` is called with each client made (tests register botocore event handlers with it: answers moto
    cannot give, recorded requests) so that no module needs patching. Clients are cached per service.

    Example:
        >>> aws = AwsClients(AwsCredentials(region_name="eu-west-3"))
        >>> aws.region
        'eu-west-3'
    """

    def __init__(
        self,
        credentials: AwsCredentials,
        *,
        retries: Config = STANDARD_RETRIES,
        customize: Callable[[Any], None] | None = None,
    ) -> None:
        self.credentials = credentials
        self.retries = retries
        self.customize = customize
        self._made: dict[tuple[str, bool], Any] = {}
        # One boto3 session for all the clients: they share what it has read (endpoints, each service's model). A
        # session per client read them again: ~0.1 s of JSON parsing per client, 7 clients a run.
        self._session: boto3.session.Session | None = None
        self._lock = threading.Lock()  # a boto3 session is not thread-safe; its clients are

    @classmethod
    def from_block(cls, name: str) -> AwsClients:
        return cls(load_block(AwsCredentials, name, "--aws-credentials-block"))

    @property
    def region(self) -> str:
        return region_of(self.credentials)

    def __call__(self, service: str) -> Any:
        """A client for ``service`` with retries; retries are logged to the run's log with their cause."""
        return self._client(service, once=False)

    def once(self, service: str) -> Any:
        """A client whose calls are sent once, whatever the block says: for calls that must not be resent."""
        return self._client(service, once=True)

    def _client(self, service: str, *, once: bool) -> Any:
        with self._lock:
            if (service, once) not in self._made:
                self._made[(service, once)] = self._make(service, once)
            return self._made[(service, once)]

    def _make(self, service: str, once: bool) -> Any:
        params = self.credentials.aws_client_parameters.get_params_override()
        params.setdefault("config", self.retries)
        if once:
            params["config"] = params["config"].merge(_ONE_ATTEMPT)
        params["region_name"] = self.region
        if self._session is None:
            self._session = self.credentials.get_boto3_session()
        made = self._session.client(service, **params)
        made.meta.events.register("needs-retry", _note_retry_cause)
        made.meta.events.register("before-send", _log_retry)
        if self.customize is not None:
            self.customize(made)
        return made

    def s3_filesystem(self) -> pafs.S3FileSystem:
        return s3_filesystem(self.credentials)


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
