"""The centred PCA pipeline saved twice, by Spark ML's own ``save`` and by ``fruitjob.pipeline_files``, and what differs
between the two folders, field by field (timestamps and write ids aside).

Imported by tests/test_pipeline_files.py on this Spark, and run as a script by the EMR parity environment's Python 3.9
and Spark 3.5 (``python tests/spark_ml_files.py FOLDER`` with ``spark_jobs`` on ``PYTHONPATH``: it prints the
differences as JSON). So it stays Python 3.9 code.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

WRITE_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TIMESTAMP = re.compile(r'"timestamp":\d+')


def fitted_pipeline(spark):
    """StandardScaler (centring only) then PCA, fitted by Spark ML on a few random rows: the job's model's shape."""
    import numpy as np
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import PCA, StandardScaler
    from pyspark.ml.linalg import Vectors

    rows = [(Vectors.dense(row.tolist()),) for row in np.random.default_rng(0).normal(size=(20, 6))]
    centring = StandardScaler(inputCol="features", outputCol="centred", withMean=True, withStd=False)
    pca = PCA(k=3, inputCol="centred", outputCol="pcv")
    return Pipeline(stages=[centring, pca]).fit(spark.createDataFrame(rows, ["features"]))


def _files(folder: Path) -> dict:
    """Relative name (write ids masked) -> path, of the files a reader goes by (no checksums)."""
    return {
        WRITE_ID.sub("<id>", str(path.relative_to(folder))): path
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.name.endswith(".crc")
    }


def _parquet_fields(path: Path) -> dict:
    """What Spark's reader goes by in a Parquet file: the footer's key-value metadata, the columns' schema, the rows."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(str(path))
    columns = [parquet.schema.column(i) for i in range(len(parquet.schema))]
    return {
        "key_value_metadata": {k.decode(): v.decode() for k, v in (parquet.metadata.metadata or {}).items()},
        "columns": [
            [c.path, c.physical_type, str(c.logical_type), c.max_definition_level, c.max_repetition_level]
            for c in columns
        ],
        "num_row_groups": parquet.metadata.num_row_groups,
        "rows": parquet.read().to_pylist(),
    }


def differences(theirs: Path, ours: Path) -> list:
    """Every difference between the two saved folders, as readable lines; none when they agree."""
    found = []
    their_files, our_files = _files(theirs), _files(ours)
    if sorted(their_files) != sorted(our_files):
        found.append("files: Spark ML %s, ours %s" % (sorted(their_files), sorted(our_files)))
    for name in sorted(set(their_files) & set(our_files)):
        if name.endswith(".parquet"):
            theirs_fields, ours_fields = _parquet_fields(their_files[name]), _parquet_fields(our_files[name])
            for field in theirs_fields:
                if theirs_fields[field] != ours_fields[field]:
                    found.append(
                        "%s %s: Spark ML %r, ours %r" % (name, field, theirs_fields[field], ours_fields[field])
                    )
        else:
            their_text = TIMESTAMP.sub('"timestamp":0', their_files[name].read_text())
            our_text = TIMESTAMP.sub('"timestamp":0', our_files[name].read_text())
            if their_text != our_text:
                found.append("%s: Spark ML %r, ours %r" % (name, their_text, our_text))
    return found


def save_both(spark, folder: Path):
    """The pipeline saved by Spark ML under ``folder/spark_ml`` and by ``pipeline_files`` under ``folder/ours``."""
    from fruitjob.pipeline_files import save_pipeline

    model = fitted_pipeline(spark)
    model.write().save(str(folder / "spark_ml"))
    save_pipeline(spark, model, str(folder / "ours"))
    return folder / "spark_ml", folder / "ours"


if __name__ == "__main__":
    from pyspark.sql import SparkSession

    session = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false").getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    print(json.dumps({"spark": session.version, "differences": differences(*save_both(session, Path(sys.argv[1])))}))
