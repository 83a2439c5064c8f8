"""An S3 output's lease (``_fruitflow.lock``), taken by the flow with conditional writes before anything is created.

Hadoop's S3 clients cannot write conditionally, so the job cannot take a lease atomically on S3; the flow does, with
boto3: ``PutObject`` with ``If-None-Match: *`` creates it, with ``If-Match: <ETag>`` takes over a stale one or renews
ours, and ``DeleteObject`` with ``If-Match`` releases it only while it is still ours. S3 answers 412 (or 409 for two
writes at once) when another writer got there first. The job, running under this flow run (its id in
``--flow-run-id``), accepts the lease (``fruitjob/lock.py``); the flow renews it while the job runs and
releases it on every way out. moto 5.2.5 implements all three conditions (checked: 412 ``PreconditionFailed``).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from prefect import runtime

from fruitjob import layout
from fruitjob.lock import FLOW_HOLDER, RENEW_SECONDS, is_held, parse_holder, refusal
from fruitjob.options import JobOptions
from tasks.aws.clients import run_logger
from tasks.aws.environment import UPLOAD_ARGS  # SSE-S3 on every object we write
from tasks.aws.preflight import PreflightError, error_code
from tasks.aws.s3_uris import split_s3_uri

# Another writer changed (or created, or deleted) the lock between our read and our write.
_LOST_RACE = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409", "NoSuchKey", "404"}

# An endpoint without conditional deletes (If-Match on DeleteObject came to general purpose buckets after PutObject's).
_NO_CONDITIONAL_DELETE = {"NotImplemented", "InvalidArgument"}


class OutputLeaseError(PreflightError):
    """The output is being written by another run (or its lock kept changing): nothing was created."""


@dataclass(frozen=True)
class LockObject:
    """The lock as read from S3: its holder (None: unreadable), the object's age in seconds and its ETag."""

    holder: dict[str, Any] | None
    age: float
    etag: str


def lock_uri(output: str) -> str:
    return layout.child(output, layout.LOCK)


def read_lock(s3, output: str) -> LockObject | None:
    """The output's lock, or None when it has none."""
    bucket, key = split_s3_uri(lock_uri(output))
    try:
        found = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if error_code(exc) in ("NoSuchKey", "404"):
            return None
        raise
    age = time.time() - found["LastModified"].timestamp()
    return LockObject(parse_holder(found["Body"].read()), age, found["ETag"])


def lease_problem(s3, output: str, flow_run_id: str | None) -> str | None:
    """Why this run may not write ``output``: a fresh lease of another run (None when it may)."""
    found = read_lock(s3, output)
    if found is None or (flow_run_id and (found.holder or {}).get("flow_run_id") == flow_run_id):
        return None
    return refusal(lock_uri(output), found.holder, found.age) if is_held(found.holder, file_age=found.age) else None


def held_by_another_run(aws: Any, output: str) -> list[str]:
    """Preflight: the output holds no fresh lease of a run other than this flow run (a one-item list if it does)."""
    problem = lease_problem(aws("s3"), output, str(runtime.flow_run.id or "") or None)
    return [problem] if problem else []


class S3OutputLease:
    """The lease of one flow run on one S3 output; a daemon thread renews it until :meth:`release`."""

    def __init__(self, s3, output: str, flow_run_id: str, renew_seconds: float = RENEW_SECONDS) -> None:
        self._s3 = s3
        self.uri = lock_uri(output)
        self._bucket, self._key = split_s3_uri(self.uri)
        self.holder: dict[str, Any] = {
            "flow_run_id": flow_run_id,
            "taken_by": FLOW_HOLDER,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "token": uuid.uuid4().hex,
            "acquired_at": time.time(),
        }
        self._etag: str | None = None
        self._renew_seconds = renew_seconds
        self._writing = threading.Lock()  # renewal and release never overlap
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_until_released, name="fruitflow-s3-lease", daemon=True)

    def _put(self, **condition: str) -> str:
        self.holder["renewed_at"] = time.time()
        body = json.dumps(self.holder).encode()
        answer = self._s3.put_object(Bucket=self._bucket, Key=self._key, Body=body, **UPLOAD_ARGS, **condition)
        return answer["ETag"]

    def acquire(self) -> S3OutputLease:
        """Take the lease, or raise :class:`OutputLeaseError` naming the run that holds it."""
        for _ in range(10):  # each pass ends in a decision unless another writer changed the lock meanwhile
            try:
                self._etag = self._put(IfNoneMatch="*")
                break
            except ClientError as exc:
                if error_code(exc) not in _LOST_RACE:
                    raise
            found = read_lock(self._s3, self.uri.rsplit("/", 1)[0])
            if found is None:
                continue
            holder = found.holder or {}
            if holder.get("token") == self.holder["token"]:  # our create went through; botocore resent it
                self._etag = found.etag
                break
            if holder.get("flow_run_id") != self.holder["flow_run_id"] and is_held(found.holder, file_age=found.age):
                raise OutputLeaseError(refusal(self.uri, found.holder, found.age))
            try:
                self._etag = self._put(IfMatch=found.etag)
            except ClientError as exc:
                if error_code(exc) not in _LOST_RACE:
                    raise
                continue
            run_logger().warning("took over the stale lease of flow run %s (%s)", holder.get("flow_run_id"), self.uri)
            break
        else:
            raise OutputLeaseError(f"{self.uri} kept changing while this run tried to take it; try again")
        self._thread.start()
        return self

    def renew(self) -> bool:
        """Write a fresh ``renewed_at`` if the lease is still ours (S3 checks the ETag); False when it is not."""
        with self._writing:
            if self._stop.is_set():
                return True
            try:
                self._etag = self._put(IfMatch=self._etag)
            except ClientError as exc:
                if error_code(exc) not in _LOST_RACE:
                    raise
                return False
            return True

    def _renew_until_released(self) -> None:
        while not self._stop.wait(self._renew_seconds):
            try:
                if not self.renew() and not self._stop.is_set():
                    run_logger().error(
                        "the lease of %s was taken by another run; this run no longer holds it", self.uri
                    )
                    return
            except Exception as exc:  # noqa: BLE001 - the next renewal tries again; the lease outlives one miss
                run_logger().warning("could not renew the lease of %s: %s", self.uri, exc)

    def release(self) -> None:
        """Delete the lock if it is still ours; one another run has taken over is left alone."""
        self._stop.set()
        with self._writing:
            try:
                self._s3.delete_object(Bucket=self._bucket, Key=self._key, IfMatch=self._etag)
            except ClientError as exc:
                if error_code(exc) in _NO_CONDITIONAL_DELETE:
                    self._delete_if_ours()
                elif error_code(exc) not in _LOST_RACE:
                    run_logger().warning("could not release %s (%s); it expires by itself", self.uri, error_code(exc))
            except Exception as exc:  # noqa: BLE001 - a lease left behind expires by itself; the run's outcome wins
                run_logger().warning("could not release %s: %s", self.uri, exc)

    def _delete_if_ours(self) -> None:
        """Where S3 refuses a conditional delete: read, then delete if ours (a takeover in between is overwritten)."""
        found = read_lock(self._s3, self.uri.rsplit("/", 1)[0])
        if found is not None and (found.holder or {}).get("token") == self.holder["token"]:
            self._s3.delete_object(Bucket=self._bucket, Key=self._key)


@contextmanager
def held_output(engine: Any, job: JobOptions) -> Iterator[S3OutputLease | None]:
    """This flow run's lease on an ``s3://`` output around the engine's run, released on every way out.

    Local outputs yield None: the job takes their lease itself, atomically, on the machine it runs on.
    """
    if not job.output.startswith("s3://"):
        yield None
        return
    lease = S3OutputLease(engine.aws("s3"), job.output, str(runtime.flow_run.id)).acquire()
    try:
        yield lease
    finally:
        lease.release()
