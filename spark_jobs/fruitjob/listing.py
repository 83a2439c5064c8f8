"""What is under the input: image files with their labels, and the files we skip.

The input is listed here, on the driver, rather than by Spark's recursive file lookup: Hadoop's local
file system follows symbolic links, so a link loop would be listed until paths overflow. Locally we walk
without following directory links; on object stores (no links) Hadoop's flat listing is used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import List, Tuple
from urllib.parse import unquote, urlparse

from pyspark.sql import SparkSession

from fruitjob import storage

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class ImageFile:
    path: str  # decoded URI: file:/abs/Apple Braeburn 1/x.jpg, s3://bucket/key with space.jpg
    label: str
    size: int


@dataclass
class Listing:
    images: List[ImageFile] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)  # not an image by extension

    @property
    def files_seen(self) -> int:
        return len(self.images) + len(self.skipped)


def is_local(uri: str) -> bool:
    return urlparse(uri).scheme in ("", "file")


def local_path(uri: str) -> str:
    """The file-system path of a local URI (``file:/x``, ``file:///x`` or a plain path).

    Our URIs are not URL-encoded, so ``#`` and ``?`` are parts of a file name here, not a fragment or a query.
    """
    if not uri.startswith("file:"):
        return uri
    rest = uri[len("file:") :]
    if rest.startswith("//"):  # file://authority/path: the authority is empty or localhost for local files
        rest = rest[rest.find("/", 2) :] if rest.find("/", 2) >= 0 else "/"
    return rest


def to_uri(path: str) -> str:
    """The canonical decoded URI of a local path or of a URI, as ``path`` columns hold it."""
    if is_local(path):
        return "file:" + os.path.abspath(local_path(path))
    return path


def decode_spark_path(path: str, encoded: bool) -> str:
    """Spark < 4 gives ``binaryFile`` paths URL-encoded ("Apple%20Braeburn%201"); Spark 4 does not."""
    return unquote(path) if encoded else path


def label_of(path: str) -> str:
    """The label of an image is the name of the folder it is in."""
    parts = path.rstrip("/").split("/")
    return parts[-2] if len(parts) >= 2 else ""


def is_image_name(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS)


def _walk_local(root: str) -> List[Tuple[str, int]]:
    found = []
    # followlinks=False: a directory link (possibly a loop) is not descended; file links are kept.
    for folder, _dirs, names in os.walk(root, followlinks=False):
        for name in names:
            full = os.path.join(folder, name)
            try:
                size = os.stat(full).st_size
            except OSError:
                size = -1  # a dangling link: listed, and reported as unreadable later
            found.append(("file:" + full, size))
    return found


def list_input(spark: SparkSession, images_uri: str) -> Listing:
    """List every file under ``images_uri`` and sort it into images and skipped files."""
    if is_local(images_uri):
        files = _walk_local(os.path.abspath(local_path(images_uri)))
    else:
        files = list(storage.list_files_recursive(spark, images_uri))
    listing = Listing()
    for path, size in sorted(files):
        if is_image_name(path):
            listing.images.append(ImageFile(path=path, label=label_of(path), size=size))
        else:
            listing.skipped.append(path)
    return listing
