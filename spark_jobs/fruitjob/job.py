"""The job: MobileNetV2 features + PCA for a folder or S3 prefix of fruit images (``spark_jobs/extract_features.py``
is its spark-submit entry script).

Runs unchanged under ``spark-submit`` on a laptop and on EMR 7.x (Spark 3.5, Python 3.9)::

    spark-submit spark_jobs/extract_features.py --images DIR_OR_S3 --output DIR_OR_S3 [options]

Output: ``features/``, ``errors/``, ``pca/``, ``pca_model/``, ``health/`` and, written last, ``metrics.json``.
"""

from __future__ import annotations

import logging
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Dict, List, Optional

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from fruitjob import layout, progress, storage
from fruitjob.accounting import Done, count_outputs, earlier_metrics, previous_run, run_metrics, write_metrics
from fruitjob.completeness import dataset_complete
from fruitjob.errors import JobError
from fruitjob.featurizer import warm_up_workers
from fruitjob.health import health_alongside
from fruitjob.identity import check_same_space, identity_of
from fruitjob.incremental import Plan, plan_increment, replace_dataset
from fruitjob.laps import Laps
from fruitjob.listing import Listing, list_input
from fruitjob.lock import Lease
from fruitjob.metrics import RunMetrics
from fruitjob.options import JobOptions, parse_options
from fruitjob.outputs import (
    check_output,
    clear_output,
    discard_unfinished_writes,
    drop_stale_rows,
    mark_unfinished,
    write_errors,
    write_features,
)
from fruitjob.packaging import ship_package
from fruitjob.pca import FittedPca, fit_and_save, project
from fruitjob.pca_models import existing_model, hold_in_output
from fruitjob.quality import feature_quality
from fruitjob.reading import read_images, reader_for
from fruitjob.rules import TFLITE_FEATURIZERS, output_inside_linked_folder
from fruitjob.shipped_model import load_shipped
from fruitjob.space import load_space, save_space
from fruitjob.tflite_engine import convert_for_workers, resolve_converted
from fruitjob.tuning import configure, partitions_for
from fruitjob.weights import resolve_weights

__all__ = ["JobError", "main", "run"]

log = logging.getLogger("fruitflow.job")


def _listing(spark: SparkSession, opts: JobOptions) -> Listing:
    listing = list_input(spark, opts.images)
    inside_a_link = output_inside_linked_folder(opts.output, listing.linked_folders)
    if inside_a_link:
        raise JobError(inside_a_link)
    if not listing.images:
        raise JobError(
            "no images under %s (%d files seen; expected .jpg, .jpeg or .png)" % (opts.images, listing.files_seen)
        )
    log.info(
        "listed %d images (%d unusable as listed) and %d other files under %s",
        len(listing.images),
        len(listing.problems),
        len(listing.skipped),
        opts.images,
    )
    return listing


def _check_space(identity: Dict[str, object], opts: JobOptions, previous, space) -> None:
    """An --incremental run adds to the output's own feature space, as its space.json (or older metrics) says."""
    if space is not None:
        check_same_space(identity, space.get("identity") or {}, "the run already in %s" % opts.output)
    elif previous is not None:
        check_same_space(identity, previous, "the run already in %s" % opts.output)


def _write_pca(spark: SparkSession, opts: JobOptions, source: Optional[FittedPca], identity, features):
    """pca/ for every row of features/, all in one space; returns (the model, a note on components or None).

    A ``source`` model is already in the output's pca_model/ and in space.json (``run``).
    """
    pca_uri = layout.child(opts.output, layout.PCA)
    if source is None:
        # pca/ is written while the model is saved (fit_and_save); space.json names the model once both are there
        fitted, note = fit_and_save(spark, opts, features, identity, pca_uri)
        save_space(spark, opts.output, identity, fitted.model_id)
        return fitted, note
    if not (opts.incremental and dataset_complete(spark, pca_uri)):
        project(source, features).write.mode("overwrite").parquet(pca_uri)
        return source, None
    existing = storage.read_parquet(spark, pca_uri)
    keep = existing.join(features.select("path"), on="path", how="left_semi")
    if "pca_model_id" in existing.columns:
        keep = keep.where(F.col("pca_model_id") == source.model_id)
    new = project(source, features.join(keep.select("path"), on="path", how="left_anti"))
    if "pca_model_id" in existing.columns and keep.count() == existing.count():
        new.write.mode("append").parquet(pca_uri)
    else:  # rows of a crashed run, or of an older output without model ids: rewrite them in the one space
        keep = keep.withColumn("pca_model_id", F.lit(source.model_id)).select(*layout.PCA_COLUMNS)
        replace_dataset(spark, pca_uri, keep.unionByName(new))
    return source, None


def _record_space(
    spark: SparkSession, opts: JobOptions, source: Optional[FittedPca], identity, space
) -> Optional[FittedPca]:
    """space.json before the first row; a model known already (--pca-model, or the one an --incremental output is
    in) is first saved into the output, so that from here on the output holds the model its rows will be in."""
    if source is None:
        save_space(spark, opts.output, identity)
        return None
    held = hold_in_output(spark, opts.output, source, identity)
    # an output's own model keeps the origin it was recorded with (the week it was chained to)
    origin = (space or {}).get("pca_model_origin") if source.origin == held.uri else source.origin
    save_space(spark, opts.output, identity, held.model_id, origin)
    return held


def run(spark: SparkSession, opts: JobOptions) -> RunMetrics:
    """Run the whole job; returns the metrics it wrote."""
    started_at = datetime.now(timezone.utc)
    run_id = uuid.uuid4().hex
    laps = Laps(on_lap=progress.stage_done)

    ship_package(spark)
    previous = check_output(spark, opts)
    earlier = previous if opts.incremental else earlier_metrics(spark, opts.output) if opts.overwrite else None
    space = load_space(spark, opts.output) if opts.incremental else None
    # the workers import their runtime while the driver lists and resolves the weights
    warm_up_workers(spark, opts.featurizer)
    listed_at = datetime.now(timezone.utc)  # before the listing: a file changed since may be missing from it
    listing = _listing(spark, opts)
    plan = Plan(todo=listing.readable, already_done=0, changed=[])
    if opts.incremental:
        plan = plan_increment(spark, opts.output, listing.images)
        log.info(
            "incremental: %d images already done, %d to featurize, %d rows of files no longer in the input removed",
            plan.already_done,
            len(plan.todo),
            len(plan.removed),
        )
    partitions = partitions_for(spark, len(plan.todo), opts.partitions)
    configure(spark, opts, partitions)
    reader = reader_for(opts.images, opts.reader)
    lease = Lease(spark, opts.output, opts.flow_run_id).acquire()
    try:
        laps("list")
        # Spark indexes the image files in the JVM (binaryFile) while Python resolves the weights.
        indexing = ThreadPoolExecutor(max_workers=1)
        images = indexing.submit(read_images, spark, opts.images, plan.todo, partitions, reader) if plan.todo else None
        indexing.shutdown(wait=False)
        if opts.tflite_model:  # converted and staged by the flow: checked against the weights, no TensorFlow
            weights = load_shipped(spark, opts.tflite_model, opts.weights, opts.alpha, opts.seed, opts.featurizer)
        elif opts.featurizer in TFLITE_FEATURIZERS:  # a cached converted model: no TensorFlow, no Keras model built
            weights = resolve_converted(spark, opts.weights, opts.alpha, opts.seed, opts.featurizer)
        else:
            weights = resolve_weights(spark, opts.weights, opts.alpha, opts.seed)
        identity = identity_of(weights.name, weights.sha256, weights.alpha, opts.featurizer)
        log.info("weights %s (alpha %s, sha256 %s)", weights.name, weights.alpha, weights.sha256[:12])
        _check_space(identity, opts, previous, space)
        source = existing_model(spark, opts, identity, previous, space)  # before any image: fail fast
        if opts.featurizer in TFLITE_FEATURIZERS:
            weights = convert_for_workers(weights, opts.featurizer)  # once here (if not cached), not once per worker
        laps("weights")

        if opts.overwrite:
            clear_output(spark, opts.output)  # after existing_model: --pca-model may name this very output
        mark_unfinished(spark, opts.output)
        discard_unfinished_writes(spark, opts.output)  # under the lease: what a killed run half-wrote is never read
        source = _record_space(spark, opts, source, identity, space)
        drop_stale_rows(spark, opts.output, plan.stale)  # changed files, and files no longer in the input
        outcome = None
        if images is not None:
            mode = "append" if opts.incremental else "overwrite"
            outcome = write_features(spark, opts, weights, images.result(), reader, run_id, mode)
        laps("featurize")  # read -> features written: the stage the benchmark compares

        errors_written = write_errors(spark, opts, listing.problems, plan.todo, run_id, outcome)
        counts = count_outputs(spark, opts, listing, plan, outcome, errors_written)
        log.info(
            "featurized %d images, %d failed, in %d partitions",
            counts.images_ok,
            counts.images_failed,
            partitions,
        )
        laps("errors")

        with health_alongside(spark, opts, identity, partitions) as health_stage:
            features = storage.read_parquet(spark, layout.child(opts.output, layout.FEATURES))
            fitted, pca_note = _write_pca(spark, opts, source, identity, features)
            laps("pca")
            pca = storage.read_parquet(spark, layout.child(opts.output, layout.PCA))
            quality = feature_quality(features, pca, total=counts.features_total)  # the rows are known: no count()
            laps("quality")
            health = health_stage.result()
        laps("health")  # what the stage added to the wall after the quality score; its own time: health.seconds
        done = Done(listing, plan, counts, fitted, pca_note, source is None, identity, laps.seconds, partitions)
        metrics = run_metrics(spark, opts, done, run_id=run_id, reader=reader, started_at=started_at, quality=quality)
        metrics = metrics.replace(
            listed_at=listed_at.isoformat(), previous_run=previous_run(earlier, opts.overwrite), health=health
        )
        return write_metrics(spark, opts.output, metrics)
    finally:
        lease.release()


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
    except JobError as exc:  # WeightsError, SpaceMismatch, PcaError among them
        log.error("%s", exc)
        return 2
    finally:
        progress.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
