"""What is under the input: every image file with its label and what is known of it, and what we skip.

The input is listed here, on the driver, rather than by Spark's recursive file lookup. Locally, folder links are
followed (a label folder is often a link into another disk) but a link back to a folder already on the way down
is a loop: it is not descended and is reported. A folder that cannot be listed is reported too; nothing is
dropped without a name. Image-named files that cannot be images (a FIFO, a file too big to read, a name that is
not UTF-8, an image directly under the root) carry the reason here and become ``errors/`` rows without a read.
Each listed file has a ``path`` of its own (:func:`fruitjob.rules.local_uri`: a name that is not UTF-8 too).
On object stores (no links) Hadoop's flat listing is used.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from pyspark.sql import SparkSession

from fruitjob import storage
from fruitjob.decoding import EMPTY_FILE, UNREADABLE
from fruitjob.rules import (
    MAX_IMAGE_BYTES,
    NOT_IN_LABEL_FOLDER,
    is_image_name,
    is_local,
    is_utf8,
    label_of,
    local_label,
    local_path,
    local_uri,
    to_uri,
)

log = logging.getLogger("fruitflow.listing")
NOT_UTF8 = (
    "file name is not valid UTF-8: rename the file (its path is the file:/// URI of its bytes, each byte that is "
    "not UTF-8 and each % written %XX)"
)


@dataclass(frozen=True)
class ImageFile:
    path: str  # canonical URI, not URL-encoded: file:/abs/Apple Braeburn 1/x.jpg, s3://bucket/key with space.jpg
    label: str  # the first folder under the input root; "" directly under the root
    size: Optional[int]  # None when unknown (a dangling link)
    modified: Optional[int] = None  # modification time, ms since the epoch
    etag: Optional[str] = None  # S3 only, where the file system reports it
    problem: Optional[str] = None  # why it cannot be featurized, known without reading it

    @property
    def key(self) -> Tuple[Optional[int], Optional[int], Optional[str]]:
        """What tells a changed file from the one featurized before: size, modification time, ETag."""
        return (self.size, self.modified, self.etag)


@dataclass
class Listing:
    images: List[ImageFile] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)  # not an image by extension
    skipped_folders: List[Tuple[str, str]] = field(default_factory=list)  # (folder, why it was not listed)
    linked_folders: List[Tuple[str, str]] = field(default_factory=list)  # (folder link, its real path) followed

    @property
    def files_seen(self) -> int:
        return len(self.images) + len(self.skipped)

    @property
    def readable(self) -> List[ImageFile]:
        return [image for image in self.images if image.problem is None]

    @property
    def problems(self) -> List[ImageFile]:
        return [image for image in self.images if image.problem is not None]


def _walk_local(root: str, listing: Listing) -> List[Tuple[str, object]]:
    """Every non-folder entry under ``root`` with its stat (or the OSError of a dangling link or a link loop),
    following folder links (noted in ``listing``) but never around a loop."""
    skipped_folders = listing.skipped_folders
    found: List[Tuple[str, object]] = []
    try:
        top = os.stat(root)
    except OSError as exc:
        skipped_folders.append((local_uri(root), "folder could not be listed: %s" % (exc.strerror or exc)))
        return found
    stack = [(root, frozenset([(top.st_dev, top.st_ino)]))]
    while stack:
        folder, ancestors = stack.pop()
        try:
            with os.scandir(folder) as entries:
                names = sorted(entry.name for entry in entries)
        except OSError as exc:
            skipped_folders.append((local_uri(folder), "folder could not be listed: %s" % (exc.strerror or exc)))
            continue
        for name in reversed(names):  # the stack pops the first name first
            full = os.path.join(folder, name)
            try:
                info = os.stat(full)
            except OSError as exc:  # a dangling link or a link loop: listed, and an error row later
                found.append((full, exc))
                continue
            if not stat.S_ISDIR(info.st_mode):
                found.append((full, info))
                continue
            key = (info.st_dev, info.st_ino)
            if key in ancestors:
                skipped_folders.append((local_uri(full), "folder link loop: it leads back to a folder above it"))
                continue
            if os.path.islink(full):
                listing.linked_folders.append((local_uri(full), os.path.realpath(full)))
            stack.append((full, ancestors | {key}))
    return found


def _local_facts(info, utf8: bool) -> Tuple[Optional[int], Optional[int], Optional[str]]:
    """(size, modified ms, problem) of a local image-named file, from the walk's stat (which follows links)."""
    if not utf8:
        return None, None, NOT_UTF8
    if isinstance(info, OSError):
        return None, None, UNREADABLE + (": a link loop" if info.errno == errno.ELOOP else "")
    modified = int(info.st_mtime_ns // 1_000_000)
    if not stat.S_ISREG(info.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a socket" if stat.S_ISSOCK(info.st_mode) else "a device"
        return None, modified, "not a regular file (%s): only files are read" % kind
    return int(info.st_size), modified, None


def _common_problem(label: str, size: Optional[int], problem: Optional[str] = None) -> Optional[str]:
    """The reason an image-named file becomes an error row without being read, or None."""
    if not label:
        return NOT_IN_LABEL_FOLDER
    if problem:
        return problem
    if size == 0:
        return EMPTY_FILE
    if size is not None and size > MAX_IMAGE_BYTES:
        return "file too large to read (%.1f MB; images up to %d MB are read)" % (size / 1e6, MAX_IMAGE_BYTES >> 20)
    return None


def _list_local(images_uri: str, listing: Listing) -> None:
    root = os.path.abspath(local_path(images_uri))
    for path, info in sorted(_walk_local(root, listing), key=lambda found: found[0]):
        uri = local_uri(path)
        if not is_image_name(uri):
            listing.skipped.append(uri)
            continue
        label = local_label(root, path)
        size, modified, problem = _local_facts(info, is_utf8(path))
        listing.images.append(ImageFile(uri, label, size, modified, None, _common_problem(label, size, problem)))


def _list_remote(spark: SparkSession, images_uri: str, listing: Listing) -> None:
    root = images_uri.rstrip("/")
    for path, size, modified, etag in sorted(storage.list_files_recursive(spark, root)):
        if not is_image_name(path):
            listing.skipped.append(path)
            continue
        label = label_of(root, path)
        listing.images.append(ImageFile(path, label, size, modified, etag, _common_problem(label, size)))


def list_input(spark: SparkSession, images_uri: str) -> Listing:
    """List every file under ``images_uri`` and sort it into images (with any known problem) and skipped files."""
    listing = Listing()
    if is_local(images_uri):
        _list_local(images_uri, listing)
    else:
        _list_remote(spark, images_uri, listing)
    for folder, reason in listing.skipped_folders:
        log.warning("not listed: %s: %s", folder, reason)
    return listing


__all__ = ["ImageFile", "Listing", "list_input", "is_local", "local_path", "to_uri", "NOT_UTF8"]
