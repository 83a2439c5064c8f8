"""A centred PCA's Spark ML ``PipelineModel`` saved as the very files Spark ML's own save writes, from the driver.

``model.write().save(uri)`` runs five small Spark jobs (the metadata of the pipeline and of each stage as text, each
stage's data as Parquet), ~3 s on 2 busy cores for a few KB. The same folder is written here as plain files:

- ``metadata/`` and ``stages/<i>_<uid>/metadata/``: one JSON line each, made by the JVM's own
  ``DefaultParamsWriter.getMetadataToSave`` (the params as the running Spark names them), in a file named as that
  Spark's save names it (``part-00000`` before Spark 4, from ``saveAsTextFile``; ``part-00000-<uuid>-c000.txt`` from
  Spark 4's text writer);
- ``stages/<i>_<uid>/data/part-00000-<uuid>-c000.snappy.parquet``: one row, written by pyarrow with the Spark schema
  (vector and matrix UDTs) in the footer as the running Spark serialises it, where Spark's reader takes it from;
- ``_SUCCESS`` in each folder once its part is there (``completeness.model_problem``).

``PipelineModel.load`` reads it on Spark 3.5 and 4.x as one it saved itself; the metadata, the footer's key-value
metadata, the Parquet schema and the rows equal Spark ML's own save's on both (tests/test_pipeline_files.py). What
differs is the writer's own: ``created_by``, the format version, encodings, and the Parquet root's name (``schema``,
where parquet-mr writes ``spark_schema``), which no reader goes by.
"""

from __future__ import annotations

import io
import json
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.ml import PipelineModel
from pyspark.ml.feature import PCAModel, StandardScalerModel
from pyspark.ml.linalg import MatrixUDT, VectorUDT
from pyspark.sql import SparkSession
from pyspark.sql.types import StructField, StructType

from fruitjob import storage
from fruitjob.completeness import SUCCESS

SPARK_SCHEMA_KEY = b"org.apache.spark.sql.parquet.row.metadata"
SPARK_VERSION_KEY = b"org.apache.spark.version"
# Spark's VectorUDT and MatrixUDT as stored (sqlType), dense only: type 1.
_VECTOR = pa.struct(
    [
        pa.field("type", pa.int8(), nullable=False),
        pa.field("size", pa.int32()),
        pa.field("indices", pa.list_(pa.field("element", pa.int32(), nullable=False))),
        pa.field("values", pa.list_(pa.field("element", pa.float64(), nullable=False))),
    ]
)
_MATRIX = pa.struct(
    [
        pa.field("type", pa.int8(), nullable=False),
        pa.field("numRows", pa.int32(), nullable=False),
        pa.field("numCols", pa.int32(), nullable=False),
        pa.field("colPtrs", pa.list_(pa.field("element", pa.int32(), nullable=False))),
        pa.field("rowIndices", pa.list_(pa.field("element", pa.int32(), nullable=False))),
        pa.field("values", pa.list_(pa.field("element", pa.float64(), nullable=False))),
        pa.field("isTransposed", pa.bool_(), nullable=False),
    ]
)


def _dense_vector(values: np.ndarray) -> dict:
    return {"type": 1, "size": None, "indices": None, "values": [float(v) for v in values]}


def _dense_matrix(rows: int, columns: int, column_major: np.ndarray) -> dict:
    values = [float(v) for v in column_major]
    return {
        "type": 1,
        "numRows": rows,
        "numCols": columns,
        "colPtrs": None,
        "rowIndices": None,
        "values": values,
        "isTransposed": False,
    }


def _data_file(spark: SparkSession, names, values) -> bytes:
    """One row of dense vectors and matrices as Spark writes a model's data: the UDTs' storage types as columns, and
    the Spark schema (the UDTs themselves) in the footer, which Spark's reader goes by."""
    kinds = {"pc": (_MATRIX, MatrixUDT())}
    types = [kinds.get(name, (_VECTOR, VectorUDT())) for name in names]
    spark_schema = _as_spark_writes(
        spark, StructType([StructField(name, udt, True) for name, (_, udt) in zip(names, types)])
    )
    schema = pa.schema([pa.field(name, kind) for name, (kind, _) in zip(names, types)])
    table = pa.Table.from_pylist([dict(zip(names, values))], schema=schema)
    buffer = io.BytesIO()
    # The footer holds Spark's two keys and no ARROW:schema (store_schema=False drops the schema's metadata with it).
    with pq.ParquetWriter(buffer, schema, compression="snappy", store_schema=False) as writer:
        writer.write_table(table)
        writer.add_key_value_metadata(
            {SPARK_SCHEMA_KEY: spark_schema.encode(), SPARK_VERSION_KEY: spark.version.encode()}
        )
    return buffer.getvalue()


def _as_spark_writes(spark: SparkSession, schema: StructType) -> str:
    """``schema``'s JSON as the JVM writes it into a Parquet footer: its key order, not pyspark's sorted keys."""
    return spark.sparkContext._jvm.org.apache.spark.sql.types.DataType.fromJson(schema.json()).json()


def _part(suffix: str) -> str:
    """The name Spark gives the one file of a single-partition write (a new write id each, as each save is a job)."""
    return "part-00000-%s-c000%s" % (uuid.uuid4(), suffix)


def _metadata_part(spark: SparkSession) -> str:
    """Spark ML's metadata file: ``saveAsTextFile``'s ``part-00000`` before Spark 4, the text writer's from 4 on."""
    return "part-00000" if int(spark.version.split(".")[0]) < 4 else _part(".txt")


def _metadata(spark: SparkSession, java_params) -> dict:
    """The metadata JSON Spark ML's save would write for ``java_params`` (a JVM ``Params``), as a dict."""
    jvm, sc = spark.sparkContext._jvm, spark.sparkContext._jsc.sc()
    none = jvm.scala.Option.empty()
    return json.loads(jvm.org.apache.spark.ml.util.DefaultParamsWriter.getMetadataToSave(java_params, sc, none, none))


def _write_part(spark: SparkSession, folder: str, name: str, data: bytes) -> None:
    storage.write_bytes(spark, folder + "/" + name, data)
    storage.write_bytes(spark, folder + "/" + SUCCESS, b"")


def _json_line(record: dict) -> bytes:
    return (json.dumps(record, separators=(",", ":")) + "\n").encode()


def is_scaler_then_pca(model: PipelineModel) -> bool:
    stages = model.stages
    return len(stages) == 2 and isinstance(stages[0], StandardScalerModel) and isinstance(stages[1], PCAModel)


def save_pipeline(spark: SparkSession, model: PipelineModel, uri: str) -> None:
    """Save ``model`` (StandardScalerModel, then PCAModel: ``is_scaler_then_pca``) to ``uri``, replacing what is
    there, in the order Spark ML's save takes (the pipeline's metadata first); no Spark job."""
    if not is_scaler_then_pca(model):
        raise TypeError("expected StandardScalerModel then PCAModel, got %s" % [type(s).__name__ for s in model.stages])
    scaler, pca = model.stages
    uri = uri.rstrip("/")
    storage.delete(spark, uri)
    for stage in model.stages:
        stage._transfer_params_to_java()
    pipeline = _metadata(spark, model._to_java())
    pipeline["paramMap"] = {"stageUids": [scaler.uid, pca.uid]}
    _write_part(spark, uri + "/metadata", _metadata_part(spark), _json_line(pipeline))
    matrix = pca.pc
    data = {
        scaler.uid: (["std", "mean"], [_dense_vector(scaler.std.toArray()), _dense_vector(scaler.mean.toArray())]),
        pca.uid: (
            ["pc", "explainedVariance"],
            [
                _dense_matrix(matrix.numRows, matrix.numCols, matrix.toArray().ravel(order="F")),
                _dense_vector(pca.explainedVariance.toArray()),
            ],
        ),
    }
    for index, stage in enumerate(model.stages):
        folder = "%s/stages/%d_%s" % (uri, index, stage.uid)
        _write_part(spark, folder + "/metadata", _metadata_part(spark), _json_line(_metadata(spark, stage._java_obj)))
        names, values = data[stage.uid]
        _write_part(spark, folder + "/data", _part(".snappy.parquet"), _data_file(spark, names, values))


__all__ = ["is_scaler_then_pca", "save_pipeline"]
