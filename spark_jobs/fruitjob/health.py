"""The dataset-health stage, after pca/: duplicates, label conflicts, leaks, outliers and suspected mislabels.

Writes ``health/pairs``, ``health/outliers`` and ``health/mislabels`` under the output and returns the counts for
metrics.json (:class:`fruitjob.metrics.HealthCounts`); the schema is ../shared/INTERFACE.md's.

- Exact duplicates: the same ``sha256``; near-duplicates: cosine of the L2-normalised 1280-d features >=
  ``--near-duplicate-threshold``; both from one search (fruitjob/similarity.py: blocked exact, or an LSH over
  blocked buckets above ``EXACT_BELOW_ROWS`` rows; metrics.json's ``method`` says which), within this output and
  against the earlier outputs (``--health-against``), at most ``MAX_PAIRS_PER_IMAGE`` pairs per image. A pair is a
  conflict when its labels differ, a leak when the other image is in an earlier output or in an earlier batch
  (``run_id``) of this one.
- Outliers and suspected mislabels: each image against the class centroids (fruitjob/centroid_scores.py).

Every Spark job costs a few hundred milliseconds on a small output, so the stage runs few of them: the class sums
(with the row counts), the pairs written, the outlier cut, the two other tables written, and one aggregate for every
count. Only class sums (labels x 1280 doubles), quantiles and counts ever reach the driver.
"""

from __future__ import annotations

import logging
import math
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, FloatType, StringType, StructField, StructType

from fruitjob import layout, storage
from fruitjob.block_search import FOUND, PAIR_SCHEMA
from fruitjob.centroid_scores import MISLABEL_CUT, SCORE_SCHEMA, class_sums, outlier_cut, scorer
from fruitjob.errors import JobError
from fruitjob.identity import check_same_space
from fruitjob.metrics import ClassHealth, HealthCounts
from fruitjob.similarity import candidate_pairs, capped, search_method
from fruitjob.small_tables import write_table
from fruitjob.space import load_space
from fruitjob.tuning import configure, spark_setting

PAIRS, OUTLIERS, MISLABELS = "pairs", "outliers", "mislabels"
HEALTH_JOBS = "fruitflow-health"  # the job group of the stage's Spark jobs (health_alongside)
CANCEL_EVERY_S = 0.2
# What the stage reads of features/: given, so that no job infers (merges) the files' schemas; a row written before
# ``sha256`` (or ``run_id``) existed reads it as null.
READ_SCHEMA = StructType(
    [
        StructField("path", StringType(), False),
        StructField("label", StringType(), False),
        StructField("features", ArrayType(FloatType()), True),
        StructField("run_id", StringType(), True),
        StructField("sha256", StringType(), True),
    ]
)
# What the one aggregate over the pairs counts: per class (ClassHealth's), and for the whole output besides
PAIR_COUNTS = ["duplicates", "conflicts", "leaks", "exact", "near", FOUND, "kept", "near_images"]
# The stage's shuffles (blocks, the pair cap's window, the counts) get one partition per task slot, more for large
# outputs: Spark's default of 200 made 200 tasks of a few rows each (seconds of the demo's stage).
IMAGES_PER_SHUFFLE_PARTITION = 20000
OUTLIER_TABLE = pa.schema(
    [
        ("path", pa.string()),
        ("label", pa.string()),
        ("score", pa.float64()),
        ("nearest_label", pa.string()),
        ("rank", pa.int32()),
        ("flagged", pa.bool_()),
    ]
)
MISLABEL_TABLE = pa.schema(
    [
        ("path", pa.string()),
        ("label", pa.string()),
        ("resembles", pa.string()),
        ("confidence", pa.float64()),
        ("rank", pa.int32()),
        ("flagged", pa.bool_()),
    ]
)
log = logging.getLogger("fruitflow.health")


def _shuffle_partitions(spark: SparkSession, rows: int):
    """``spark.sql.shuffle.partitions`` sized for ``rows`` images for the queries planned inside, then restored."""
    wanted = max(spark.sparkContext.defaultParallelism, int(math.ceil(rows / float(IMAGES_PER_SHUFFLE_PARTITION))))
    return spark_setting(spark, "spark.sql.shuffle.partitions", str(wanted))


def _features(spark: SparkSession, output: str) -> DataFrame:
    """features/ of an output: READ_SCHEMA's columns."""
    features = spark.read.schema(READ_SCHEMA).parquet(storage.escape_glob(layout.child(output, layout.FEATURES)))
    return features.where(F.col("features").isNotNull())


def _comparable(spark: SparkSession, uri: str, identity: Dict[str, object]) -> bool:
    """An earlier output is compared only when its features are in this run's space."""
    if not storage.exists(spark, layout.child(uri, layout.FEATURES)):
        log.warning("health: %s has no features/; not compared", uri)
        return False
    space = load_space(spark, uri)
    if space is not None:
        try:
            check_same_space(identity, space.get("identity") or {}, uri)
        except JobError as exc:
            log.warning("health: %s not compared: %s", uri, exc)
            return False
    return True


def _items(frame: DataFrame, output: str, side: str) -> DataFrame:
    return frame.select(
        "path",
        "label",
        F.lit(output).alias("output"),
        F.coalesce(F.col("run_id"), F.lit("")).alias("run_id"),
        F.coalesce(F.col("sha256"), F.lit("")).alias("sha256"),
        F.lit(side).alias("side"),
        "features",
    )


def _ranked(frame: pd.DataFrame, by: str) -> pd.DataFrame:
    """``frame`` by ``by`` (highest first, then path) with ``rank`` (1 = first)."""
    frame = frame.sort_values([by, "path"], ascending=[False, True], kind="stable").reset_index(drop=True)
    return frame.assign(rank=np.arange(1, len(frame) + 1, dtype=np.int32))


def _arrow(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)


def _write_scores(spark: SparkSession, health_uri: str, scored: pd.DataFrame) -> pd.DataFrame:
    """health/outliers and health/mislabels from every image's scores; returns the flagged counts per label."""
    cut = outlier_cut(scored["score"].to_numpy(dtype=np.float64))
    outliers = _ranked(scored[["path", "label", "score", "nearest_label"]], "score")
    outliers["flagged"] = outliers["score"] > cut
    write_table(spark, layout.child(health_uri, OUTLIERS), _arrow(outliers, OUTLIER_TABLE))
    suspects = scored[scored["resembles"].notna()][["path", "label", "resembles", "confidence"]]
    mislabels = _ranked(suspects, "confidence")
    mislabels["flagged"] = mislabels["confidence"] >= MISLABEL_CUT
    write_table(spark, layout.child(health_uri, MISLABELS), _arrow(mislabels, MISLABEL_TABLE))
    flagged = [
        outliers[outliers["flagged"]].groupby("label").size().rename("outliers"),
        mislabels[mislabels["flagged"]].groupby("label").size().rename("suspected_mislabels"),
    ]
    return pd.concat(flagged, axis=1).fillna(0).astype(int)


def _tally(frame: DataFrame, label, **counts) -> DataFrame:
    """Rows of the one aggregate: ``label`` (null: the output's totals) and every count (0 where not given)."""
    return frame.select(
        label.cast("string").alias("label"),
        *[F.coalesce(counts.get(name, F.lit(0)), F.lit(0)).cast("long").alias(name) for name in PAIR_COUNTS],
    )


def _pair_counts(candidates: DataFrame, pairs: DataFrame) -> Dict[Optional[str], Dict[str, int]]:
    """The pairs' counts in one Spark job: {label: duplicates, conflicts, leaks; None: the totals}."""
    one, flag = F.lit(1), lambda column: F.col(column).cast("int")
    within = F.col("other_output").isNull()
    near = pairs.where(~F.col("exact"))
    touched = near.select("path").unionByName(near.where(within).select(F.col("other_path").alias("path")))
    tallies = [
        # a pair counts for the class of each of its images (once when both are of one class)
        _tally(pairs, F.col("label"), duplicates=one, conflicts=flag("conflict"), leaks=flag("leak")),
        _tally(
            pairs.where(within & (F.col("other_label") != F.col("label"))),
            F.col("other_label"),
            duplicates=one,
            conflicts=flag("conflict"),
            leaks=flag("leak"),
        ),
        _tally(
            pairs,
            F.lit(None),
            exact=flag("exact"),
            near=(~F.col("exact")).cast("int"),
            conflicts=flag("conflict"),
            leaks=flag("leak"),
            kept=one,
        ),
        _tally(candidates, F.lit(None), found=F.col(FOUND)),
        _tally(touched.distinct(), F.lit(None), near_images=one),
    ]
    union = tallies[0]
    for tally in tallies[1:]:
        union = union.unionByName(tally)
    summed = union.groupBy("label").agg(*[F.sum(c).alias(c) for c in PAIR_COUNTS])
    return {row["label"]: {name: int(row[name] or 0) for name in PAIR_COUNTS} for row in summed.collect()}


def write_health(
    spark: SparkSession,
    output: str,
    against: List[str],
    threshold: float,
    identity: Dict[str, object],
) -> HealthCounts:
    """health/ for the output's features/ (all its batches) against the earlier outputs; returns the counts."""
    started = time.monotonic()
    health_uri = layout.child(output, layout.HEALTH)
    mine = _features(spark, output)
    compared = [uri for uri in against if uri.rstrip("/") != output.rstrip("/") and _comparable(spark, uri, identity)]
    items = _items(mine, output, "this")
    for uri in compared:
        items = items.unionByName(_items(_features(spark, uri), uri, "earlier"))
    labels, per_label, totals, sides = class_sums(items)
    rows = sum(sides.values())

    with _shuffle_partitions(spark, rows):  # before any plan is made: persist() makes the cached one
        method = search_method(rows)
        centre = totals.sum(axis=0) / per_label.sum() if per_label.sum() else None  # the LSH's: the mean unit feature
        candidates = candidate_pairs(items, rows, threshold, method=method, centre=centre)
        candidates = candidates.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            pairs = capped(candidates, rows, bool(compared), method=method)
            pairs.coalesce(1).write.mode("overwrite").parquet(layout.child(health_uri, PAIRS))
            written = spark.read.schema(PAIR_SCHEMA).parquet(storage.escape_glob(layout.child(health_uri, PAIRS)))
            counts = _pair_counts(candidates, written)
        finally:
            candidates.unpersist()
    scored = mine.select("path", "label", "features").mapInPandas(scorer(labels, per_label, totals), SCORE_SCHEMA)
    flagged = _write_scores(spark, health_uri, scored.toPandas())

    total = counts.pop(None, None) or {name: 0 for name in PAIR_COUNTS}
    per_class = []
    for label in sorted(set(counts) | set(flagged.index)):
        pair_counts = counts.get(label, {})
        entry = ClassHealth(
            label=label,
            duplicates=pair_counts.get("duplicates", 0),
            conflicts=pair_counts.get("conflicts", 0),
            leaks=pair_counts.get("leaks", 0),
            outliers=int(flagged["outliers"].get(label, 0)),
            suspected_mislabels=int(flagged["suspected_mislabels"].get(label, 0)),
        )
        if entry.duplicates or entry.outliers or entry.suspected_mislabels:
            per_class.append(entry)
    return HealthCounts(
        enabled=True,
        method=method,
        near_duplicate_threshold=threshold,
        exact_duplicate_pairs=total["exact"],
        near_duplicate_pairs=total["near"],
        label_conflicts=total["conflicts"],
        leaks=total["leaks"],
        outliers=int(flagged["outliers"].sum()),
        suspected_mislabels=int(flagged["suspected_mislabels"].sum()),
        compared_with=compared,
        seconds=round(time.monotonic() - started, 3),
        per_class=per_class,
        pairs_cut_off=max(0, total[FOUND] - total["kept"]),
        images_with_near_pair=total["near_images"],
    )


def run_health(spark: SparkSession, opts, identity: Dict[str, object]) -> Optional[HealthCounts]:
    """The stage as the job runs it: ``--health off`` leaves no health/ (an earlier run's is removed) and no counts."""
    if opts.health == "off":
        storage.delete(spark, layout.child(opts.output, layout.HEALTH))
        return None
    return write_health(spark, opts.output, opts.health_against, opts.near_duplicate_threshold, identity)


def _in_job_group(session: SparkSession, opts, identity: Dict[str, object]) -> Optional[HealthCounts]:
    session.sparkContext.setJobGroup(HEALTH_JOBS, "the dataset-health stage")  # this thread's Spark jobs
    return run_health(session, opts, identity)


@contextmanager
def health_alongside(
    spark: SparkSession, opts, identity: Dict[str, object], partitions: int
) -> Iterator[Future[Optional[HealthCounts]]]:
    """The stage (:func:`run_health`) in a thread of its own while the caller goes on: it reads only features/, so
    it runs beside the PCA and the quality score, and the cores the driver's own work leaves idle run its tasks.

    It runs in a session of its own (the job's settings, ``tuning.configure``): the shuffle partitions it sizes to its
    rows are not the PCA's, nor the PCA's Arrow batches its. Yields the stage's future. When the caller fails, the
    stage's Spark jobs are cancelled until its thread has ended, before the error goes on, so nothing is written after
    the run has let go of its output.
    """
    session = spark.newSession()
    configure(session, opts, partitions)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="health")
    try:
        stage = pool.submit(_in_job_group, session, opts, identity)
        try:
            yield stage
        except BaseException:
            # a job the stage submits after a cancel runs, so cancel until the thread has ended: between its jobs the
            # stage's driver-side work is short
            while not wait([stage], timeout=CANCEL_EVERY_S).done:
                spark.sparkContext.cancelJobGroup(HEALTH_JOBS)
            raise
    finally:
        pool.shutdown(wait=True)


__all__ = [
    "HEALTH_JOBS",
    "MISLABELS",
    "OUTLIERS",
    "PAIRS",
    "READ_SCHEMA",
    "health_alongside",
    "run_health",
    "write_health",
]
