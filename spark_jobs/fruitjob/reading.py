"""Reading image bytes with Spark's ``binaryFile`` source, for exactly the listed images."""

from __future__ import annotations

from typing import List

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StringType, StructField, StructType

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


def _binary_files(spark: SparkSession, images_uri: str, images: List[ImageFile]) -> DataFrame:
    reader = spark.read.format("binaryFile")
    if is_local(images_uri):
        # Exactly the listed, readable files: a recursive lookup would follow link loops.
        readable = [image.path for image in images if image.size >= 0]
        if not readable:
            return spark.createDataFrame([], "path string, content binary")
        frame = reader.load([escape_glob(path) for path in readable])
    else:
        frame = reader.option("recursiveFileLookup", "true").option("pathGlobFilter", IMAGE_GLOB).load(images_uri)
    encoded = int(spark.version.split(".")[0]) < 4
    decode = F.udf(lambda p: decode_spark_path(p, encoded), StringType())
    if is_local(images_uri):
        # Spark prints local paths as file:/x; ours are file:/x too, but normalise file:/// just in case.
        frame = frame.withColumn("path", F.regexp_replace("path", "^file:///", "file:/"))
    return frame.select(decode("path").alias("path") if encoded else F.col("path"), "content")


def read_images(spark: SparkSession, images_uri: str, images: List[ImageFile]) -> DataFrame:
    """(path, label, size, content) for every listed image; content is null where it could not be read."""
    listing = listing_frame(spark, images)
    content = _binary_files(spark, images_uri, images)
    return listing.join(content, on="path", how="left")


__all__ = ["read_images", "escape_glob", "local_path"]
