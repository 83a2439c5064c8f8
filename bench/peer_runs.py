"""The peers of ``bench/peers.py``, one per process: the same images, decode and model, another framework around them.

    spark-submit bench/peer_runs.py spark --images DIR --output DIR --result FILE [--alpha A] [--batch-size N]
    python bench/peer_runs.py ray|daft --images DIR --output DIR --result FILE --model FILE.tflite [--workers N]

- ``spark``: Spark's own recipe, ``pyspark.ml.functions.predict_batch_udf`` over ``binaryFile``'s content, the
  Keras MobileNetV2 model built once per Python worker (its model cache), ``model.predict`` per batch;
- ``ray``: Ray Data, ``read_binary_files`` then ``map_batches`` with a pool of actors, each holding our float
  TFLite engine (``fruitjob.tflite_engine.tflite_engine``, one thread);
- ``daft``: Daft, ``from_glob_path`` and ``url.download`` then a ``daft.cls`` UDF class with the same engine.
Every peer decodes with ``fruitjob.decoding.decode_image`` (what our workers run) and writes path + features to
Parquet. ``featurize_s`` runs from the first read to the last feature written (framework start-up excluded, as
the featurize stage of our job excludes the session's).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

STARTED = time.monotonic()
SUFFIXES = ("jpg", "jpeg", "png")


def featurize_batch(engine, contents) -> np.ndarray:
    from fruitjob.decoding import decode_image

    return engine(np.stack([decode_image(bytes(c)) for c in contents]))


def make_engine(model: str, alpha: float, batch_size: int):
    from fruitjob.tflite_engine import tflite_engine
    from fruitjob.weights import Weights

    weights = Weights("random", alpha, b"", ".h5", tflite=Path(model).read_bytes(), digest="bench-peer")
    return tflite_engine(weights, batch_size, threads=1)


def run_spark(args) -> dict:
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql import SparkSession
    from pyspark.sql.types import ArrayType, FloatType

    spark = SparkSession.builder.appName("fruitflow-bench-predict-batch-udf").getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    alpha = args.alpha

    def make_predict_fn():
        import keras
        from keras.applications.mobilenet_v2 import preprocess_input

        from fruitjob.decoding import decode_image

        keras.utils.set_random_seed(0)
        model = keras.applications.MobileNetV2(
            input_shape=(224, 224, 3), alpha=alpha, include_top=False, pooling="avg", weights=None
        )

        def predict(contents: np.ndarray) -> np.ndarray:
            images = np.stack([decode_image(bytes(c)) for c in contents]).astype(np.float32)
            return model.predict(preprocess_input(images), verbose=0)

        return predict

    featurize = predict_batch_udf(make_predict_fn, return_type=ArrayType(FloatType()), batch_size=args.batch_size)
    started = time.monotonic()
    images = (
        spark.read.format("binaryFile")
        .option("pathGlobFilter", "*.jpg")
        .option("recursiveFileLookup", "true")
        .load(args.images)
    )
    images.select("path", featurize("content").alias("features")).write.mode("overwrite").parquet(args.output)
    featurize_s = time.monotonic() - started
    count = spark.read.parquet(args.output).count()
    partitions = images.rdd.getNumPartitions()
    spark.stop()
    return {"featurize_s": featurize_s, "images": count, "partitions": partitions}


def run_ray(args) -> dict:
    import ray

    # Logical CPUs: one per actor, plus one for the read tasks (else they wait for an actor's CPU).
    ray.init(num_cpus=args.workers + 1, include_dashboard=False, log_to_driver=False, object_store_memory=2 * 2**30)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    model, alpha, engine_batch = args.model, args.alpha, args.engine_batch

    class Featurizer:
        def __init__(self) -> None:
            self.engine = make_engine(model, alpha, engine_batch)

        def __call__(self, batch: dict) -> dict:
            return {"path": batch["path"], "features": featurize_batch(self.engine, batch["bytes"])}

    started = time.monotonic()
    dataset = ray.data.read_binary_files(args.images, include_paths=True, file_extensions=list(SUFFIXES))
    dataset = dataset.map_batches(
        Featurizer,
        compute=ray.data.ActorPoolStrategy(size=args.workers),
        num_cpus=1,
        batch_size=args.batch_size,
        batch_format="numpy",
    )
    dataset.write_parquet(args.output)
    featurize_s = time.monotonic() - started
    count = ray.data.read_parquet(args.output).count()
    ray.shutdown()
    return {"featurize_s": featurize_s, "images": count, "actors": args.workers, "ray": ray.__version__}


def run_daft(args) -> dict:
    import daft
    import pyarrow as pa
    from daft import DataType, col
    from daft.functions import download

    model, alpha, engine_batch = args.model, args.alpha, args.engine_batch

    @daft.cls(cpus=1, max_concurrency=args.workers, use_process=True)
    class Featurizer:
        def __init__(self) -> None:
            self.engine = make_engine(model, alpha, engine_batch)

        @daft.method.batch(return_dtype=DataType.fixed_size_list(DataType.float32(), 1280), batch_size=args.batch_size)
        def featurize(self, contents: daft.Series):
            features = featurize_batch(self.engine, contents.to_pylist())
            return pa.FixedSizeListArray.from_arrays(pa.array(features.reshape(-1)), 1280)

    started = time.monotonic()
    frame = daft.from_glob_path(["%s/**/*.%s" % (args.images.rstrip("/"), suffix) for suffix in SUFFIXES])
    frame = frame.with_column("bytes", download(col("path")))
    frame = frame.select("path", Featurizer().featurize(col("bytes")).alias("features"))
    frame.write_parquet(args.output)
    featurize_s = time.monotonic() - started
    count = daft.read_parquet(args.output).count_rows()
    return {"featurize_s": featurize_s, "images": count, "actors": args.workers, "daft": daft.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("peer", choices=("spark", "ray", "daft"))
    parser.add_argument("--images", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--result", required=True)
    parser.add_argument("--model", help="the float TFLite flatbuffer (ray, daft)")
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--batch-size", type=int, default=64, help="rows per UDF / map_batches call")
    parser.add_argument("--engine-batch", type=int, default=4, help="images per engine call (ray, daft)")
    args = parser.parse_args()
    result = {"spark": run_spark, "ray": run_ray, "daft": run_daft}[args.peer](args)
    result.update(featurize_s=round(result["featurize_s"], 3), process_s=round(time.monotonic() - STARTED, 3))
    Path(args.result).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
