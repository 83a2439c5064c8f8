"""The tail of a remote run's log in S3: what a failed step or job run is reported with."""

from __future__ import annotations

import gzip

from botocore.exceptions import ClientError, WaiterError

from tasks.aws.clients import AwsClients
from tasks.aws.s3_uris import split_s3_uri
from tasks.aws.waiting import wait

LOG_TAIL_LINES = 40


def read_log_tail(aws: AwsClients, log_uri: str, poll_seconds: float, wait_minutes: float) -> str:
    """The last lines of a (gzipped) log; EMR uploads logs every few minutes, so wait for it (S3's own waiter)."""
    s3 = aws("s3")
    bucket, key = split_s3_uri(log_uri)
    try:
        wait(
            s3.get_waiter("object_exists"),
            what=f"log {log_uri}",
            state=lambda response: "not uploaded yet",
            delay=poll_seconds,
            timeout_minutes=wait_minutes,
            Bucket=bucket,
            Key=key,
        )
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except (WaiterError, ClientError) as exc:
        return f"(no log at {log_uri}: {type(exc).__name__})"
    text = gzip.decompress(body).decode("utf-8", "replace") if body[:2] == b"\x1f\x8b" else body.decode()
    return "\n".join(text.rstrip().splitlines()[-LOG_TAIL_LINES:])
