"""Reading image bytes with Spark's ``binaryFile`` source, for exactly the listed images."""

from __future__ import annotations

from typing import List, Optional

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BinaryType, LongType, StringType, StructField, StructType

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


def _hidden_files(spark: SparkSession, paths: List[str]) -> DataFrame:
    """Read hidden-named local files in the Python workers: binaryFile would drop them without a word."""
    frame = spark.createDataFrame([(path,) for path in paths], "path string")
    return frame.select("path", F.udf(read_local_file, BinaryType())("path").alias("content"))


def _binary_files(spark: SparkSession, images_uri: str, images: List[ImageFile]) -> DataFrame:
    reader = spark.read.format("binaryFile")
    encoded = int(spark.version.split(".")[0]) < 4
    decode = F.udf(lambda p: decode_spark_path(p, encoded), StringType())

    def decoded(frame: DataFrame) -> DataFrame:
        return frame.select(decode("path").alias("path") if encoded else F.col("path"), "content")

    if not is_local(images_uri):
        return decoded(
            reader.option("recursiveFileLookup", "true").option("pathGlobFilter", IMAGE_GLOB).load(images_uri)
        )
    # Exactly the listed, readable files: a recursive lookup would follow link loops.
    readable = [image.path for image in images if image.size >= 0]
    hidden = [path for path in readable if is_hidden_name(path)]
    visible = [path for path in readable if not is_hidden_name(path)]
    frames = [_hidden_files(spark, hidden)] if hidden else []
    if visible:
        # Spark prints local paths as file:/x, as the listing does; file:/// is normalised just in case.
        frame = reader.load([escape_glob(path) for path in visible])
        frames.append(decoded(frame.withColumn("path", F.regexp_replace("path", "^file:///", "file:/"))))
    if not frames:
        return spark.createDataFrame([], "path string, content binary")
    return frames[0] if len(frames) == 1 else frames[0].unionByName(frames[1])


def read_images(spark: SparkSession, images_uri: str, images: List[ImageFile]) -> DataFrame:
    """(path, label, size, content) for every listed image; content is null where it could not be read.

    The image bytes are the streamed side (an inner join with the small listing keeps binaryFile's splits
    and never sends bytes through the driver); listed files that Spark did not read are added back with no
    content, so that they are reported, not dropped.
    """
    listing = listing_frame(spark, images)
    content = _binary_files(spark, images_uri, images)
    read = content.join(listing, on="path", how="inner").select("path", "label", "size", "content")
    unread = listing.join(content.select("path"), on="path", how="left_anti")
    # Spark's file sources read no split of an empty file: it is an empty image, not an unreadable one.
    empty = F.when(F.col("size") == 0, F.lit(bytearray())).otherwise(F.lit(None).cast(BinaryType()))
    return read.unionByName(unread.withColumn("content", empty))


__all__ = ["read_images", "escape_glob", "local_path"]
