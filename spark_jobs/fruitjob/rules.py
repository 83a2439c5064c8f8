"""The rules every part of fruitflow shares, in one place: what an image is, its label, where it may be written.

Pure Python (no Spark, no Prefect): the job, the flow's checks, preflight and validation all import it.
"""

from __future__ import annotations

import os
from typing import Iterable, Optional
from urllib.parse import urlparse

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
FEATURE_DIM = 1280
# Larger than any photo (a 200 MP JPEG is ~60 MB), and below Spark's 2 GB limit for one binaryFile row.
MAX_IMAGE_BYTES = 512 * 1024 * 1024
# How image bytes are read: the Python workers read local files, Spark's binaryFile reads object stores.
READERS = ("auto", "python", "binaryfile")
# Inference engines of the job (--featurizer); tflite is the default (docs/performance.md).
FEATURIZERS = ("keras", "tflite", "tflite-int8")
TFLITE_FEATURIZERS = ("tflite", "tflite-int8")  # run a converted flatbuffer in LiteRT, no TensorFlow
NOT_IN_LABEL_FOLDER = "not inside a label folder: put it in a sub-folder named after its label"
# What the output holds when a run wrote into it (finished or not): a plain run never writes over these.
OUTPUT_PARTS = ("features", "errors", "pca", "pca_model", "metrics.json")


def is_image_name(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS)


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
    """The canonical URI of a local path or of a URI, as ``path`` columns hold it (``file:/abs/x``, ``s3://b/k``)."""
    if is_local(path):
        return "file:" + os.path.abspath(local_path(path))
    return path.rstrip("/")


def label_of(root: str, path: str) -> str:
    """The label of an image: the first folder under the input root, as Keras' ``image_dataset_from_directory``
    infers it (also for images in deeper sub-folders); "" for an image directly under the root.

    Example:
        >>> label_of("file:/data", "file:/data/Apple Red/2026/a.jpg")
        'Apple Red'
    """
    prefix = root.rstrip("/") + "/"
    if not path.startswith(prefix):
        return ""
    relative = path[len(prefix) :]
    return relative.split("/", 1)[0] if "/" in relative else ""


def is_inside(child: str, parent: str) -> bool:
    """True when ``child`` is ``parent`` or lies under it (canonical URIs, compared by whole path segments)."""
    child, parent = to_uri(child).rstrip("/"), to_uri(parent).rstrip("/")
    return child == parent or child.startswith(parent + "/")


def output_inside_input(images: str, output: str) -> Optional[str]:
    """Why ``output`` may not be used for ``images``, or None: an output inside the input would be read as input."""
    if is_inside(output, images):
        return (
            "--output %s lies inside --images %s: the next run would list its own output as images; "
            "choose an output outside the input folder or prefix" % (output, images)
        )
    return None


def output_refusal(output: str, present: Iterable[str], overwrite: bool, incremental: bool) -> Optional[str]:
    """The finished-run rule: why a run may not write into ``output``, or None.

    ``present`` names what the output already holds (of :data:`OUTPUT_PARTS`). A plain run writes only into an
    empty or new output: a finished run (``metrics.json``) or an unfinished one (datasets without it) is replaced
    only with ``--overwrite``, or completed and extended with ``--incremental``.
    """
    if overwrite and incremental:
        return "--overwrite and --incremental exclude each other"
    if overwrite or incremental:
        return None
    present = set(present)
    if "metrics.json" in present:
        return (
            "%s already holds a finished run (metrics.json is there); pass --overwrite to replace it, "
            "--incremental to add new images to it, or choose another --output" % output
        )
    parts = sorted(present)  # OUTPUT_PARTS, and whatever else shows that a run wrote into it (space.json)
    if parts:
        return (
            "%s holds an unfinished run (%s, but no metrics.json); pass --incremental to finish it, "
            "--overwrite to replace it, or choose another --output" % (output, ", ".join(parts))
        )
    return None
