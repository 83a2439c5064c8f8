"""One writer per output: a lease in ``_fruitflow.lock``, renewed while the job runs, with the holder's names.

A second run into the same output is refused while the lease is fresh. A lease that was not renewed for
:data:`LEASE_SECONDS` (its job died), or whose process is gone from this host, is taken over with a warning,
so a crashed run never blocks the output for good. A lock that cannot be read (written by something else, or cut
short) is held, not stale, until its file is :data:`LEASE_SECONDS` old: it may be a writer's lease.

Where the output lives decides how the lease is taken:

- **On this machine** (a local path or ``file:``), with the local file system, atomically
  (:mod:`fruitjob.local_lease`): a lease is published whole with a create-exclusive link, and a stale one is
  replaced only by the one contender that won its exclusive takeover marker.
- **On S3**, the flow takes the lease before it creates anything, with a conditional write (Hadoop's S3 clients
  cannot express one; ``tasks/aws/output_lease.py``), and renews and releases it. The job, running under that flow
  run (``--flow-run-id``), accepts a lease its own flow run holds. A job submitted without the flow falls
  back to write-then-re-read through Hadoop, which two writers at the same instant can both pass.
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

from fruitjob import layout, rules, storage
from fruitjob.errors import JobError
from fruitjob.local_lease import LocalLockFile, alive_here

log = logging.getLogger("fruitflow.lock")
LEASE_SECONDS = 600.0
RENEW_SECONDS = 60.0
FLOW_HOLDER = "flow"  # the ``taken_by`` of a lease the flow took for its job (on S3)


def parse_holder(data: bytes) -> Optional[Dict[str, object]]:
    """A lock file's holder, or None when it cannot be read (cut short, or not ours)."""
    try:
        holder = json.loads(data.decode())
    except (ValueError, UnicodeDecodeError):
        return None
    return holder if isinstance(holder, dict) and holder else None


def _token_of(data: bytes) -> Optional[str]:
    token = (parse_holder(data) or {}).get("token")
    return str(token) if token else None


def is_held(holder: Optional[Dict[str, object]], now: Optional[float] = None, file_age: float = 0.0) -> bool:
    """Whether a lock still holds the output: ``holder`` is its content (None: unreadable), ``file_age`` the age of
    its file in seconds (what an unreadable lock is judged by)."""
    if holder is None:
        return file_age < LEASE_SECONDS
    age = (now or time.time()) - float(holder.get("renewed_at") or 0)
    return age < LEASE_SECONDS and alive_here(holder)


def held_by_flow_run(holder: Optional[Dict[str, object]], flow_run_id: Optional[str]) -> bool:
    """Whether ``holder`` is a fresh lease the flow took for this flow run's job."""
    return bool(
        flow_run_id
        and holder
        and holder.get("taken_by") == FLOW_HOLDER
        and holder.get("flow_run_id") == flow_run_id
        and is_held(holder)
    )


def refusal(lock_uri: str, holder: Optional[Dict[str, object]], file_age: float) -> str:
    """Why a run may not write the output while this lock holds it, and what to do."""
    output = lock_uri.rsplit("/", 1)[0]
    if holder is None:
        return (
            "%s holds a lock that cannot be read, written %.0f s ago (a run may be writing it); it counts as held "
            "until it is %.0f s old: wait, or delete %s if no run is writing"
            % (output, file_age, LEASE_SECONDS, lock_uri)
        )
    return (
        "%s is being written by another run (flow run %s, host %s, pid %s, lease renewed %.0f s ago); "
        "wait for it to finish, or delete %s if that run is dead"
        % (
            output,
            holder.get("flow_run_id"),
            holder.get("host"),
            holder.get("pid"),
            time.time() - float(holder.get("renewed_at") or 0),
            lock_uri,
        )
    )


def _file_age(spark, uri: str) -> float:
    """Seconds since the file at ``uri`` was last written, through Hadoop (0 if it is gone meanwhile)."""
    modified = [status[2] for status in storage.list_files_recursive(spark, uri)]
    return time.time() - modified[0] / 1000.0 if modified else 0.0


class Lease:
    """The output's lock, held by this job until :meth:`release`; a daemon thread renews it.

    ``spark`` is used only for outputs that are not on this machine (read and written through Hadoop).
    """

    def __init__(self, spark, output: str, flow_run_id: Optional[str]):
        self._spark = spark
        self.uri = layout.child(output, layout.LOCK)
        self.holder: Dict[str, object] = {
            "flow_run_id": flow_run_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "token": uuid.uuid4().hex,
            "acquired_at": time.time(),
        }
        local = rules.is_local(self.uri)
        self._local = LocalLockFile(rules.local_path(self.uri), LEASE_SECONDS, _token_of) if local else None
        self._borrowed = False  # the flow holds it for this job: the flow renews and releases it
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_until_released, name="fruitflow-lease", daemon=True)

    def acquire(self) -> Lease:
        if self._local is not None:
            self._acquire_local()
        else:
            self._acquire_through_hadoop()
        if not self._borrowed:
            self._thread.start()
        return self

    def _content(self) -> bytes:
        self.holder["renewed_at"] = time.time()
        return json.dumps(self.holder).encode()

    def _acquire_local(self) -> None:
        assert self._local is not None
        for _ in range(20):  # each pass ends in a decision unless the lock changed under us: then look again
            if self._local.create(self._content()):
                return
            found = self._local.read()
            if found is None:  # released since: try to create it again
                continue
            holder = parse_holder(found.data)
            if held_by_flow_run(holder, self.holder.get("flow_run_id")):
                self._borrow(holder)
                return
            if is_held(holder, file_age=found.age):
                raise JobError(refusal(self.uri, holder, found.age))
            if self._local.replace_if_unchanged(found, self._content) is True:
                log.warning("took over a stale lock of flow run %s (%s)", (holder or {}).get("flow_run_id"), self.uri)
                return
            time.sleep(0.01)  # another contender is taking it over: its new lease is what we read next
        raise JobError("%s kept changing while this run tried to take it; try again" % self.uri)

    def _acquire_through_hadoop(self) -> None:
        if storage.exists(self._spark, self.uri):
            current = parse_holder(storage.read_bytes(self._spark, self.uri))
            age = _file_age(self._spark, self.uri)
            if held_by_flow_run(current, self.holder.get("flow_run_id")):
                self._borrow(current)
                return
            if is_held(current, file_age=age):
                raise JobError(refusal(self.uri, current, age))
            log.warning("taking over a stale lock of flow run %s (%s)", (current or {}).get("flow_run_id"), self.uri)
        storage.write_bytes(self._spark, self.uri, self._content())
        if _token_of(storage.read_bytes(self._spark, self.uri)) != self.holder["token"]:
            raise JobError("%s was taken by another run at the same moment; try again" % self.uri)

    def _borrow(self, holder: Dict[str, object]) -> None:
        log.info("the lease of %s is held by this run's flow (flow run %s)", self.uri, holder.get("flow_run_id"))
        self._borrowed = True

    def renew(self) -> bool:
        """Write a fresh ``renewed_at`` if the lease is still ours; False when another run has taken it over."""
        if self._local is not None:
            kept = self._local.replace_if_token(self.holder["token"], self._content)
            return kept is not False  # None: a contender is looking at it right now; the next renewal tries again
        current = parse_holder(storage.read_bytes(self._spark, self.uri))
        if (current or {}).get("token") != self.holder["token"]:
            return False
        storage.write_bytes(self._spark, self.uri, self._content())
        return True

    def _renew_until_released(self) -> None:
        while not self._stop.wait(RENEW_SECONDS):
            try:
                if not self.renew() and not self._stop.is_set():  # (released meanwhile: nothing was lost)
                    log.error("the lease of %s was taken over by another run; this run no longer holds it", self.uri)
                    return
            except Exception as exc:  # noqa: BLE001 - the next renewal tries again; the lease outlives one miss
                log.debug("lease renewal failed: %s", exc)

    def release(self) -> None:
        """Delete the lock if it is still ours (a lease the flow holds is left to the flow)."""
        self._stop.set()
        if self._borrowed:
            return
        try:
            if self._local is not None:
                self._local.delete_if_token(self.holder["token"])
            elif (parse_holder(storage.read_bytes(self._spark, self.uri)) or {}).get("token") == self.holder["token"]:
                storage.delete(self._spark, self.uri)
        except Exception as exc:  # noqa: BLE001 - a lease left behind expires by itself
            log.warning("could not release %s: %s", self.uri, exc)
