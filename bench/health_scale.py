"""The health stage's similarity search at scale: the job's two searches (fruitjob/similarity.py: the blocked exact
one and the SimHash LSH over blocked buckets) and Spark ML's BucketedRandomProjectionLSH.approxSimilarityJoin; time
and each LSH's recall (the truth: the exact search's pairs where it ran, else the planted pairs).

The rows start from a real features/ folder (``--features``, e.g. a run over ../shared/data/fruits-360-sample): row
``i`` is real vector ``i mod N`` made unit and moved by Gaussian noise of norm ``NOISE`` (two rows of the same real
vector: cosine ~0.8, below any threshold), and one row in ``COPY_EVERY`` is a near copy of the row before it (noise
norm ``COPY_NOISE``, cosine ~0.995), and one row in ``COPY_EVERY`` (offset by half) a copy of the row before it at a
cosine drawn between ``--threshold`` + 0.0005 and + 0.01 (noise orthogonal to the row): pairs at the threshold, where
an LSH misses most. No feature reaches the driver.

    .venv/bin/python bench/health_scale.py --features OUTPUT/features --sizes 4000 24000 100000 --repeats 3

Runs of the methods are interleaved (exact, lsh, exact, lsh, ...) and the medians reported; ``--no-exact-above N``
skips the exact search above N rows (it is quadratic); ``--bucket-load`` only computes the LSH's plan and leaves
(numpy on the driver): how evenly they are filled, the pairs they multiply and the recall at the threshold.
Results: docs/performance.md, "Dataset health".
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.ml.feature import BucketedRandomProjectionLSH
from pyspark.ml.functions import array_to_vector
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, FloatType, LongType, StringType, StructField, StructType

from fruitjob import simhash
from fruitjob.block_search import BLOCK_ROWS, ITEM_COLUMNS
from fruitjob.similarity import METHOD, METHOD_LSH, candidate_pairs, capped

NOISE = 0.5
COPY_NOISE = 0.1
COPY_EVERY = 100
AT_THRESHOLD = COPY_EVERY // 2 - 1  # i % COPY_EVERY: a copy of the row before at a cosine just above the threshold
SPARK_ML = "spark-ml-lsh"
_ROWS = StructType(
    [
        StructField("id", LongType(), False),
        StructField("path", StringType(), False),
        StructField("label", StringType(), False),
        StructField("features", ArrayType(FloatType()), False),
    ]
)


def _unit(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.maximum(np.linalg.norm(matrix, axis=-1, keepdims=True), 1e-12)


def _near_threshold(i: int, threshold: float) -> float:
    """The cosine planted between row ``i`` (i % COPY_EVERY == AT_THRESHOLD) and the row before it."""
    return threshold + 0.0005 + 0.0095 * np.random.default_rng([i, 1]).random()


def _noisy(base: np.ndarray, labels: list[str], threshold: float):
    """Rows of ids as described above, made in the workers from the real vectors (broadcast in the closure)."""
    unit_base = _unit(base.astype(np.float64))

    def vector(i: int) -> np.ndarray:
        rng = np.random.default_rng(i)
        noise = rng.normal(size=unit_base.shape[1])
        if i % COPY_EVERY == COPY_EVERY - 1:
            return _unit(vector(i - 1) + COPY_NOISE * _unit(noise))
        if i % COPY_EVERY == AT_THRESHOLD:
            before = vector(i - 1)
            across = _unit(noise - (noise @ before) * before)
            cosine = _near_threshold(i, threshold)
            return _unit(before + np.sqrt(1.0 / cosine**2 - 1.0) * across)
        return _unit(unit_base[i % len(unit_base)] + NOISE * _unit(noise))

    def make(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in frames:
            ids = frame["id"].to_numpy()
            yield pd.DataFrame(
                {
                    "id": ids,
                    "path": ["img/%08d.jpg" % i for i in ids],
                    "label": [labels[i % len(labels)] for i in ids],
                    "features": [vector(int(i)).astype(np.float32) for i in ids],
                }
            )

    return make


def seed_rows(features: str, threshold: float):
    """:func:`_noisy`'s maker over the real vectors of ``features`` (a few thousand rows), in the order of their paths:
    the same rows for the Spark runs and the numpy counts."""
    real = pd.read_parquet(features, columns=["path", "label", "features"]).sort_values("path", kind="mergesort")
    return _noisy(np.stack(real["features"].map(np.asarray).to_list()), list(real["label"]), threshold)


def rows(spark: SparkSession, features: str, n: int, threshold: float) -> DataFrame:
    make = seed_rows(features, threshold)
    frame = spark.range(n).repartition(max(2, n // 4000)).mapInPandas(make, _ROWS)
    return frame.persist()


def planted(n: int) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """The planted pairs (path, other_path): all of them, and those at the threshold."""
    name = "img/%08d.jpg"
    copies = [i for i in range(n) if i % COPY_EVERY in (COPY_EVERY - 1, AT_THRESHOLD)]
    every = {(name % (i - 1), name % i) for i in copies}
    return every, {(name % (i - 1), name % i) for i in copies if i % COPY_EVERY == AT_THRESHOLD}


def job_pairs(frame: DataFrame, n: int, threshold: float, method: str) -> set[tuple[str, str]]:
    """The pairs as the health stage finds them: its candidates persisted (the pair cap reads them twice), capped."""
    items = frame.select(
        "path",
        "label",
        F.lit("out").alias("output"),
        F.lit("r").alias("run_id"),
        F.sha2("path", 256).alias("sha256"),  # every image has its bytes' hash, as features/ rows do
        F.lit("this").alias("side"),
        "features",
    ).select(*ITEM_COLUMNS)
    candidates = candidate_pairs(items, n, threshold, method=method).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        pairs = capped(candidates, n, with_earlier=False, method=method).select("path", "other_path").collect()
    finally:
        candidates.unpersist()
    return {(r.path, r.other_path) for r in pairs}


def lsh_pairs(frame: DataFrame, threshold: float, tables: int, bucket: float) -> DataFrame:
    """approxSimilarityJoin on the unit vectors: cosine >= t is Euclidean distance <= sqrt(2 (1 - t))."""
    vectors = frame.select("path", array_to_vector("features").alias("v"))
    model = BucketedRandomProjectionLSH(inputCol="v", outputCol="h", bucketLength=bucket, numHashTables=tables, seed=1)
    model = model.fit(vectors)
    joined = model.approxSimilarityJoin(vectors, vectors, float(np.sqrt(2 * (1 - threshold))), distCol="d")
    pairs = joined.where(F.col("datasetA.path") < F.col("datasetB.path"))
    return pairs.select(F.col("datasetA.path").alias("path"), F.col("datasetB.path").alias("other_path"))


def measure(spark, features: str, n: int, args) -> dict[str, object]:
    frame = rows(spark, features, n, args.threshold)
    frame.count()
    methods = [m for m in args.methods if m != METHOD or n <= args.no_exact_above]
    times: dict[str, list[float]] = {m: [] for m in methods}
    found: dict[str, set[tuple[str, str]]] = {}
    for _ in range(args.repeats):
        for method in methods:
            started = time.monotonic()  # the LSH's plan (its bucket counts) runs Spark jobs before the search
            if method == SPARK_ML:
                pairs = lsh_pairs(frame, args.threshold, args.tables, args.bucket)
                collected = {(r.path, r.other_path) for r in pairs.collect()}  # a few pairs an image at most
            else:
                collected = job_pairs(frame, n, args.threshold, method)
            times[method].append(time.monotonic() - started)
            found.setdefault(method, collected)
            print(n, method, len(collected), "pairs", round(times[method][-1], 2), "s", flush=True)
    every, at_threshold = planted(n)
    truth = found.get(METHOD, every)
    result: dict[str, object] = {
        "rows": n,
        "pairs_planted": len(every),
        "planted_at_threshold": len(at_threshold),
        "truth": "exact search" if METHOD in found else "planted pairs",
    }
    for method in methods:
        result[method] = {
            "median_s": round(statistics.median(times[method]), 2),
            "runs_s": [round(t, 2) for t in times[method]],
            "pairs": len(found[method]),
            "recall": round(len(found[method] & truth) / max(1, len(truth)), 4),
            "recall_at_threshold": round(len(found[method] & at_threshold) / max(1, len(at_threshold)), 4),
            "planted_found": len(found[method] & every),
        }
    frame.unpersist()
    return result


def bucket_load(features: str, n: int, threshold: float, centred: bool = True) -> dict[str, object]:
    """The job's LSH plan on the bench's rows, in numpy on the driver (n x 1280 float32): bits, tables and the most
    extra bits, the largest leaf, the pairs the leaves multiply (against even buckets of a block and against every
    pair) and the recall of the planted pairs at the threshold (whether they share a leaf in some table);
    ``centred`` False hashes the features as they are (the job centres them on their mean)."""
    frame = next(seed_rows(features, threshold)(iter([pd.DataFrame({"id": np.arange(n)})])))
    unit = np.stack(frame["features"].to_list()).astype(np.float32)
    centre = unit.astype(np.float64).mean(axis=0) if centred else np.zeros(unit.shape[1])
    bits = simhash.base_bits(n)
    row_codes = simhash.codes(unit, centre, bits, simhash.tables_for(bits + simhash.MAX_EXTRA_BITS, threshold))
    base = simhash.buckets(row_codes, bits)
    counts = np.stack([np.bincount(base[:, t], minlength=2**bits) for t in range(base.shape[1])])
    extra = simhash.extra_bits(counts)
    tables = simhash.tables_needed(extra, bits, threshold)
    keys = simhash.leaves(row_codes[:, :tables], bits, extra[:tables])
    sizes = [np.unique(keys[:, t], return_counts=True)[1].astype(np.int64) for t in range(tables)]
    _, at_threshold = planted(n)
    index = {"img/%08d.jpg" % i: i for i in range(n)}
    pairs = np.array([(index[a], index[b]) for a, b in sorted(at_threshold)])
    met = (keys[pairs[:, 0]] == keys[pairs[:, 1]]).any(axis=1)
    return {
        "rows": n,
        "centred": centred,
        "bits_tables_most_extra_bits": [bits, tables, int(extra[:tables].max())],
        "largest_leaf": int(max(size.max() for size in sizes)),
        "pairs_multiplied": int(sum((size**2).sum() for size in sizes) // 2),
        "pairs_if_even": int(tables * n * BLOCK_ROWS / 2),
        "all_pairs": n * (n - 1) // 2,
        "recall_at_threshold": round(float(met.mean()), 4),
        "planted_at_threshold": len(pairs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", required=True, help="a features/ folder of a real run (the seed vectors)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[4000, 24000, 100000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threshold", type=float, default=0.98)
    parser.add_argument("--tables", type=int, default=4, help="Spark ML's LSH: hash tables")
    parser.add_argument("--bucket", type=float, default=0.4, help="Spark ML's LSH: bucket length (unit vectors)")
    parser.add_argument("--no-exact-above", type=int, default=30000)
    methods = [METHOD, METHOD_LSH, SPARK_ML]
    parser.add_argument("--methods", nargs="+", default=[METHOD, METHOD_LSH], choices=methods)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--json", help="write the results here too")
    parser.add_argument("--bucket-load", action="store_true", help="the LSH's plan and leaves only (numpy, no Spark)")
    parser.add_argument("--uncentred", action="store_true", help="--bucket-load: hash the features uncentred")
    args = parser.parse_args()
    if args.bucket_load:
        loads = [bucket_load(args.features, n, args.threshold, not args.uncentred) for n in args.sizes]
        print(json.dumps(loads, indent=2))
        return
    spark = (
        SparkSession.builder.master(args.master)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", "4g")
        .config("spark.sql.shuffle.partitions", "8")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    results = [measure(spark, args.features, n, args) for n in args.sizes]
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)


if __name__ == "__main__":
    main()
