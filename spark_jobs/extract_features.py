"""MobileNetV2 features + PCA for a folder or S3 prefix of fruit images.

Runs unchanged under ``spark-submit`` on a laptop and on EMR 7.x (Spark 3.5, Python 3.9)::

    spark-submit spark_jobs/extract_features.py --images DIR_OR_S3 --output DIR_OR_S3 [options]

Output: ``features/``, ``errors/``, ``pca/``, ``pca_model/`` and, written last, ``metrics.json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import sys
import time
from datetime import datetime, timezone
from typing import Dict, List, Optional

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from fruitjob import layout, storage
from fruitjob.featurizer import make_featurize_udf
from fruitjob.listing import is_local, list_input
from fruitjob.options import JobOptions, parse_options
from fruitjob.packaging import ship_package
from fruitjob.pca import components_for, fit_pca, load_pca, project, save_pca
from fruitjob.reading import read_images
from fruitjob.tflite_engine import convert_for_workers
from fruitjob.weights import FEATURE_DIM, WeightsError, resolve_weights

log = logging.getLogger("fruitflow.job")
IMAGES_PER_PARTITION = 2000


class JobError(RuntimeError):
    """A problem with the run's input or output that the user must fix; the message says how."""


def _partitions(spark: SparkSession, images: int, asked: Optional[int]) -> int:
    if asked:
        return asked
    slots = spark.sparkContext.defaultParallelism
    return slots * max(1, math.ceil(images / float(slots * IMAGES_PER_PARTITION)))


def _configure(spark: SparkSession, opts: JobOptions, partitions: int) -> None:
    conf = spark.conf
    # Small Arrow batches: a batch holds encoded and decoded images in the worker's memory (64 decoded
    # 224x224 images are ~10 MB); fewer than that only add per-batch overhead.
    conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(max(opts.batch_size * 4, 64)))
    conf.set("spark.sql.shuffle.partitions", str(partitions))
    # Images are small on disk but costly to featurize: never merge partitions because they are few bytes.
    conf.set("spark.sql.adaptive.coalescePartitions.enabled", "false")
    if is_local(opts.images):
        # binaryFile gets one path per listed image; above this threshold Spark lists them in a job of one task
        # per path (~25 ms each: 100 s for 4,000 images). Listing local files on the driver takes milliseconds.
        conf.set("spark.sql.sources.parallelPartitionDiscovery.threshold", str(2**31 - 1))


def _check_output(spark: SparkSession, opts: JobOptions) -> None:
    metrics = layout.child(opts.output, layout.METRICS)
    if storage.exists(spark, metrics):
        if not opts.overwrite:
            raise JobError(
                "%s already holds a finished run (metrics.json is there); pass --overwrite to replace it "
                "or choose another --output" % opts.output
            )
        storage.delete(spark, metrics)  # from now on a half-written replacement never looks finished


def _versions(spark: SparkSession) -> Dict[str, str]:
    import numpy
    import PIL
    import tensorflow

    return {
        "python": platform.python_version(),
        "spark": spark.version,
        "tensorflow": tensorflow.__version__,
        "numpy": numpy.__version__,
        "pillow": PIL.__version__,
    }


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

    ship_package(spark)
    _check_output(spark, opts)
    listing = list_input(spark, opts.images)
    if not listing.images:
        raise JobError(
            "no images under %s (%d files seen; expected .jpg, .jpeg or .png)" % (opts.images, listing.files_seen)
        )
    log.info("listed %d images and %d other files under %s", len(listing.images), len(listing.skipped), opts.images)
    lap("list")

    weights = resolve_weights(spark, opts.weights, opts.alpha, opts.seed)
    log.info("weights %s (alpha %s, sha256 %s)", weights.name, weights.alpha, weights.sha256[:12])
    if opts.featurizer == "tflite":
        weights = convert_for_workers(weights)  # once here, instead of once per Python worker
    lap("weights")

    partitions = _partitions(spark, len(listing.images), opts.partitions)
    _configure(spark, opts, partitions)
    featurize = make_featurize_udf(spark.sparkContext.broadcast(weights), opts.featurizer, opts.batch_size)
    images = read_images(spark, opts.images, listing.images)
    featurized = images.select("path", "label", "size", featurize("content").alias("result")).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    ok = featurized.where(F.col("result.error").isNull())
    ok.select("path", "label", "size", F.col("result.features").alias("features")).write.mode("overwrite").parquet(
        layout.child(opts.output, layout.FEATURES)
    )
    failed = featurized.where(F.col("result.error").isNotNull())
    failed.select("path", "label", F.col("result.error").alias("error")).write.mode("overwrite").parquet(
        layout.child(opts.output, layout.ERRORS)
    )
    featurized.unpersist()
    features = spark.read.parquet(layout.child(opts.output, layout.FEATURES))
    images_ok = features.count()
    images_failed = spark.read.parquet(layout.child(opts.output, layout.ERRORS)).count()
    log.info("featurized %d images, %d failed, in %d partitions", images_ok, images_failed, partitions)
    lap("featurize")

    pca_note = None
    if opts.pca_model:
        fitted = load_pca(opts.pca_model)
    else:
        k = components_for(opts.pca_components, images_ok, FEATURE_DIM)
        if k < opts.pca_components:
            pca_note = "%d components asked, %d used: %d images give at most %d" % (
                opts.pca_components,
                k,
                images_ok,
                max(images_ok - 1, 0),
            )
            log.warning(pca_note)
        if k < 1:
            raise JobError("PCA needs at least 2 decodable images; %d decoded (see errors/)" % images_ok)
        fitted = fit_pca(features, k)
        save_pca(spark, fitted, layout.child(opts.output, layout.PCA_MODEL))
    project(fitted, features).write.mode("overwrite").parquet(layout.child(opts.output, layout.PCA))
    lap("pca")

    total = sum(durations.values())
    versions = _versions(spark)
    metrics = {
        "images": opts.images,
        "output": opts.output,
        "files_seen": listing.files_seen,
        "files_skipped": len(listing.skipped),
        "images_total": len(listing.images),
        "images_ok": images_ok,
        "images_failed": images_failed,
        "feature_dim": FEATURE_DIM,
        "pca_components_asked": opts.pca_components,
        "pca_components": fitted.components,
        "pca_note": pca_note,
        "pca_model": opts.pca_model or layout.child(opts.output, layout.PCA_MODEL),
        "explained_variance": fitted.explained_variance,
        "explained_variance_total": float(sum(fitted.explained_variance)),
        "weights": weights.name,
        "weights_sha256": weights.sha256,
        "alpha": weights.alpha,
        "featurizer": opts.featurizer,
        "batch_size": opts.batch_size,
        "partitions": partitions,
        "versions": versions,
        "tensorflow_version": versions["tensorflow"],
        "spark_version": spark.version,
        "durations_s": dict(durations, total=round(total, 3)),
        "images_per_s": round(len(listing.images) / durations["featurize"], 2) if durations["featurize"] else None,
        "started_at": started_at.isoformat(),
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "engine": os.environ.get("FRUITFLOW_ENGINE", "local"),
    }
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
    try:
        run(spark, opts)
    except (JobError, WeightsError) as exc:
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
