"""What the job writes under ``--output``, apart from the PCA: features/, errors/, and the rules of reruns."""

from __future__ import annotations

import json
from typing import Dict, List, Optional

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from fruitjob import layout, storage
from fruitjob.featurizer import make_featurize_udf
from fruitjob.incremental import replace_dataset, without_paths
from fruitjob.listing import ImageFile
from fruitjob.options import JobOptions
from fruitjob.reading import unread_images


class JobError(RuntimeError):
    """A problem with the run's input or output that the user must fix; the message says how."""


def check_output(spark: SparkSession, opts: JobOptions) -> Optional[Dict[str, object]]:
    """Refuse to clobber a finished run; returns its metrics when --incremental builds on it. Reads only."""
    metrics_uri = layout.child(opts.output, layout.METRICS)
    previous = None
    if storage.exists(spark, metrics_uri):
        if not (opts.overwrite or opts.incremental):
            raise JobError(
                "%s already holds a finished run (metrics.json is there); pass --overwrite to replace it, "
                "--incremental to add new images to it, or choose another --output" % opts.output
            )
        previous = json.loads(storage.read_bytes(spark, metrics_uri).decode())
    return previous if opts.incremental else None


def mark_unfinished(spark: SparkSession, output: str) -> None:
    """Called once every check has passed, before the first write: from here on a half-written run never looks
    finished, and a rerun resumes or redoes it. (A refused run leaves the finished one as it was.)"""
    storage.delete(spark, layout.child(output, layout.METRICS))


def write_features(spark: SparkSession, opts: JobOptions, weights, images: DataFrame, mode: str) -> None:
    """Features of ``images`` into features/ (mode: overwrite or append); results stay staged for errors/.

    The model runs once per image: its results are written to a staging dataset in one pass (uncompressed: it
    is read once, right away), which is then split. Caching instead would re-run inference on any evicted
    partition.
    """
    featurize = make_featurize_udf(spark.sparkContext.broadcast(weights), opts.featurizer, opts.batch_size)
    result = featurize("content")
    images.select(
        "path", "label", "size", result["features"].alias("features"), result["error"].alias("error")
    ).write.mode("overwrite").option("compression", "none").parquet(layout.child(opts.output, layout.STAGING))
    done = spark.read.parquet(layout.child(opts.output, layout.STAGING))
    done.where(F.col("error").isNull()).drop("error").write.mode(mode).parquet(
        layout.child(opts.output, layout.FEATURES)
    )


def write_errors(spark: SparkSession, opts: JobOptions, images: List[ImageFile], mode: str) -> None:
    """Images the model could not take, and listed images Spark could not read, into errors/."""
    staged = layout.child(opts.output, layout.STAGING)
    done = spark.read.parquet(staged)
    failed = done.where(F.col("error").isNotNull()).drop("features")
    if done.count() < len(images):  # only then is a listed image missing: skip the join otherwise
        failed = failed.unionByName(unread_images(spark, images, done))
    failed.write.mode(mode).parquet(layout.child(opts.output, layout.ERRORS))
    storage.delete(spark, staged)


def drop_stale_rows(spark: SparkSession, output: str, paths: List[str]) -> None:
    """Images whose size changed since they were featurized: their old rows go before new ones come."""
    if not paths:
        return
    for name in (layout.FEATURES, layout.ERRORS, layout.PCA):
        uri = layout.child(output, name)
        if storage.exists(spark, uri):
            replace_dataset(spark, uri, without_paths(spark.read.parquet(uri), paths))
