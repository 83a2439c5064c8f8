"""One writer per output: a lease in ``_fruitflow.lock``, renewed while the job runs, with the holder's names.

A second run into the same output is refused while the lease is fresh. A lease that was not renewed for
:data:`LEASE_SECONDS` (its job died), or whose process is gone from this host, is taken over with a warning,
so a crashed run never blocks the output for good. (On S3 there is no atomic create-if-absent through Hadoop:
the holder re-reads its lease after writing it, and the flow's deployments carry a concurrency limit too.)
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from typing import Dict, Optional

from pyspark.sql import SparkSession

from fruitjob import layout, storage
from fruitjob.errors import JobError

log = logging.getLogger("fruitflow.lock")
LEASE_SECONDS = 600.0
RENEW_SECONDS = 60.0


def _alive_here(holder: Dict[str, object]) -> bool:
    """False when the holder ran on this host and its process is gone; True otherwise (or when unknown)."""
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(holder.get("pid") or 0), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


def _read(spark: SparkSession, uri: str) -> Optional[Dict[str, object]]:
    if not storage.exists(spark, uri):
        return None
    try:
        return json.loads(storage.read_bytes(spark, uri).decode())
    except (ValueError, UnicodeDecodeError):
        return {}  # unreadable: treated as stale


def is_held(holder: Optional[Dict[str, object]], now: Optional[float] = None) -> bool:
    """Whether ``holder`` (a lock file's content) still holds the output."""
    if not holder:
        return False
    age = (now or time.time()) - float(holder.get("renewed_at") or 0)
    return age < LEASE_SECONDS and _alive_here(holder)


class Lease:
    """The output's lock, held by this job until :meth:`release`; a daemon thread renews it."""

    def __init__(self, spark: SparkSession, output: str, flow_run_id: Optional[str]):
        self._spark = spark
        self.uri = layout.child(output, layout.LOCK)
        self.holder: Dict[str, object] = {
            "flow_run_id": flow_run_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "token": uuid.uuid4().hex,
            "acquired_at": time.time(),
        }
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="fruitflow-lease", daemon=True)

    def acquire(self) -> Lease:
        current = _read(self._spark, self.uri)
        if is_held(current):
            raise JobError(
                "%s is being written by another run (flow run %s, host %s, pid %s, lease renewed %.0f s ago); "
                "wait for it to finish, or delete %s if that run is dead"
                % (
                    self.uri.rsplit("/", 1)[0],
                    current.get("flow_run_id"),
                    current.get("host"),
                    current.get("pid"),
                    time.time() - float(current.get("renewed_at") or 0),
                    self.uri,
                )
            )
        if current is not None:
            log.warning("taking over a stale lock of flow run %s (%s)", current.get("flow_run_id"), self.uri)
        self._write()
        if (_read(self._spark, self.uri) or {}).get("token") != self.holder["token"]:
            raise JobError("%s was taken by another run at the same moment; try again" % self.uri)
        self._thread.start()
        return self

    def _write(self) -> None:
        self.holder["renewed_at"] = time.time()
        storage.write_bytes(self._spark, self.uri, json.dumps(self.holder).encode())

    def _renew(self) -> None:
        while not self._stop.wait(RENEW_SECONDS):
            try:
                self._write()
            except Exception as exc:  # noqa: BLE001 - the next renewal tries again; the lease outlives one miss
                log.debug("lease renewal failed: %s", exc)

    def release(self) -> None:
        self._stop.set()
        try:
            if (_read(self._spark, self.uri) or {}).get("token") == self.holder["token"]:
                storage.delete(self._spark, self.uri)
        except Exception as exc:  # noqa: BLE001 - a lease left behind expires by itself
            log.warning("could not release %s: %s", self.uri, exc)
