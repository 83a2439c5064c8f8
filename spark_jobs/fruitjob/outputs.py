"""What the job writes under ``--output``, apart from the PCA: features/, errors/, and the rules of reruns."""

from __future__ import annotations

import json
import logging
from typing import Dict, List, Optional

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from fruitjob import layout, storage
from fruitjob.completeness import REPLACEMENT_SUFFIX, TEMPORARY, dataset_complete
from fruitjob.errors import JobError
from fruitjob.featurizer import FEATURE_SCHEMA, featurize_batches
from fruitjob.identity import identity_of, recorded
from fruitjob.incremental import replace_dataset, without_paths
from fruitjob.listing import ImageFile
from fruitjob.options import JobOptions
from fruitjob.pass_outcome import Outcomes, PassOutcome
from fruitjob.reading import listing_frame, unread_images
from fruitjob.rules import OUTPUT_PARTS, output_inside_input, output_refusal
from fruitjob.small_tables import write_table

__all__ = [
    "JobError",
    "check_output",
    "clear_output",
    "discard_unfinished_writes",
    "drop_stale_rows",
    "listing_frame",
    "mark_unfinished",
    "present_parts",
    "write_errors",
    "write_features",
]

log = logging.getLogger("fruitflow.job")
ERRORS_TABLE = pa.schema(
    [
        ("path", pa.string()),
        ("label", pa.string()),
        ("error", pa.string()),
        ("size", pa.int64()),
        ("modified", pa.int64()),
        ("etag", pa.string()),
        ("run_id", pa.string()),
    ]
)


def present_parts(spark: SparkSession, output: str) -> List[str]:
    """Which of the output's parts (features/, errors/, pca/, pca_model/, metrics.json) are there, and space.json or
    the staged features: a run killed before its first dataset was complete has written into the output too."""
    names = (*OUTPUT_PARTS, layout.SPACE, layout.STAGING)
    return [name for name in names if storage.exists(spark, layout.child(output, name))]


def check_output(spark: SparkSession, opts: JobOptions) -> Optional[Dict[str, object]]:
    """Refuse an output inside the input, or holding a run the options do not say what to do with.

    Reads only. Returns the finished run's metrics when --incremental builds on it.
    """
    problem = output_inside_input(opts.images, opts.output) or output_refusal(
        opts.output, present_parts(spark, opts.output), opts.overwrite, opts.incremental
    )
    if problem:
        raise JobError(problem)
    metrics_uri = layout.child(opts.output, layout.METRICS)
    if opts.incremental and storage.exists(spark, metrics_uri):
        return json.loads(storage.read_bytes(spark, metrics_uri).decode())
    return None


def clear_output(spark: SparkSession, output: str) -> None:
    """--overwrite, once every check has passed: nothing of the replaced run is left for a later run to pick up.

    What records the run goes first (metrics.json, then space.json): killed half-way, the output never names a model
    or rows that are gone.
    """
    for name in (layout.METRICS, layout.SPACE, *OUTPUT_PARTS, layout.STAGING, layout.SUMMARY, layout.PLOT):
        storage.delete(spark, layout.child(output, name))


def mark_unfinished(spark: SparkSession, output: str) -> None:
    """Called once every check has passed, before the first write: from here on a half-written run never looks
    finished, and a rerun resumes or redoes it. (A refused run leaves the finished one as it was.)"""
    storage.delete(spark, layout.child(output, layout.METRICS))


def discard_unfinished_writes(spark: SparkSession, output: str) -> None:
    """What a killed run left half-written goes before anything reads or appends (``completeness``; under the lease).

    A dataset without ``_SUCCESS`` (an overwrite killed mid-way: only ``_temporary/``) goes whole: its rows are
    not there, and the run's plan counted them as not done. A complete dataset loses only a killed append's
    ``_temporary/``, whose committed task files Spark's next commit into the same folder would otherwise take in.
    A rewrite killed before its swap (``.next``) goes too: the plan was made from the dataset it would replace; and
    the temporary file of a small file's write killed before its rename.
    """
    for name in storage.list_names(spark, output):
        if name.startswith(".") and name.endswith(storage.WRITE_LEFTOVER_SUFFIX):
            storage.delete(spark, layout.child(output, name))
    storage.delete(spark, layout.child(output, layout.STAGING))  # what a killed run of an older job staged
    for name in (layout.FEATURES, layout.ERRORS, layout.PCA):
        uri = layout.child(output, name)
        storage.delete(spark, uri + REPLACEMENT_SUFFIX)
        if not storage.exists(spark, uri):
            continue
        if not dataset_complete(spark, uri):
            log.warning("%s was left unfinished by a killed run: removed, its rows are written again", uri)
            storage.delete(spark, uri)
        else:
            storage.delete(spark, layout.child(uri, TEMPORARY))


def write_features(
    spark: SparkSession, opts: JobOptions, weights, images: DataFrame, reader: str, run_id: str, mode: str
) -> PassOutcome:
    """Features of ``images`` into features/ (mode: overwrite or append), in one pass of the model; returns what the
    pass saw (images featurized, failures with their reasons), for errors/ and the counts. Each file records the
    feature space's identity in its footer (``identity.recorded``).

    Nothing is staged nor read back: the failures travel to the driver with the tasks' results (``pass_outcome``).
    """
    outcomes = Outcomes(spark.sparkContext)
    featurize = featurize_batches(
        spark.sparkContext.broadcast(weights), opts.featurizer, opts.batch_size, reader == "python", run_id, outcomes
    )
    featurized = images.mapInArrow(featurize, FEATURE_SCHEMA)
    identity = identity_of(weights.name, weights.sha256, weights.alpha, opts.featurizer)
    columns = [recorded(F.col(c), c, identity) if c == "features" else c for c in layout.FEATURE_COLUMNS]
    featurized.select(*columns).write.mode(mode).parquet(layout.child(opts.output, layout.FEATURES))
    return outcomes.outcome()


def _error_table(images: List[ImageFile], reasons: List[Optional[str]], run_id: str) -> pa.Table:
    """errors/ rows of ``images``, each with its reason (layout.ERROR_COLUMNS)."""
    return pa.table(
        {
            "path": pa.array([i.path for i in images], pa.string()),
            "label": pa.array([i.label for i in images], pa.string()),
            "error": pa.array(reasons, pa.string()),
            "size": pa.array([i.size for i in images], pa.int64()),
            "modified": pa.array([i.modified for i in images], pa.int64()),
            "etag": pa.array([i.etag for i in images], pa.string()),
            "run_id": pa.array([run_id] * len(images), pa.string()),
        },
        schema=ERRORS_TABLE,
    )


def _unread(spark: SparkSession, opts: JobOptions, todo: List[ImageFile], run_id: str, failed: List[str]):
    """The listed images the pass never saw (binaryFile skips what it cannot read), and their reason.

    features/ is read back here, rather than taken from the pass's report, because the pass reports a count per task,
    not its paths: which listed image binaryFile skipped (Glacier, KMS denied: ``ignoreCorruptFiles``) is known only
    from the paths that came through, and sending every featurized path to the driver through the accumulator would
    cost every run memory and traffic in proportion to its input, to serve the rare run where a count falls short
    (the only case this runs). The read is of this run's ``path`` column only: rows of earlier --incremental runs
    carry other run ids (their row groups skipped by the Parquet filter); a featurized path is there once its task's
    files are committed, whichever attempt committed them, and the anti-join asks only whether a path is there, so a
    retried task or a speculative copy can neither hide an image nor make one look unread. The failures the pass
    reported (by path) count as seen.
    """
    features = storage.read_parquet(spark, layout.child(opts.output, layout.FEATURES))
    seen = features.where(F.col("run_id") == run_id).select("path")
    if failed:
        seen = seen.unionByName(spark.createDataFrame([(path,) for path in failed], "path string"))
    reasons = {row["path"]: row["error"] for row in unread_images(spark, todo, seen).select("path", "error").collect()}
    missing = [image for image in todo if image.path in reasons]
    return missing, [reasons[image.path] for image in missing]


def write_errors(
    spark: SparkSession,
    opts: JobOptions,
    problems: List[ImageFile],
    todo: List[ImageFile],
    run_id: str,
    outcome: Optional[PassOutcome],
) -> int:
    """Every image of this run that has no features, with its reason, into errors/ (replacing the last run's:
    an --incremental run retries every image that failed before); returns how many.

    Images known to be unusable from the listing, images the model could not take (``outcome``: the featurize pass),
    and listed images Spark's reader did not return (binaryFile skips what it cannot read).
    """
    images, reasons = list(problems), [image.problem for image in problems]
    if outcome is not None:
        by_path = {image.path: image for image in todo}
        images += [by_path[path] for path, _ in outcome.failures]
        reasons += [reason for _, reason in outcome.failures]
        if outcome.seen < len(todo):  # only then is a listed image missing: skip the join otherwise
            unread, why = _unread(spark, opts, todo, run_id, [path for path, _ in outcome.failures])
            images, reasons = images + unread, reasons + why
    # the rows are here, on the driver: one file, no Spark job (small_tables)
    write_table(spark, layout.child(opts.output, layout.ERRORS), _error_table(images, reasons, run_id))
    return len(images)


def drop_stale_rows(spark: SparkSession, output: str, paths: List[str]) -> None:
    """Images changed since they were featurized: their old rows go before new ones come."""
    if not paths:
        return
    for name in (layout.FEATURES, layout.PCA):
        uri = layout.child(output, name)
        if storage.exists(spark, uri):
            replace_dataset(spark, uri, without_paths(storage.read_parquet(spark, uri), paths))
