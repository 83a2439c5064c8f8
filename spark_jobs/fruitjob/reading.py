"""Reading image bytes with Spark's ``binaryFile`` source, for exactly the listed images."""

from __future__ import annotations

from typing import List, Optional

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BinaryType, LongType, StringType, StructField, StructType

from fruitjob.decoding import EMPTY_FILE, UNREADABLE
from fruitjob.listing import ImageFile, decode_spark_path, is_local, local_path

LISTING_SCHEMA = StructType(
    [
        StructField("path", StringType(), False),
        StructField("label", StringType(), False),
        StructField("size", LongType(), False),
    ]
)
# Hadoop glob syntax; matched against file names only.
IMAGE_GLOB = "*.{[jJ][pP][gG],[jJ][pP][eE][gG],[pP][nN][gG]}"
_GLOB_SPECIALS = "\\[]{}*?"


def escape_glob(path: str) -> str:
    """Escape Hadoop glob characters so that a file named ``a[1].jpg`` is read as itself."""
    return "".join("\\" + c if c in _GLOB_SPECIALS else c for c in path)


def listing_frame(spark: SparkSession, images: List[ImageFile]) -> DataFrame:
    rows = [(image.path, image.label, image.size) for image in images]
    return spark.createDataFrame(rows, LISTING_SCHEMA)


def is_hidden_name(path: str) -> bool:
    """Names Spark's file sources silently leave out, even when given one by one (``_x``, ``.x``, ``x._COPYING_``).

    A superset of Spark's own rule, so that no file is read twice: these are read by :func:`_hidden_files`.
    """
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return name.startswith(("_", ".")) or name.endswith("._COPYING_")


def read_local_file(path: str) -> Optional[bytes]:
    """The bytes of a local ``file:`` path, or None when it cannot be read (gone, a link loop, no permission)."""
    try:
        with open(local_path(path), "rb") as handle:
            return handle.read()
    except OSError:
        return None


def _hidden_files(spark: SparkSession, images: List[ImageFile]) -> DataFrame:
    """Read hidden-named local files in the Python workers: binaryFile would drop them without a word."""
    frame = listing_frame(spark, images).select("path", "size")
    return frame.select("path", "size", F.udf(read_local_file, BinaryType())("path").alias("content"))


def label_column(path: Column) -> Column:
    """:func:`fruitjob.listing.label_of` as a Spark expression: the name of the folder the file is in."""
    return F.element_at(F.split(path, "/"), -2)


def _binary_files(spark: SparkSession, images_uri: str, images: List[ImageFile]) -> DataFrame:
    """(path, size, content) of the listed images that binaryFile reads (or, for hidden names, Python)."""
    reader = spark.read.format("binaryFile")
    encoded = int(spark.version.split(".")[0]) < 4
    decode = F.udf(lambda p: decode_spark_path(p, encoded), StringType())

    def decoded(frame: DataFrame) -> DataFrame:
        path = decode("path") if encoded else F.col("path")
        return frame.select(path.alias("path"), F.col("length").alias("size"), "content")

    if not is_local(images_uri):
        frame = decoded(
            reader.option("recursiveFileLookup", "true").option("pathGlobFilter", IMAGE_GLOB).load(images_uri)
        )
        # Only what was listed: a file uploaded since then is left for the next run, not half-counted in this one.
        return frame.join(F.broadcast(listing_frame(spark, images).select("path")), on="path", how="left_semi")
    # Exactly the listed, readable files: a recursive lookup would follow link loops.
    readable = [image for image in images if image.size >= 0]
    hidden = [image for image in readable if is_hidden_name(image.path)]
    visible = [image.path for image in readable if not is_hidden_name(image.path)]
    frames = [_hidden_files(spark, hidden)] if hidden else []
    if visible:
        # Spark prints local paths as file:/x, as the listing does; file:/// is normalised just in case.
        frame = reader.load([escape_glob(path) for path in visible])
        frames.append(decoded(frame.withColumn("path", F.regexp_replace("path", "^file:///", "file:/"))))
    if not frames:
        return spark.createDataFrame([], "path string, size long, content binary")
    return frames[0] if len(frames) == 1 else frames[0].unionByName(frames[1])


def read_images(spark: SparkSession, images_uri: str, images: List[ImageFile]) -> DataFrame:
    """(path, label, size, content) of the listed images Spark could read, in binaryFile's own splits.

    No join with the listing: the image bytes are never shuffled nor sent through the driver. Listed images
    that were not read are found afterwards by :func:`unread_images`, so that they are reported, not dropped.
    """
    frame = _binary_files(spark, images_uri, images)
    return frame.select("path", label_column(F.col("path")).alias("label"), "size", "content")


def unread_images(spark: SparkSession, images: List[ImageFile], done: DataFrame) -> DataFrame:
    """(path, label, size, error) of the listed images missing from ``done``, each with its reason."""
    missing = listing_frame(spark, images).join(done.select("path"), on="path", how="left_anti")
    # Spark's file sources read no split of an empty file: it is an empty image, not an unreadable one.
    reason = F.when(F.col("size") == 0, F.lit(EMPTY_FILE)).otherwise(F.lit(UNREADABLE))
    return missing.withColumn("error", reason)


__all__ = ["read_images", "unread_images", "escape_glob", "local_path"]
