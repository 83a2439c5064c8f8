"""Spark settings sized to the run: partitions, Arrow batches, file splits."""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator, Optional

from pyspark.sql import SparkSession

from fruitjob.options import JobOptions
from fruitjob.rules import is_local

IMAGES_PER_PARTITION = 2000
PAGE_CHECKSUMS = "parquet.page.write-checksum.enabled"


@contextmanager
def spark_setting(spark: SparkSession, key: str, value: str) -> Iterator[None]:
    """``key`` set to ``value`` for the queries planned inside (Spark reads most SQL settings when it plans), then
    restored, or unset where it was not set."""
    previous = spark.conf.get(key, None)
    spark.conf.set(key, value)
    try:
        yield
    finally:
        if previous is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, previous)


def partitions_for(spark: SparkSession, images: int, asked: Optional[int]) -> int:
    if asked:
        return asked
    slots = spark.sparkContext.defaultParallelism
    return slots * max(1, math.ceil(images / float(slots * IMAGES_PER_PARTITION)))


def configure(spark: SparkSession, opts: JobOptions, partitions: int) -> None:
    conf = spark.conf
    # Small Arrow batches: a batch holds encoded and decoded images in the worker's memory (64 decoded
    # 224x224 images are ~10 MB); fewer than that only add per-batch overhead.
    conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(max(opts.batch_size * 4, 64)))
    conf.set("spark.sql.shuffle.partitions", str(partitions))
    # toPandas() through Arrow (the feature-quality sample: 5,000 x 1,280 floats); Spark falls back if it cannot.
    conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
    # Images are small on disk but costly to featurize: never merge partitions because they are few bytes.
    conf.set("spark.sql.adaptive.coalescePartitions.enabled", "false")
    # binaryFile packs files into splits by bytes, each file costing openCostInBytes (4 MB) on top of its size:
    # with small images that is by count. Ask for `partitions` splits, whatever the total size.
    conf.set("spark.sql.files.minPartitionNum", str(partitions))
    conf.set("spark.sql.files.maxPartitionBytes", str(1 << 40))
    # A file that vanishes between listing and reading is reported in errors/ (unread_images), not fatal.
    conf.set("spark.sql.files.ignoreMissingFiles", "true")
    # binaryFile skips an object it cannot read (S3 Glacier class, KMS denied, permission) instead of failing the
    # job; it comes back as an errors/ row through unread_images.
    conf.set("spark.sql.files.ignoreCorruptFiles", "true")
    # A CRC32 in every Parquet page header, so that a byte flipped on disk or in transit fails validation's read
    # (pyarrow verifies them) instead of passing as a slightly different feature. Hadoop's .crc side files do not
    # travel to S3 and pyarrow never reads them. On by default in parquet-mr 1.13.1 (Spark 3.5) and 1.17.0 (Spark
    # 4.3), both seen; set here so that no cluster default turns it off. Spark copies session settings into the
    # Hadoop configuration of every write.
    conf.set(PAGE_CHECKSUMS, "true")
    if is_local(opts.images):
        # binaryFile gets one path per listed image; above this threshold Spark lists them in a job of one task
        # per path (~25 ms each: 100 s for 4,000 images). Listing local files on the driver takes milliseconds.
        conf.set("spark.sql.sources.parallelPartitionDiscovery.threshold", str(2**31 - 1))
