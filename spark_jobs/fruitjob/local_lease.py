"""The lease's file on this machine, changed only atomically (the job's driver runs here: no Hadoop in between).

- **Create**: the content is written whole to a private temporary file, then published with ``os.link``, which fails
  if the lock exists. Of any number of contenders exactly one links; nobody ever reads a half-written lock.
- **Change an existing lock** (take over a stale one, renew, release): only under the exclusive *marker* of the lock's
  holder, ``<lock>.takeover-<token>``, itself published with ``os.link``. Whoever holds the marker re-reads the lock
  and acts only if its bytes are those it judged (a take-over) or still carry its token (renewal, release), then
  replaces it with ``os.replace`` (atomic) or deletes it. Proof sketch: every change of a lock holding token T happens
  under marker T, so changes of one lock are serialised; a creation needs the lock to be absent, which only the
  marker holder's delete makes so; a contender that judged an older state finds the bytes changed and backs off.
- A marker whose owner died between taking and removing it (a SIGKILL in those few lines) would block T for good:
  when its owner's process is gone from this host, or the marker is a lease period old, the right passes to the
  successor marker ``<marker>.<owner token>``, again taken exclusively, so two contenders cannot both inherit it.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import uuid
from glob import escape, glob
from typing import Callable, Dict, NamedTuple, Optional


class Found(NamedTuple):
    """A lock as read: its bytes and the age of its file in seconds."""

    data: bytes
    age: float


def alive_here(owner: Dict[str, object]) -> bool:
    """False when ``owner`` ran on this host and its process is gone; True otherwise (or when unknown)."""
    if owner.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(owner.get("pid") or 0), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True
    return True


def content_key(data: bytes) -> str:
    """A name for a lock state whose content has no token (unreadable): the hash of its bytes."""
    return "unreadable-" + hashlib.sha256(data).hexdigest()[:16]


class LocalLockFile:
    """The lock file at ``path``; ``token_of`` reads a lock's token (None when it has none)."""

    def __init__(self, path: str, lease_seconds: float, token_of: Callable[[bytes], Optional[str]]):
        self.path = path
        self._lease_seconds = lease_seconds
        self._token_of = token_of
        self._me = {"host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex}

    def _publish(self, target: str, data: bytes) -> bool:
        """Write ``data`` to a private file and link it as ``target``; False if ``target`` exists."""
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        temporary = self._write_temporary(data)
        try:
            os.link(temporary, target)
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(temporary)

    def _write_temporary(self, data: bytes) -> str:
        temporary = "%s.%s.tmp" % (self.path, uuid.uuid4().hex)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return temporary

    def create(self, data: bytes) -> bool:
        """Publish the lock with ``data`` if there is none; True if this call created it."""
        created = self._publish(self.path, data)
        if created:
            self._sweep()
        return created

    def read(self, path: Optional[str] = None) -> Optional[Found]:
        """The lock (or a marker) as it is now; None when there is none."""
        try:
            with open(path or self.path, "rb") as lock:
                data = lock.read()
                age = time.time() - os.fstat(lock.fileno()).st_mtime
        except FileNotFoundError:
            return None
        return Found(data, age)

    def _key(self, data: bytes) -> str:
        return self._token_of(data) or content_key(data)

    def _take_marker(self, key: str) -> Optional[str]:
        """The exclusive right to change the lock whose key is ``key``; None while someone else has it."""
        name = "%s.takeover-%s" % (self.path, key)
        for _ in range(8):
            if self._publish(name, json.dumps({**self._me, "at": time.time()}).encode()):
                return name
            found = self.read(name)
            if found is None:  # its owner has just finished: the lock has changed, the caller reads it again
                return None
            try:
                owner = json.loads(found.data.decode())
            except ValueError:
                owner = {}
            if alive_here(owner) and found.age < self._lease_seconds:
                return None
            name = "%s.%s" % (name, str(owner.get("token") or content_key(found.data))[:12])
        return None

    def _under_marker(
        self, key: str, still_ours: Callable[[bytes], bool], change: Callable[[], None]
    ) -> Optional[bool]:
        """Take ``key``'s marker, re-read the lock and ``change`` it if ``still_ours(bytes)``.

        Returns True (changed), False (the lock is another one now, or gone) or None (someone else holds the marker).
        """
        marker = self._take_marker(key)
        if marker is None:
            return None
        try:
            now = self.read()
            if now is None or not still_ours(now.data):
                return False
            change()
            return True
        finally:
            os.unlink(marker)

    def _replace(self, data: bytes) -> None:
        os.replace(self._write_temporary(data), self.path)

    def replace_if_unchanged(self, judged: Found, make_data: Callable[[], bytes]) -> Optional[bool]:
        """Take over the lock read as ``judged`` (found stale), if it still holds exactly those bytes."""
        replaced = self._under_marker(
            self._key(judged.data), lambda data: data == judged.data, lambda: self._replace(make_data())
        )
        if replaced:
            self._sweep()
        return replaced

    def replace_if_token(self, token: str, make_data: Callable[[], bytes]) -> Optional[bool]:
        """Renew: rewrite the lock if it still carries ``token``."""
        return self._under_marker(token, lambda data: self._token_of(data) == token, lambda: self._replace(make_data()))

    def delete_if_token(self, token: str, attempts: int = 100) -> bool:
        """Release: delete the lock if it still carries ``token``; waits (about a second at most) for a contender that
        holds the marker to finish looking at it."""
        for _ in range(attempts):
            deleted = self._under_marker(
                token, lambda data: self._token_of(data) == token, lambda: os.unlink(self.path)
            )
            if deleted is not None:
                return deleted
            time.sleep(0.01)
        return False

    def _sweep(self) -> None:
        """Remove markers and temporary files left by processes killed while holding them (a lease period old)."""
        for path in glob(escape(self.path) + ".takeover-*") + glob(escape(self.path) + ".*.tmp"):
            try:
                if time.time() - os.stat(path).st_mtime > self._lease_seconds:
                    os.unlink(path)
            except FileNotFoundError:
                pass
