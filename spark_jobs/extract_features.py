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
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Dict, List, Optional

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from fruitjob import layout, progress, storage
from fruitjob.featurizer import make_featurize_udf, warm_up_workers
from fruitjob.identity import SpaceMismatch, check_same_space, identity_of, load_identity, save_identity
from fruitjob.incremental import Plan, plan_increment, replace_dataset, without_paths
from fruitjob.listing import ImageFile, is_local, list_input
from fruitjob.options import JobOptions, parse_options
from fruitjob.packaging import ship_package
from fruitjob.pca import FittedPca, components_for, fit_pca, load_pca, project, save_pca
from fruitjob.reading import read_images, unread_images
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
    # binaryFile packs files into splits by bytes, each file costing openCostInBytes (4 MB) on top of its size:
    # with small images that is by count. Ask for `partitions` splits, whatever the total size.
    conf.set("spark.sql.files.minPartitionNum", str(partitions))
    conf.set("spark.sql.files.maxPartitionBytes", str(1 << 40))
    # A file that vanishes between listing and reading is reported in errors/ (unread_images), not fatal.
    conf.set("spark.sql.files.ignoreMissingFiles", "true")
    if is_local(opts.images):
        # binaryFile gets one path per listed image; above this threshold Spark lists them in a job of one task
        # per path (~25 ms each: 100 s for 4,000 images). Listing local files on the driver takes milliseconds.
        conf.set("spark.sql.sources.parallelPartitionDiscovery.threshold", str(2**31 - 1))


def _check_output(spark: SparkSession, opts: JobOptions) -> Optional[Dict[str, object]]:
    """Refuse to clobber a finished run; returns its metrics when --incremental builds on it."""
    metrics_uri = layout.child(opts.output, layout.METRICS)
    previous = None
    if storage.exists(spark, metrics_uri):
        if not (opts.overwrite or opts.incremental):
            raise JobError(
                "%s already holds a finished run (metrics.json is there); pass --overwrite to replace it, "
                "--incremental to add new images to it, or choose another --output" % opts.output
            )
        previous = json.loads(storage.read_bytes(spark, metrics_uri).decode())
    # From here on a half-written run never looks finished; a rerun resumes or redoes it.
    storage.delete(spark, metrics_uri)
    return previous if opts.incremental else None


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


def _featurize(spark: SparkSession, opts: JobOptions, weights, images: DataFrame, mode: str) -> None:
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


def _write_errors(spark: SparkSession, opts: JobOptions, images: List[ImageFile], mode: str) -> None:
    """Images the model could not take, and listed images Spark could not read, into errors/."""
    staged = layout.child(opts.output, layout.STAGING)
    done = spark.read.parquet(staged)
    failed = done.where(F.col("error").isNotNull()).drop("features")
    if done.count() < len(images):  # only then is a listed image missing: skip the join otherwise
        failed = failed.unionByName(unread_images(spark, images, done))
    failed.write.mode(mode).parquet(layout.child(opts.output, layout.ERRORS))
    storage.delete(spark, staged)


def _drop_stale_rows(spark: SparkSession, output: str, paths: List[str]) -> None:
    """Images whose size changed since they were featurized: their old rows go before new ones come."""
    if not paths:
        return
    for name in (layout.FEATURES, layout.ERRORS, layout.PCA):
        uri = layout.child(output, name)
        if storage.exists(spark, uri):
            replace_dataset(spark, uri, without_paths(spark.read.parquet(uri), paths))


def _pca_source(spark: SparkSession, opts: JobOptions, identity: Dict[str, object]) -> Optional[FittedPca]:
    """An existing model to project with (--pca-model, or the output's own when incremental), if any."""
    if opts.pca_model:
        uri = opts.pca_model
        if storage.exists(spark, layout.child(uri, layout.PCA_MODEL)):
            uri = layout.child(uri, layout.PCA_MODEL)  # the output folder of a run was given
    elif opts.incremental and storage.exists(spark, layout.child(opts.output, layout.PCA_MODEL)):
        uri = layout.child(opts.output, layout.PCA_MODEL)
    else:
        return None
    saved = load_identity(spark, uri)
    if saved is not None:
        check_same_space(identity, saved, "PCA model %s" % uri)
    return load_pca(uri, uri)


def _fit(spark: SparkSession, opts: JobOptions, features, identity: Dict[str, object]):
    images_ok = features.count()
    k = components_for(opts.pca_components, images_ok, FEATURE_DIM)
    note = None
    if k < opts.pca_components:
        note = "%d components asked, %d used: %d images give at most %d" % (
            opts.pca_components,
            k,
            images_ok,
            max(images_ok - 1, 0),
        )
        log.warning(note)
    if k < 1:
        raise JobError("PCA needs at least 2 decodable images; %d decoded (see errors/)" % images_ok)
    model_uri = layout.child(opts.output, layout.PCA_MODEL)
    fitted = fit_pca(features, k, model_uri)
    save_pca(spark, fitted, model_uri)
    save_identity(spark, model_uri, identity)
    return fitted, note


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
    previous = _check_output(spark, opts)
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
    partitions = _partitions(spark, len(plan.todo), opts.partitions)
    _configure(spark, opts, partitions)
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
    source = _pca_source(spark, opts, identity)  # before any image: a mismatch must fail fast
    if opts.featurizer == "tflite":
        weights = convert_for_workers(weights)  # once here, instead of once per Python worker
    lap("weights")

    _drop_stale_rows(spark, opts.output, plan.changed)
    errors_uri = layout.child(opts.output, layout.ERRORS)
    errors_before = (
        spark.read.parquet(errors_uri).count() if opts.incremental and storage.exists(spark, errors_uri) else 0
    )
    mode = "append" if opts.incremental else "overwrite"
    if images is not None:
        _featurize(spark, opts, weights, images.result(), mode)
    lap("featurize")  # read -> features written: the stage the benchmark compares

    if plan.todo:
        _write_errors(spark, opts, plan.todo, mode)
    features = spark.read.parquet(layout.child(opts.output, layout.FEATURES))
    features_total = features.count()
    errors_total = spark.read.parquet(errors_uri).count()
    images_failed = errors_total - errors_before
    images_ok = len(plan.todo) - images_failed
    log.info("featurized %d images, %d failed, in %d partitions", images_ok, images_failed, partitions)
    lap("errors")

    pca_note = None
    if source is None:
        fitted, pca_note = _fit(spark, opts, features, identity)
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
    versions = _versions(spark)
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
    except (JobError, WeightsError, SpaceMismatch) as exc:
        log.error("%s", exc)
        return 2
    finally:
        progress.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
