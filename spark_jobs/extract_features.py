"""MobileNetV2 features + PCA for a folder or S3 prefix of fruit images.

Runs unchanged under ``spark-submit`` on a laptop and on EMR 7.x (Spark 3.5, Python 3.9)::

    spark-submit spark_jobs/extract_features.py --images DIR_OR_S3 --output DIR_OR_S3 [options]

Output: ``features/``, ``errors/``, ``pca/``, ``pca_model/`` and, written last, ``metrics.json``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Dict, List, Optional

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pyspark.sql import SparkSession

from fruitjob import layout, progress, storage
from fruitjob.featurizer import warm_up_workers
from fruitjob.identity import SpaceMismatch, check_same_space, identity_of
from fruitjob.incremental import Plan, plan_increment
from fruitjob.listing import list_input
from fruitjob.metrics import versions as job_versions
from fruitjob.options import JobOptions, parse_options
from fruitjob.outputs import JobError, check_output, drop_stale_rows, mark_unfinished, write_errors, write_features
from fruitjob.packaging import ship_package
from fruitjob.pca import PcaError, existing_model, fit_and_save, project
from fruitjob.reading import read_images
from fruitjob.tflite_engine import convert_for_workers
from fruitjob.tuning import configure, partitions_for
from fruitjob.weights import FEATURE_DIM, WeightsError, resolve_weights

__all__ = ["JobError", "main", "run"]

log = logging.getLogger("fruitflow.job")


def run(spark: SparkSession, opts: JobOptions) -> Dict[str, object]:
    """Run the whole job; returns the metrics it wrote."""
    started_at = datetime.now(timezone.utc)
    durations: Dict[str, float] = {}
    clock = time.monotonic()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.monotonic()
        durations[stage] = round(now - clock, 3)
        clock = now
        progress.stage_done(stage)

    ship_package(spark)
    previous = check_output(spark, opts)
    warm_up_workers(spark)  # the workers import TensorFlow while the driver lists and resolves the weights
    listing = list_input(spark, opts.images)
    if not listing.images:
        raise JobError(
            "no images under %s (%d files seen; expected .jpg, .jpeg or .png)" % (opts.images, listing.files_seen)
        )
    log.info("listed %d images and %d other files under %s", len(listing.images), len(listing.skipped), opts.images)
    plan = Plan(todo=listing.images, already_done=0, changed=[])
    if opts.incremental:
        plan = plan_increment(spark, opts.output, listing.images)
        log.info("incremental: %d images already done, %d to featurize", plan.already_done, len(plan.todo))
    partitions = partitions_for(spark, len(plan.todo), opts.partitions)
    configure(spark, opts, partitions)
    lap("list")

    # Spark indexes the image files (seconds for thousands of paths) in the JVM while Python resolves the weights.
    indexing = ThreadPoolExecutor(max_workers=1)
    images = indexing.submit(read_images, spark, opts.images, plan.todo) if plan.todo else None
    indexing.shutdown(wait=False)
    weights = resolve_weights(spark, opts.weights, opts.alpha, opts.seed)
    identity = identity_of(weights.name, weights.sha256, weights.alpha, opts.featurizer)
    log.info("weights %s (alpha %s, sha256 %s)", weights.name, weights.alpha, weights.sha256[:12])
    if previous is not None:
        check_same_space(identity, previous, "the run already in %s" % opts.output)
    source = existing_model(spark, opts, identity, previous)  # before any image: a mismatch must fail fast
    if opts.featurizer == "tflite":
        weights = convert_for_workers(weights)  # once here, instead of once per Python worker
    lap("weights")

    mark_unfinished(spark, opts.output)
    drop_stale_rows(spark, opts.output, plan.changed)
    errors_uri = layout.child(opts.output, layout.ERRORS)
    errors_before = (
        spark.read.parquet(errors_uri).count() if opts.incremental and storage.exists(spark, errors_uri) else 0
    )
    mode = "append" if opts.incremental else "overwrite"
    if images is not None:
        write_features(spark, opts, weights, images.result(), mode)
    lap("featurize")  # read -> features written: the stage the benchmark compares

    if plan.todo:
        write_errors(spark, opts, plan.todo, mode)
    features = spark.read.parquet(layout.child(opts.output, layout.FEATURES))
    features_total = features.count()
    errors_total = spark.read.parquet(errors_uri).count()
    images_failed = errors_total - errors_before
    images_ok = len(plan.todo) - images_failed
    log.info("featurized %d images, %d failed, in %d partitions", images_ok, images_failed, partitions)
    lap("errors")

    pca_note = None
    if source is None:
        fitted, pca_note = fit_and_save(spark, opts, features, identity)
        project(fitted, features).write.mode("overwrite").parquet(layout.child(opts.output, layout.PCA))
    else:
        fitted = source
        pca_uri = layout.child(opts.output, layout.PCA)
        new = features
        if opts.incremental and storage.exists(spark, pca_uri):
            new = features.join(spark.read.parquet(pca_uri).select("path"), on="path", how="left_anti")
        project(fitted, new).write.mode("append" if opts.incremental else "overwrite").parquet(pca_uri)
    lap("pca")

    total = sum(durations.values())
    versions = job_versions(spark)
    metrics = {
        "images": opts.images,
        "output": opts.output,
        "files_seen": listing.files_seen,
        "files_skipped": len(listing.skipped),
        "images_total": len(plan.todo),
        "images_ok": images_ok,
        "images_failed": images_failed,
        "images_already_done": plan.already_done,
        "images_changed": len(plan.changed),
        "features_total": features_total,
        "errors_total": errors_total,
        "feature_dim": FEATURE_DIM,
        "pca_components_asked": opts.pca_components,
        "pca_components": fitted.components,
        "pca_note": pca_note,
        "pca_model": fitted.uri,
        "pca_refit": source is None,
        "explained_variance": fitted.explained_variance,
        "explained_variance_total": float(sum(fitted.explained_variance)),
    }
    metrics.update(identity)
    metrics.update(
        {
            "batch_size": opts.batch_size,
            "partitions": partitions,
            "versions": versions,
            "tensorflow_version": versions["tensorflow"],
            "spark_version": spark.version,
            "durations_s": dict(durations, total=round(total, 3)),
            "images_per_s": round(len(plan.todo) / durations["featurize"], 2) if durations["featurize"] else None,
            "started_at": started_at.isoformat(),
            "finished_at": datetime.now(timezone.utc).isoformat(),
            "engine": os.environ.get("FRUITFLOW_ENGINE", "local"),
        }
    )
    if previous is not None:
        metrics["previous_run"] = {key: previous.get(key) for key in ("started_at", "finished_at", "images")}
    for key in ("cluster_id", "step_id"):
        value = os.environ.get("FRUITFLOW_" + key.upper())
        if value:
            metrics[key] = value
    storage.write_bytes(spark, layout.child(opts.output, layout.METRICS), json.dumps(metrics, indent=2).encode())
    log.info("wrote %s", layout.child(opts.output, layout.METRICS))
    return metrics


def _log_to_stderr() -> None:
    """The job's own lines carry a prefix, so the flow can tell them from Spark's and TensorFlow's."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("fruitflow %(levelname)s %(message)s"))
    root = logging.getLogger("fruitflow")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False


def main(argv: Optional[List[str]] = None) -> int:
    _log_to_stderr()
    opts = parse_options(argv)
    spark = SparkSession.builder.appName("fruitflow-extract-features").getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    progress.start(spark.sparkContext)  # `progress: N% ...` lines, which the flow turns into a progress bar
    try:
        run(spark, opts)
        progress.finish()
    except (JobError, WeightsError, SpaceMismatch, PcaError) as exc:
        log.error("%s", exc)
        return 2
    finally:
        progress.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
