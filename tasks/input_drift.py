"""Files that came or went while a run ran, told apart from lost images by the input's own timestamps.

The job lists the input once and records when it began (``listed_at`` in metrics.json); validation lists the input
again afterwards, so it may find files the job could not have seen and miss files the job read. The rule:

- An image in the input now that is in neither features/ nor errors/ **arrived after the listing** when it changed
  after ``listed_at``: locally the change time (``st_ctime``, of the file and of the link when it is one), which a
  copy, a move or a rename sets to now and which ``touch``, ``cp -p`` or ``os.utime`` cannot set to the past; on S3
  the object's ``LastModified``, which S3 sets on upload and counts in whole seconds (an object of the listing's
  own second counts as arrived). Otherwise the file was there when the job listed: it is lost, and the output
  invalid. A file changed after the listing counts as arrived too: the next ``--incremental`` run reads it again.
- A row of this run (its ``run_id``) for a file the input no longer has was **deleted after the listing** when it
  is an errors/ row saying the file could not be read (the job found it gone when it came to read it), or, locally,
  when the folder it was in (or the nearest one left above it) changed between ``listed_at`` and the run's
  ``finished_at`` (removing an entry sets the folder's change time). A file deleted after the run finished leaves a
  row the output should not hold: that fails, as do rows of earlier runs (``--incremental`` removes both).

Validation takes only the job's ``listed_at`` and ``finished_at`` on its word: nothing in the input says when it was
listed. Local timestamps come from the kernel's coarse clock (a few ms behind): a file written within those
milliseconds after ``listed_at`` and missed by the listing would count as lost.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from datetime import datetime

from pyarrow import fs as pafs

from fruitjob.decoding import UNREADABLE
from fruitjob.rules import is_local, local_path
from tasks.uris import filesystem_path


@dataclass(frozen=True)
class Drift:
    """What changed in the input while the run ran: paths that arrived after its listing, and paths of this run's
    rows whose files were deleted after it."""

    arrived: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


def seconds(timestamp: str | None) -> float | None:
    """An ISO 8601 time of metrics.json as seconds since the epoch (None stays None)."""
    return datetime.fromisoformat(timestamp).timestamp() if timestamp else None


def _local_change_time(path: str) -> float | None:
    times = []
    for stat in (os.lstat, os.stat):  # the link itself, and what it leads to
        try:
            times.append(stat(path).st_ctime_ns / 1e9)
        except OSError:
            continue
    return max(times) if times else None


def arrived_after(uri: str, filesystem: pafs.FileSystem, listed_at: float | None) -> bool:
    """Whether the file at ``uri`` demonstrably changed after ``listed_at`` (so a listing then may not have it)."""
    if listed_at is None:
        return False
    if is_local(uri):
        changed = _local_change_time(local_path(uri))
        return changed is not None and changed > listed_at
    info = filesystem.get_file_info(filesystem_path(uri))
    if info.type == pafs.FileType.NotFound or info.mtime is None:
        return False
    return info.mtime.timestamp() >= math.floor(listed_at)  # LastModified counts whole seconds


def _folder_changed_during(path: str, listed_at: float, finished_at: float) -> bool:
    folder = os.path.dirname(path)
    while folder and not os.path.isdir(folder):  # the folder went too: its parent changed then
        parent = os.path.dirname(folder)
        if parent == folder:
            return False
        folder = parent
    changed = _local_change_time(folder)
    return changed is not None and listed_at < changed <= finished_at


def deleted_during(uri: str, error: str | None, listed_at: float | None, finished_at: float | None) -> bool:
    """Whether this run's row for ``uri`` (a file no longer in the input) belongs to a file deleted during the run."""
    if isinstance(error, str) and error.startswith(UNREADABLE):
        return True  # the job listed it, then could not open it
    if listed_at is None or finished_at is None or not is_local(uri):
        return False  # S3 keeps no trace of a deletion
    return _folder_changed_during(local_path(uri), listed_at, finished_at)
