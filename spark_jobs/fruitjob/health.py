"""The dataset-health stage, after pca/: duplicates, label conflicts, leaks, outliers and suspected mislabels.

Writes ``health/pairs``, ``health/outliers`` and ``health/mislabels`` under the output and returns the counts for
metrics.json (:class:`fruitjob.metrics.HealthCounts`); the schema is ../shared/INTERFACE.md's.

- Exact duplicates: the same ``sha256`` (a join on the hash), within this output and against the earlier
  outputs (``--health-against``).
- Near-duplicates: cosine of the L2-normalised 1280-d features >= ``--near-duplicate-threshold``
  (fruitjob/similarity.py). A pair is a conflict when its labels differ, a leak when the other image is in an
  earlier output or in an earlier batch (``run_id``) of this one.
- Outliers and suspected mislabels: each image against the class centroids (fruitjob/centroid_scores.py).

Only class sums (labels x 1280 doubles) ever reach the driver.
"""

from __future__ import annotations

import logging
import time
from typing import Dict, List, Optional

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from fruitjob import layout, storage
from fruitjob.centroid_scores import MISLABEL_CUT, SCORE_SCHEMA, class_sums, outlier_cut, scorer
from fruitjob.errors import JobError
from fruitjob.identity import check_same_space
from fruitjob.metrics import ClassHealth, HealthCounts
from fruitjob.similarity import METHOD, PAIR_COLUMNS, similar_pairs
from fruitjob.space import load_space

PAIRS, OUTLIERS, MISLABELS = "pairs", "outliers", "mislabels"
log = logging.getLogger("fruitflow.health")


def _features(spark: SparkSession, output: str) -> DataFrame:
    """features/ of an output, with ``sha256`` (null in rows written before it) and ``run_id``."""
    frame = spark.read.option("mergeSchema", "true").parquet(storage.escape_glob(layout.child(output, layout.FEATURES)))
    for name in ("sha256", "run_id"):
        if name not in frame.columns:
            frame = frame.withColumn(name, F.lit(None).cast("string"))
    return frame


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


def _exact_pairs(items: DataFrame) -> DataFrame:
    """Pairs with the same content hash, this output's rows against all (a join on the hash)."""
    hashed = items.where(F.col("sha256") != "").drop("features")
    mine = hashed.where(F.col("side") == "this")
    others = hashed.select(*[F.col(c).alias("o_" + c) for c in hashed.columns])
    joined = mine.join(others, F.col("sha256") == F.col("o_sha256"))
    joined = joined.where((F.col("o_side") == "earlier") | (F.col("path") < F.col("o_path")))
    return joined.select(
        "path",
        "label",
        F.col("o_path").alias("other_path"),
        F.col("o_label").alias("other_label"),
        F.when(F.col("o_side") == "earlier", F.col("o_output")).alias("other_output"),  # null: this output
        F.lit(1.0).alias("similarity"),
        F.lit(True).alias("exact"),
        (F.col("label") != F.col("o_label")).alias("conflict"),
        ((F.col("o_side") == "earlier") | (F.col("run_id") != F.col("o_run_id"))).alias("leak"),
    )


def _ranked(frame: DataFrame, by: str) -> DataFrame:
    return frame.withColumn("rank", F.row_number().over(Window.orderBy(F.col(by).desc(), F.col("path"))))


def _count_where(frame: DataFrame, condition) -> int:
    return frame.where(condition).count()


def _per_class(pairs: DataFrame, outliers: DataFrame, mislabels: DataFrame, output: str) -> List[ClassHealth]:
    """Pairs count for each class they touch (both sides of a pair within this output)."""
    sides = pairs.select("label", "conflict", "leak").unionByName(
        pairs.where(F.col("other_output").isNull())
        .where(F.col("other_label") != F.col("label"))
        .select(F.col("other_label").alias("label"), "conflict", "leak")
    )
    counts: Dict[str, Dict[str, int]] = {}
    for row in (
        sides.groupBy("label")
        .agg(
            F.count(F.lit(1)).alias("duplicates"),
            F.sum(F.col("conflict").cast("int")).alias("conflicts"),
            F.sum(F.col("leak").cast("int")).alias("leaks"),
        )
        .collect()
    ):
        counts.setdefault(row["label"], {}).update(
            duplicates=row["duplicates"], conflicts=row["conflicts"] or 0, leaks=row["leaks"] or 0
        )
    for frame, key in ((outliers, "outliers"), (mislabels, "suspected_mislabels")):
        for row in frame.where("flagged").groupBy("label").count().collect():
            counts.setdefault(row["label"], {})[key] = row["count"]
    return [ClassHealth(label=label, **counts[label]) for label in sorted(counts)]


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
    mine = _features(spark, output).select("path", "label", "features", "run_id", "sha256")
    compared = [uri for uri in against if uri.rstrip("/") != output.rstrip("/") and _comparable(spark, uri, identity)]
    items = _items(mine, output, "this")
    for uri in compared:
        items = items.unionByName(_items(_features(spark, uri), uri, "earlier"))
    items = items.persist()
    try:
        rows = items.count()
        near = similar_pairs(items, rows, threshold)
        pairs = (
            near.unionByName(_exact_pairs(items))
            .groupBy("path", "other_path", "other_output")
            .agg(
                F.first("label").alias("label"),
                F.first("other_label").alias("other_label"),
                F.max("similarity").alias("similarity"),
                F.max("exact").alias("exact"),
                F.max("conflict").alias("conflict"),
                F.max("leak").alias("leak"),
            )
        )
        pairs.select(*PAIR_COLUMNS).coalesce(1).write.mode("overwrite").parquet(layout.child(health_uri, PAIRS))
    finally:
        items.unpersist()
    pairs = storage.read_parquet(spark, layout.child(health_uri, PAIRS))

    labels, counts, totals = class_sums(mine)
    scored = mine.select("path", "label", "features").mapInPandas(scorer(labels, counts, totals), SCORE_SCHEMA)
    scored.write.mode("overwrite").parquet(layout.child(health_uri, "_scores"))
    scored = storage.read_parquet(spark, layout.child(health_uri, "_scores"))
    cut = outlier_cut(scored) if rows else 1.0
    outliers = _ranked(scored.select("path", "label", "score", "nearest_label"), "score")
    outliers = outliers.withColumn("flagged", F.col("score") > F.lit(cut))
    outliers.coalesce(1).write.mode("overwrite").parquet(layout.child(health_uri, OUTLIERS))
    mislabels = _ranked(
        scored.where(F.col("resembles").isNotNull()).select("path", "label", "resembles", "confidence"), "confidence"
    ).withColumn("flagged", F.col("confidence") >= F.lit(MISLABEL_CUT))
    mislabels.coalesce(1).write.mode("overwrite").parquet(layout.child(health_uri, MISLABELS))
    storage.delete(spark, layout.child(health_uri, "_scores"))
    outliers = storage.read_parquet(spark, layout.child(health_uri, OUTLIERS))
    mislabels = storage.read_parquet(spark, layout.child(health_uri, MISLABELS))

    totals_row = pairs.agg(
        F.sum(F.col("exact").cast("int")).alias("exact"),
        F.sum((~F.col("exact")).cast("int")).alias("near"),
        F.sum(F.col("conflict").cast("int")).alias("conflicts"),
        F.sum(F.col("leak").cast("int")).alias("leaks"),
    ).first()
    return HealthCounts(
        enabled=True,
        method=METHOD,
        near_duplicate_threshold=threshold,
        exact_duplicate_pairs=int(totals_row["exact"] or 0),
        near_duplicate_pairs=int(totals_row["near"] or 0),
        label_conflicts=int(totals_row["conflicts"] or 0),
        leaks=int(totals_row["leaks"] or 0),
        outliers=_count_where(outliers, F.col("flagged")),
        suspected_mislabels=_count_where(mislabels, F.col("flagged")),
        compared_with=compared,
        seconds=round(time.monotonic() - started, 3),
        per_class=_per_class(pairs, outliers, mislabels, output),
    )


def run_health(spark: SparkSession, opts, identity: Dict[str, object]) -> Optional[HealthCounts]:
    """The stage as the job runs it: ``--health off`` leaves no health/ (an earlier run's is removed) and no counts."""
    if opts.health == "off":
        storage.delete(spark, layout.child(opts.output, layout.HEALTH))
        return None
    return write_health(spark, opts.output, opts.health_against, opts.near_duplicate_threshold, identity)


__all__ = ["MISLABELS", "OUTLIERS", "PAIRS", "run_health", "write_health"]
