"""MobileNetV2 features over Arrow batches (``mapInArrow``); the model is built once per Python worker.

A worker of a TFLite featurizer imports LiteRT, numpy, Pillow, pandas and pyarrow, never TensorFlow: only
``--featurizer keras`` does.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.sql.functions import pandas_udf
from pyspark.sql.types import ArrayType, FloatType, StringType, StructField, StructType

from fruitjob.decoding import UNREADABLE, ImageDecodeError, decode_image
from fruitjob.litert import Engine, engine_threads, interpreter_class
from fruitjob.reading import LISTING_SCHEMA, read_local_file
from fruitjob.rules import FEATURE_DIM, FEATURIZERS, TFLITE_FEATURIZERS
from fruitjob.tflite_engine import tflite_engine
from fruitjob.weights import Weights, load_model

# features/ rows, in their order (layout.FEATURE_COLUMNS): what the featurize pass returns.
FEATURE_SCHEMA = StructType(
    [
        *LISTING_SCHEMA.fields[:3],  # path, label, size
        StructField("features", ArrayType(FloatType()), True),
        *LISTING_SCHEMA.fields[3:],  # modified, etag
        StructField("run_id", StringType(), True),
        StructField("sha256", StringType(), True),
    ]
)
__all__ = [
    "FEATURE_SCHEMA",
    "Engine",
    "engine_threads",
    "featurize_batches",
    "featurize_contents",
    "get_engine",
    "warm_up_workers",
]
WARM_UP_GROUP = "fruitflow-warm-up"
WARM_UP_SUBMIT_TIMEOUT_S = 30.0
_ENGINES: Dict[Tuple[str, str, float], Engine] = {}
log = logging.getLogger("fruitflow.featurizer")


def _keras_engine(weights: Weights, batch_size: int) -> Engine:
    import tensorflow as tf

    threads = engine_threads()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass  # TensorFlow was already initialised in this process (e.g. a test driving it directly)
    from keras.applications.mobilenet_v2 import preprocess_input

    model = load_model(weights)
    infer = tf.function(
        lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec([None, 224, 224, 3], tf.float32)],
    )

    def run(images: np.ndarray) -> np.ndarray:
        outputs = []
        for start in range(0, len(images), batch_size):
            chunk = preprocess_input(images[start : start + batch_size].astype(np.float32))
            outputs.append(infer(tf.constant(chunk)).numpy())
        return np.concatenate(outputs).astype(np.float32)

    return run


def get_engine(weights: Weights, featurizer: str, batch_size: int) -> Engine:
    """The engine for these weights, built on first use in this process and cached after."""
    key = (featurizer, weights.sha256, weights.alpha)
    if key not in _ENGINES:
        if featurizer == "keras":
            _ENGINES[key] = _keras_engine(weights, batch_size)
        elif featurizer in TFLITE_FEATURIZERS:
            _ENGINES[key] = tflite_engine(weights, batch_size, featurizer=featurizer)
        else:
            raise ValueError("unknown featurizer %r; expected one of %s" % (featurizer, ", ".join(FEATURIZERS)))
    return _ENGINES[key]


def _runtime_importer(featurizer: str):
    def import_runtime(ids: pd.Series) -> pd.Series:
        import PIL.Image  # noqa: F401

        if featurizer == "keras":
            import tensorflow  # noqa: F401 - the slow one: 2-4 s on an idle core
        else:
            interpreter_class()  # LiteRT: a fraction of a second
        return pd.Series([os.getpid()] * len(ids))

    return import_runtime


def warm_up_workers(spark, featurizer: str = "tflite") -> threading.Thread:
    """Start a Python worker per task slot and import the featurizer's runtime there, in the background.

    Python workers are reused across tasks (``spark.python.worker.reuse``), so the featurize tasks find them
    ready instead of paying their start (2-3 s on 2 cores: the worker daemon, pandas, pyarrow, LiteRT);
    meanwhile the driver lists the input and resolves the weights. It must be a pandas UDF: plain RDD
    functions run in another pool of workers. The job is planned here and submitted before this returns, so
    Spark's FIFO scheduler runs it ahead of the featurize job (planned in the thread, it was submitted after
    it and only delayed it). Best effort: whatever fails here fails again, and is reported, in the featurize
    stage.
    """
    slots = spark.sparkContext.defaultParallelism
    warm = spark.range(0, slots, 1, slots).select(pandas_udf(_runtime_importer(featurizer), "long")("id"))
    tracker = spark.sparkContext.statusTracker()

    def run() -> None:
        try:
            spark.sparkContext.setJobGroup(WARM_UP_GROUP, "fruitflow: start the Python workers", False)
            warm.collect()
        except Exception as exc:  # noqa: BLE001 - only an optimisation
            log.debug("warming up the Python workers failed: %s", exc)

    earlier = set(tracker.getJobIdsForGroup(WARM_UP_GROUP))  # a session's earlier runs warmed up too
    thread = threading.Thread(target=run, name="fruitflow-warm-up", daemon=True)
    thread.start()
    deadline = time.monotonic() + WARM_UP_SUBMIT_TIMEOUT_S
    while (
        thread.is_alive() and set(tracker.getJobIdsForGroup(WARM_UP_GROUP)) <= earlier and time.monotonic() < deadline
    ):
        time.sleep(0.02)  # until Spark has the job: then it runs before any job submitted after this returns
    return thread


def featurize_contents(
    engine: Engine, contents: List[Optional[bytes]], reasons: Optional[List[Optional[str]]] = None
) -> pd.DataFrame:
    """Features or an error for each image, and the SHA-256 of the bytes read (the same pass: the health stage's
    exact duplicates): an image that fails never fails its neighbours.

    ``reasons`` says why a ``None`` content could not be read (else it is reported as unreadable).
    """
    features: List[Optional[np.ndarray]] = [None] * len(contents)
    errors: List[Optional[str]] = [None] * len(contents)
    hashes: List[Optional[str]] = [None] * len(contents)
    decoded, positions = [], []
    for i, data in enumerate(contents):
        if data is None:
            errors[i] = (reasons[i] if reasons else None) or UNREADABLE
            continue
        hashes[i] = hashlib.sha256(data).hexdigest()
        try:
            decoded.append(decode_image(bytes(data)))
            positions.append(i)
        except ImageDecodeError as exc:
            errors[i] = str(exc)
    if decoded:
        vectors = engine(np.stack(decoded))
        if vectors.shape[1] != FEATURE_DIM:
            raise ValueError("expected %d features per image, the model gave %d" % (FEATURE_DIM, vectors.shape[1]))
        for i, vector in zip(positions, vectors):
            if np.isfinite(vector).all():
                features[i] = vector
            else:
                errors[i] = "model output is not finite"
    return pd.DataFrame({"features": features, "error": errors, "sha256": hashes})


class _TaskTally:
    """What one task featurized and what failed, reported once its last batch is done (``pass_outcome``)."""

    def __init__(self, outcomes) -> None:
        self._outcomes = outcomes
        self._featurized = 0
        self._failures: List[Tuple[str, str]] = []

    def count(self, paths: List[str], result: pd.DataFrame) -> None:
        for path, reason in zip(paths, result["error"]):
            if reason is None:
                self._featurized += 1
            else:
                self._failures.append((path, reason))

    def report(self) -> None:
        from pyspark import TaskContext

        self._outcomes.report(TaskContext.get().partitionId(), self._featurized, self._failures)


def _featurized_rows(batch: pa.RecordBatch, result: pd.DataFrame, run_id: str) -> pa.RecordBatch:
    """The rows of ``batch`` the model took, as features/ has them (``FEATURE_SCHEMA``): failures are left out."""
    ok = result["error"].isna().to_numpy()
    kept = batch.filter(pa.array(ok))
    vectors = [vector for vector, took in zip(result["features"], ok) if took]
    values = np.stack(vectors).astype(np.float32).ravel() if vectors else np.zeros(0, np.float32)
    offsets = np.arange(0, (len(vectors) + 1) * FEATURE_DIM, FEATURE_DIM, dtype=np.int32)
    columns = {
        "features": pa.ListArray.from_arrays(pa.array(offsets), pa.array(values)),
        "run_id": pa.array([run_id] * len(vectors), pa.string()),
        "sha256": pa.array([h for h, took in zip(result["sha256"], ok) if took], pa.string()),
    }
    return pa.RecordBatch.from_arrays(
        [columns[name] if name in columns else kept.column(name) for name in FEATURE_SCHEMA.fieldNames()],
        names=FEATURE_SCHEMA.fieldNames(),
    )


def featurize_batches(weights_broadcast, featurizer: str, batch_size: int, from_paths: bool, run_id: str, outcomes):
    """The function ``DataFrame.mapInArrow`` runs: listed rows in (the listing's columns, plus ``content`` when Spark
    read the bytes; else the worker reads the local ``file:`` paths itself, ``from_paths``), features/ rows out.

    An image the model cannot take is not a row out: each task reports its failures, with their reasons, and how
    many it featurized to ``outcomes`` (``pass_outcome.Outcomes``), read on the driver. So the model runs once per
    image, in the job that writes features/, and nothing downstream filters on its results (a filter on a UDF's
    result is pushed below it by Spark's optimizer, which then runs the UDF twice).
    """

    def featurize(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        engine = get_engine(weights_broadcast.value, featurizer, batch_size)
        tally = _TaskTally(outcomes)
        for batch in batches:
            paths = batch.column("path").to_pylist()
            if from_paths:
                read = [read_local_file(path) for path in paths]
                result = featurize_contents(engine, [data for data, _ in read], [reason for _, reason in read])
            else:
                result = featurize_contents(engine, batch.column("content").to_pylist())
            tally.count(paths, result)
            yield _featurized_rows(batch, result, run_id)
        tally.report()

    return featurize
