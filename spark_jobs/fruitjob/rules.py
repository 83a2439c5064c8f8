"""The rules every part of fruitflow shares, in one place: what an image is, its label, where it may be written.

Pure Python (no Spark, no Prefect): the job, the flow's checks, preflight and validation all import it.
"""

from __future__ import annotations

import os
from typing import Iterable, Optional, Tuple
from urllib.parse import unquote_to_bytes, urlparse

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
FEATURE_DIM = 1280
# Larger than any photo (a 200 MP JPEG is ~60 MB), and below Spark's 2 GB limit for one binaryFile row.
MAX_IMAGE_BYTES = 512 * 1024 * 1024
# How image bytes are read: the Python workers read local files, Spark's binaryFile reads object stores.
READERS = ("auto", "python", "binaryfile")
HEALTH_CHOICES = ("on", "off")
# measured on Fruits-360 (bench/health_threshold.py, docs/performance.md "Dataset health"): neighbouring turntable
# frames are as close as re-encoded copies in the 1280-d features, so the default leans to not flagging frames (12%
# of them flagged at 0.98, against 66% at 0.95): it finds brightened and lightly cropped copies, few re-encoded ones
NEAR_DUPLICATE_THRESHOLD = 0.98
# The most similar pairs kept per image and compared block: features that are all alike (random weights, a class of
# near-identical frames) would otherwise make n^2 rows; an image's byte copies and closest copies stay first.
MAX_PAIRS_PER_IMAGE = 25
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


def is_utf8(name: str) -> bool:
    """Whether a name from the file system is valid UTF-8 (Python hands the bytes that are not over as surrogates)."""
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _percent_encoded(name: str) -> str:
    """``name`` with each byte that is not UTF-8, and each ``%``, as ``%XX``: ``caf\\udce9`` -> ``caf%E9``."""
    return "".join(
        "%%%02X" % (ord(c) - 0xDC00) if "\udc80" <= c <= "\udcff" else "%25" if c == "%" else c for c in name
    )


def local_uri(path: str) -> str:
    """The ``path`` column value of the local file at ``path`` (absolute), unique to it.

    ``file:`` and the path, not URL-encoded (``file:/data/Apple Red/100% ripe.jpg``). A path that is not UTF-8
    cannot be written so: it becomes the standard ``file:///`` URI of its bytes, those that are not UTF-8 and each
    ``%`` percent-encoded (``file:///data/Apple Red/caf%E9.jpg``; ``urllib.parse.unquote_to_bytes`` of the part after
    ``file://`` gives the bytes back). A real path is always written ``file:/x`` (one slash), so the two forms never
    meet, whatever a real name spells.
    """
    if is_utf8(path):
        return "file:" + path
    return "file://" + _percent_encoded(path)


def local_file(uri: str) -> str:
    """The file-system path of a local ``path`` value: the inverse of :func:`local_uri`."""
    if uri.startswith("file:///"):
        return os.fsdecode(unquote_to_bytes(uri[len("file://") :]))
    return local_path(uri)


def local_label(root: str, path: str) -> str:
    """The label of the local file at ``path`` under the input folder ``root`` (:func:`label_of`); a folder name that
    is not UTF-8 percent-encoded as in :func:`local_uri`."""
    label = label_of(root, path)
    return label if is_utf8(label) else _percent_encoded(label)


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


def real_location(uri: str) -> str:
    """Where ``uri`` really is, as a canonical URI: locally with every link resolved (of a path not there yet, its
    deepest existing folder's links), after ``..`` is removed as the job removes it (every path option is made
    absolute by ``os.path.abspath``); on an object store its key as written (no links there).
    """
    if not is_local(uri):
        return to_uri(uri)
    return "file:" + os.path.realpath(os.path.abspath(local_path(uri)))


def is_inside(child: str, parent: str) -> bool:
    """True when ``child`` is ``parent`` or lies under it: real locations, compared by whole path segments."""
    child, parent = real_location(child).rstrip("/"), real_location(parent).rstrip("/")
    return child == parent or child.startswith(parent + "/")


def output_inside_input(images: str, output: str) -> Optional[str]:
    """Why ``output`` may not be used for ``images``, or None: an output inside the input would be read as input."""
    if not is_inside(output, images):
        return None
    real_output, real_images = real_location(output), real_location(images)
    really = ""
    if (real_output, real_images) != (to_uri(output), to_uri(images)):
        really = " (really %s inside %s, links resolved)" % (real_output, real_images)
    return (
        "--output %s lies inside --images %s%s: the next run would list its own output as images; "
        "choose an output outside the input folder or prefix" % (output, images, really)
    )


def output_inside_linked_folder(output: str, linked_folders: Iterable[Tuple[str, str]]) -> Optional[str]:
    """Why ``output`` may not be used, or None, given the folder links the input's listing followed (link URI, real
    path): an output inside a folder the input links to would be listed as input by the next run too."""
    if not is_local(output):
        return None
    real_output = real_location(output)
    for link, target in linked_folders:
        target_uri = "file:" + target.rstrip("/")
        if real_output == target_uri or real_output.startswith(target_uri + "/"):
            return (
                "--output %s lies inside %s, which the input links to (%s): the next run would list its own output "
                "as images; choose an output outside the input and the folders it links to" % (output, target_uri, link)
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
