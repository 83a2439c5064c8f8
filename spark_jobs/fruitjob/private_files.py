"""Files the job caches in the system temp directory, safe from the other users of the machine.

The job zip, the weights file Keras loads and the converted TFLite models have predictable names, and the
system temp directory is shared: a file planted there under such a name by another user would be imported
or loaded. So every such file lives in a private directory, ``<tmp>/fruitflow-<uid>`` (mode 0700, ours, not
a link; a path that is anything else is refused and a fresh directory of this process is used instead), is
written atomically (``mkstemp`` in that directory, then ``os.replace``), and carries the sha256 of its bytes
in its name, checked on every read: a file whose bytes do not match is never used, it is replaced.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import tempfile
import time
from typing import Dict, Optional

log = logging.getLogger("fruitflow.private_files")
PREFIX = "fruitflow-"
# Per base directory, the fresh directory used when the predictable one cannot be trusted.
_FALLBACK: Dict[str, str] = {}


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _uid() -> Optional[int]:
    getuid = getattr(os, "getuid", None)  # absent on Windows, where the temp directory is per user already
    return getuid() if getuid else None


def _problem(path: str) -> Optional[str]:
    """Why ``path`` is not a directory only we can write to, or ``None`` when it is."""
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(info.st_mode):
        return "is not a directory"
    uid = _uid()
    if uid is not None and info.st_uid != uid:
        return "belongs to uid %d, not to us (uid %d)" % (info.st_uid, uid)
    if uid is not None and stat.S_IMODE(info.st_mode) != 0o700:
        return "has mode %o, not 700" % stat.S_IMODE(info.st_mode)
    return None


def private_dir(base: Optional[str] = None) -> str:
    """``<base>/fruitflow-<uid>`` (``base``: the system temp directory), created 0700 if missing.

    Where that path exists and is not our own 0700 directory (another user's, group- or world-writable, a
    link or a file), it is not used: a new directory made by ``mkdtemp`` serves this process instead.
    """
    base = base or tempfile.gettempdir()
    uid = _uid()
    path = os.path.join(base, PREFIX + ("%d" % uid if uid is not None else "user"))
    try:
        os.mkdir(path, 0o700)
        created = True
    except FileExistsError:
        created = False
    if created and uid is not None and stat.S_IMODE(os.lstat(path).st_mode) != 0o700:
        os.chmod(path, 0o700)  # an unusual umask took bits of our own, new directory
    problem = _problem(path)
    if problem is None:
        return path
    fallback = _FALLBACK.get(base)
    if fallback is None or _problem(fallback) is not None:
        fallback = tempfile.mkdtemp(prefix=PREFIX, dir=base)  # unique, 0700, ours
        _FALLBACK[base] = fallback
        log.warning("%s %s: not used (remove it); this process uses %s", path, problem, fallback)
    return fallback


def read_verified(path: str, digest: str) -> Optional[bytes]:
    """The file's bytes when it is a regular file of ours (not a link) whose sha256 is ``digest``, else None."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ELOOP, errno.EISDIR, errno.EACCES, errno.ENOTDIR):
            log.warning("cannot read %s: %s", path, exc)
        return None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        uid = _uid()
        if not stat.S_ISREG(info.st_mode) or (uid is not None and info.st_uid != uid):
            return None
        data = handle.read()
    return data if sha256_hex(data) == digest else None


def write_atomic(path: str, data: bytes) -> str:
    """Write ``data`` to ``path`` through a unique file in the same directory and ``os.replace``.

    Returns ``path``, or the unique file itself where ``path`` cannot be replaced (a directory is there).
    """
    directory, name = os.path.split(path)
    fd, partial = tempfile.mkstemp(dir=directory, prefix=".partial-", suffix="-" + name)  # keeps the suffix
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        os.unlink(partial)
        raise
    try:
        os.replace(partial, path)  # atomic: another process never sees half a file
    except OSError as exc:
        log.warning("cannot replace %s (%s): using %s", path, exc, partial)
        return partial
    return path


def content_name(stem: str, data: bytes, suffix: str) -> str:
    """``<stem>-<sha256 of data><suffix>``: a name that says what its file must contain."""
    return "%s-%s%s" % (stem, sha256_hex(data), suffix)


def digest_of(name: str, stem: str, suffix: str) -> Optional[str]:
    """The sha256 a :func:`content_name` announces, or None when ``name`` is not one for ``stem``/``suffix``."""
    if not (name.startswith(stem + "-") and name.endswith(suffix)):
        return None
    digest = name[len(stem) + 1 : len(name) - len(suffix)]
    return digest if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest) else None


def store(stem: str, data: bytes, suffix: str, directory: Optional[str] = None) -> str:
    """The path of a verified file holding ``data`` (in the private directory unless ``directory``): an
    existing file is reused only when its bytes match its name; anything else there is replaced."""
    path = os.path.join(directory or private_dir(), content_name(stem, data, suffix))
    if read_verified(path, sha256_hex(data)) is not None:
        os.utime(path, None)  # in use: :func:`prune` leaves it alone
        return path
    return write_atomic(path, data)


def prune(stem: str, suffix: str, keep: str, unused_for_s: float = 3600.0) -> None:
    """Remove the other ``<stem>-<sha256><suffix>`` files next to ``keep`` that were not used for a while
    (files whose bytes differ from run to run, such as the HDF5 files of random weights, would pile up)."""
    folder = os.path.dirname(keep)
    now = time.time()
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if path == keep or digest_of(name, stem, suffix) is None:
            continue
        try:
            if now - os.lstat(path).st_mtime > unused_for_s:
                remove(path)
        except OSError:
            pass


def load(stem: str, suffix: str, directory: Optional[str] = None) -> Optional[bytes]:
    """The bytes of a verified ``<stem>-<sha256><suffix>`` file, if one is there; mismatching ones are removed."""
    folder = directory or private_dir()
    for name in sorted(os.listdir(folder)):
        digest = digest_of(name, stem, suffix)
        if digest is None:
            continue
        path = os.path.join(folder, name)
        data = read_verified(path, digest)
        if data is not None:
            return data
        log.warning("ignoring %s: its content does not match its name", path)
        remove(path)
    return None


def remove(path: str) -> None:
    try:
        if not os.path.isdir(path) or os.path.islink(path):
            os.remove(path)
    except OSError:
        pass
