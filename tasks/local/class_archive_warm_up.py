"""The Spark session whose classes go into the driver JVM's class-data archive (tasks/local/class_archive.py).

It does what every run of the job does first: start, plan, run a Python task over Arrow, write and read Parquet.
Usage: spark-submit class_archive_warm_up.py SCRATCH_FOLDER
"""

import sys

from pyspark.sql import SparkSession


def _same(frames):
    yield from frames


def main(scratch: str) -> None:
    spark = SparkSession.builder.appName("fruitflow-class-archive").getOrCreate()
    frame = spark.range(100).selectExpr("id", "cast(id as string) as path")
    try:  # a Python task over Arrow, where pandas is there (a bare cluster node's Python has only pyspark)
        frame.mapInPandas(_same, "id long, path string").collect()
    except Exception:  # noqa: BLE001 - the archive is made from what this Python can run
        pass
    frame.write.mode("overwrite").parquet(f"{scratch}/warm-up")
    spark.read.parquet(f"{scratch}/warm-up").groupBy("path").count().collect()
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1])
