"""The usual approach, as the baseline of ``featurize_bench.py``: Keras ``predict`` in an iterator pandas UDF.

This is the original notebook's (and Databricks' transfer-learning recipe's) way, with Spark's default
settings: ``binaryFile`` with a recursive lookup, the weights broadcast from the driver, the model built
at the start of every task, images resized with PIL and fed to ``model.predict``. Run by spark-submit::

    spark-submit bench/reference_udf.py --images DIR --output DIR --result FILE.json [--alpha 1.0]

``--startup-only`` measures Spark's fixed cost: start a session, run a one-row job, stop.
"""

import argparse
import io
import json
import time
from collections.abc import Iterator

STARTED = time.monotonic()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images")
    parser.add_argument("--output")
    parser.add_argument("--result", required=True)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--startup-only", action="store_true")
    args = parser.parse_args()

    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName("fruitflow-bench-reference").getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    spark.range(1).count()
    result: dict = {"session_s": round(time.monotonic() - STARTED, 3)}
    if not args.startup_only:
        result.update(featurize(spark, args))
    spark.stop()
    with open(args.result, "w") as handle:
        json.dump(result, handle)


def featurize(spark, args) -> dict:
    import keras
    import numpy as np
    import pandas as pd
    from pyspark.sql.functions import col, pandas_udf

    alpha = args.alpha

    def build():
        return keras.applications.MobileNetV2(
            input_shape=(224, 224, 3), alpha=alpha, include_top=False, pooling="avg", weights=None
        )

    keras.utils.set_random_seed(args.seed)
    weights = spark.sparkContext.broadcast(build().get_weights())

    @pandas_udf("array<float>")
    def featurize_udf(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        from keras.applications.mobilenet_v2 import preprocess_input
        from PIL import Image

        model = build()
        model.set_weights(weights.value)
        for contents in batches:
            arrays = [
                np.asarray(Image.open(io.BytesIO(c)).convert("RGB").resize([224, 224]), dtype=np.float32)
                for c in contents
            ]
            predictions = model.predict(preprocess_input(np.stack(arrays)), verbose=0)
            yield pd.Series([p.flatten() for p in predictions])

    started = time.monotonic()
    images = (
        spark.read.format("binaryFile")
        .option("pathGlobFilter", "*.jpg")
        .option("recursiveFileLookup", "true")
        .load(args.images)
    )
    images.select(col("path"), featurize_udf("content").alias("features")).write.mode("overwrite").parquet(args.output)
    featurize_s = time.monotonic() - started
    count = spark.read.parquet(args.output).count()
    return {"featurize_s": round(featurize_s, 3), "images": count, "partitions": images.rdd.getNumPartitions()}


if __name__ == "__main__":
    main()
