"""Tables of at most a row per image, written by the driver as one Parquet file and ``_SUCCESS``: no Spark job.

errors/ and the health stage's outliers/ and mislabels/ are such tables: their rows are on the driver already, and a
Spark write of them (a job, its tasks, a commit) cost 0.5-0.8 s of idle cores each on a small output. The folder is
complete the way a Spark dataset is (``completeness``): ``_SUCCESS`` is written last, and a killed write leaves a
folder without it, which the next run removes.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import SparkSession

from fruitjob import layout, storage
from fruitjob.completeness import SUCCESS

PART = "part-00000.parquet"


def write_table(spark: SparkSession, uri: str, table: pa.Table) -> None:
    """``table`` as the dataset ``uri`` (one file), replacing what was there."""
    buffer = pa.BufferOutputStream()
    # a CRC32 in every page header, as the job's Spark writes have (tuning.PAGE_CHECKSUMS)
    pq.write_table(table, buffer, write_page_checksum=True)
    storage.delete(spark, uri)
    storage.write_bytes(spark, layout.child(uri, PART), buffer.getvalue().to_pybytes())
    storage.write_bytes(spark, layout.child(uri, SUCCESS), b"")


__all__ = ["PART", "write_table"]
