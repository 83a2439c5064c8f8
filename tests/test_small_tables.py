"""Tables the driver writes as one Parquet file (``fruitjob.small_tables``: errors/, health/outliers,
health/mislabels): complete as a Spark dataset is, replacing the last run's, with page checksums as the Spark writes."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import read_parquet


def _table(rows: int) -> pa.Table:
    return pa.table({"path": ["images/%04d.jpg" % k for k in range(rows)], "error": ["no such image"] * rows})


def test_a_small_table_replaces_the_last_one_and_is_complete(spark, tmp_path):
    from fruitjob.completeness import dataset_complete
    from fruitjob.small_tables import write_table

    uri = str(tmp_path / "errors")
    (tmp_path / "errors").mkdir()
    (tmp_path / "errors" / "part-00003-of-the-last-run.parquet").write_bytes(b"an older run's part")
    write_table(spark, uri, _table(3))
    assert sorted(p.name for p in Path(uri).iterdir() if not p.name.startswith(".")) == [
        "_SUCCESS",
        "part-00000.parquet",
    ]
    assert dataset_complete(spark, uri)
    assert list(spark.read.parquet(uri).toPandas()["path"]) == ["images/%04d.jpg" % k for k in range(3)]


def test_a_small_table_carries_page_checksums(spark, tmp_path):
    """A bit flipped inside a page's data, where a reader that skips checksums reads a changed value silently, fails
    the CRC: validation reads every table with the checksums verified."""
    from fruitjob.small_tables import write_table

    write_table(spark, str(tmp_path / "t"), _table(200))
    part = tmp_path / "t" / "part-00000.parquet"
    original, data = pq.read_table(part), bytearray(part.read_bytes())
    chunk = pq.read_metadata(part).row_group(0).column(0)
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    for offset in range(start + chunk.total_compressed_size // 2, start + chunk.total_compressed_size):
        data[offset] ^= 0x01
        part.write_bytes(bytes(data))
        try:
            silently = not pq.read_table(part, page_checksum_verification=False).equals(original)
        except OSError:
            silently = False
        if silently:
            break
        data[offset] ^= 0x01
    else:
        pytest.fail("no byte of the page data changes a value silently")
    with pytest.raises(OSError, match="CRC checksum verification failed"):
        pq.read_table(part, page_checksum_verification=True)


def test_the_jobs_errors_are_one_file_of_the_documented_columns(job_output):
    from fruitjob import layout

    files = sorted(p.name for p in (job_output / "errors").iterdir() if not p.name.startswith("."))
    assert files == ["_SUCCESS", "part-00000.parquet"]
    errors = read_parquet(job_output, "errors")
    assert list(errors.columns) == layout.ERROR_COLUMNS and len(errors) == 1
    assert errors["size"].dtype == "int64" and errors["size"].iloc[0] == len("this is not a jpeg")
