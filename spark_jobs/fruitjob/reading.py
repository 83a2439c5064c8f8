"""Getting the listed images' bytes to the featurizer: read by the Python workers, or by Spark's ``binaryFile``.

Local files are read by the Python workers from the listing's paths, as the featurizer consumes them: a file
name is never parsed by Hadoop (colons, ``[*?{``, leading dots and underscores, newlines all break its ``Path``
or are silently skipped by Spark's file sources), a FIFO never blocks a read, and no image bytes cross the JVM.
Object stores (``s3://`` on EMR) are read with ``binaryFile`` under the input prefix, its glob characters
escaped, and kept to exactly the listed objects; objects Spark cannot read (Glacier, KMS denied) are skipped
by Spark (``ignoreCorruptFiles``) and come back as ``errors/`` rows through :func:`unread_images`.
"""

from __future__ import annotations

import os
import stat
from typing import List, Optional, Tuple
from urllib.parse import unquote

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StringType, StructField, StructType

from fruitjob.decoding import UNREADABLE
from fruitjob.listing import ImageFile
from fruitjob.rules import MAX_IMAGE_BYTES, is_local, local_path
from fruitjob.storage import escape_glob

LISTING_SCHEMA = StructType(
    [
        StructField("path", StringType(), False),
        StructField("label", StringType(), False),
        StructField("size", LongType(), True),
        StructField("modified", LongType(), True),
        StructField("etag", StringType(), True),
    ]
)
LISTING_COLUMNS = [column.name for column in LISTING_SCHEMA.fields]


def listing_frame(spark: SparkSession, images: List[ImageFile], partitions: Optional[int] = None) -> DataFrame:
    """The listed images as rows, spread round-robin over ``partitions`` slices (a shuffle of the listing only).

    The rows go to the JVM as Arrow (the job turns ``spark.sql.execution.arrow.pyspark.enabled`` on): rows of
    pickled tuples would be turned into Spark rows by a Python worker, of a second worker daemon (plain RDD
    functions and pandas UDFs have separate ones), started in every task that reads them at ~1 s each.
    """
    import pandas as pd

    columns = {
        "path": pd.Series([i.path for i in images], dtype=object),
        "label": pd.Series([i.label for i in images], dtype=object),
        "size": pd.array([i.size for i in images], dtype="Int64"),
        "modified": pd.array([i.modified for i in images], dtype="Int64"),
        "etag": pd.Series([i.etag for i in images], dtype=object),
    }
    frame = spark.createDataFrame(pd.DataFrame(columns), LISTING_SCHEMA)
    return frame.repartition(partitions) if partitions else frame


def read_local_file(uri: str) -> Tuple[Optional[bytes], Optional[str]]:
    """(bytes, None) of a local ``file:`` image, or (None, reason) when it cannot be read.

    Opened without blocking and checked to be a regular file, so a file swapped for a FIFO since the listing
    never hangs a worker; never more than the size limit is read.
    """
    try:
        fd = os.open(local_path(uri), os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        return None, "%s: %s" % (UNREADABLE, exc.strerror or type(exc).__name__)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None, "not a regular file: only files are read"
        if info.st_size > MAX_IMAGE_BYTES:
            return None, "file too large to read (%.1f MB)" % (info.st_size / 1e6)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read(MAX_IMAGE_BYTES + 1), None
    except OSError as exc:
        return None, "%s: %s" % (UNREADABLE, exc.strerror or type(exc).__name__)
    finally:
        os.close(fd)


def reader_for(images_uri: str, asked: str = "auto") -> str:
    """``python`` for local inputs, ``binaryfile`` for object stores, unless asked for one."""
    if asked != "auto":
        return asked
    return "python" if is_local(images_uri) else "binaryfile"


# Hadoop glob syntax; matched against file names only.
IMAGE_GLOB = "*.{[jJ][pP][gG],[jJ][pP][eE][gG],[pP][nN][gG]}"


def _binary_files(spark: SparkSession, images_uri: str, images: List[ImageFile]) -> DataFrame:
    """(listing columns..., content) of the listed images binaryFile reads."""
    reader = spark.read.format("binaryFile")
    if is_local(images_uri):
        # Exactly the listed files: a recursive lookup would follow link loops.
        frame = reader.load([escape_glob(image.path) for image in images])
    else:
        frame = reader.option("recursiveFileLookup", "true").option("pathGlobFilter", IMAGE_GLOB)
        frame = frame.load(escape_glob(images_uri.rstrip("/")))
    # Spark < 4 gives binaryFile paths URL-encoded ("Apple%20Braeburn%201"); Spark 4 does not.
    if int(spark.version.split(".")[0]) < 4:
        frame = frame.withColumn("path", F.udf(unquote, StringType())("path"))
    # Spark prints local paths as file:/x, as the listing does; file:/// is normalised just in case.
    frame = frame.select(F.regexp_replace("path", "^file:///", "file:/").alias("path"), "content")
    # Only what was listed (a file uploaded since is left for the next run), with the listing's facts: the listing
    # is the small side of the join, so the image bytes are never shuffled nor sent through the driver.
    listed = F.broadcast(listing_frame(spark, images))
    return frame.join(listed, on="path", how="inner").select(*LISTING_COLUMNS, "content")


def read_images(spark: SparkSession, images_uri: str, images: List[ImageFile], partitions: int, reader: str):
    """The rows the featurizer takes: listing columns, plus ``content`` when Spark read the bytes (binaryfile)."""
    if reader == "python":
        return listing_frame(spark, images, partitions)
    return _binary_files(spark, images_uri, images)


def unread_images(spark: SparkSession, images: List[ImageFile], done: DataFrame) -> DataFrame:
    """(listing columns..., error) of the listed images missing from ``done``, each with its reason."""
    missing = listing_frame(spark, images).join(done.select("path"), on="path", how="left_anti")
    return missing.withColumn("error", F.lit(UNREADABLE))


__all__ = ["read_images", "unread_images", "escape_glob", "read_local_file", "reader_for", "listing_frame"]
