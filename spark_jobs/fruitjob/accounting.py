"""What a run did, counted in the data it wrote, and the :class:`RunMetrics` the job writes last (metrics.json)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Dict, Optional

from pyspark.sql import SparkSession

from fruitjob import layout, storage
from fruitjob.errors import JobError
from fruitjob.incremental import Plan
from fruitjob.listing import Listing
from fruitjob.metrics import FeatureQuality, FolderSkipped, PreviousRun, RunMetrics, versions
from fruitjob.options import JobOptions
from fruitjob.pass_outcome import PassOutcome
from fruitjob.pca import FittedPca, PcaError
from fruitjob.rules import FEATURE_DIM

log = logging.getLogger("fruitflow.job")
PREVIOUS_RUN_KEYS = ("started_at", "finished_at", "images", "run_id", "flow_run_id", "features_total")
# The EMR step's id, known only once the step runs: its wrapper exports it (tasks/emr/steps.py); absent elsewhere.
# The rest of the run's context comes with the job's options (--engine, --cluster-id, --flow-run-id).
STEP_ID_VARIABLE = "FRUITFLOW_STEP_ID"


@dataclass(frozen=True)
class Counts:
    images_total: int
    images_ok: int
    images_failed: int
    features_total: int
    errors_total: int


@dataclass(frozen=True)
class Done:
    """Everything the job knows at its end, for :func:`run_metrics`."""

    listing: Listing
    plan: Plan
    counts: Counts
    fitted: FittedPca
    pca_note: Optional[str]
    pca_refit: bool
    identity: Dict[str, object]
    durations: Dict[str, float]
    partitions: int


def count_outputs(
    spark: SparkSession,
    opts: JobOptions,
    listing: Listing,
    plan: Plan,
    outcome: Optional[PassOutcome],
    errors_written: int,
) -> Counts:
    """What this run did, from what its featurize pass reported and the errors/ rows it wrote, checked to add up.

    Only an --incremental run counts features/ (its earlier rows are in it too); otherwise they are this run's.
    """
    features_uri = layout.child(opts.output, layout.FEATURES)
    if not storage.exists(spark, features_uri):
        raise PcaError("no image could be featurized (%d errors: see errors/)" % len(listing.problems))
    images_ok = outcome.featurized if outcome is not None else 0
    counts = Counts(
        images_total=len(plan.todo) + len(listing.problems),
        images_ok=images_ok,
        images_failed=errors_written,
        features_total=storage.read_parquet(spark, features_uri).count() if opts.incremental else images_ok,
        errors_total=errors_written,
    )
    lost = counts.images_total - counts.images_ok - counts.images_failed
    if lost:
        raise JobError(
            "%d of this run's %d images are neither in features/ nor in errors/: the output is incomplete"
            % (lost, counts.images_total)
        )
    return counts


def run_metrics(
    spark: SparkSession,
    opts: JobOptions,
    done: Done,
    *,
    run_id: str,
    reader: str,
    started_at: datetime,
    quality: Optional[FeatureQuality],
) -> RunMetrics:
    durations = dict(done.durations, total=round(sum(done.durations.values()), 3))
    featurize = done.durations.get("featurize")
    found = versions(spark.version)
    identity = dict(done.identity)
    return RunMetrics(
        images=opts.images,
        output=opts.output,
        files_seen=done.listing.files_seen,
        files_skipped=len(done.listing.skipped),
        folders_skipped=[FolderSkipped(path, reason) for path, reason in done.listing.skipped_folders],
        images_total=done.counts.images_total,
        images_ok=done.counts.images_ok,
        images_failed=done.counts.images_failed,
        features_total=done.counts.features_total,
        errors_total=done.counts.errors_total,
        images_already_done=done.plan.already_done,
        images_changed=len(done.plan.changed),
        images_removed=len(done.plan.removed),
        images_removed_per_class=done.plan.removed_per_class(),
        feature_dim=FEATURE_DIM,
        pca_components_asked=opts.pca_components,
        pca_components=done.fitted.components,
        pca_note=done.pca_note,
        pca_model=done.fitted.uri,
        pca_model_id=done.fitted.model_id,
        pca_refit=done.pca_refit,
        explained_variance=done.fitted.explained_variance,
        explained_variance_total=float(sum(done.fitted.explained_variance)),
        weights=str(identity.pop("weights")),
        weights_sha256=str(identity.pop("weights_sha256")),
        alpha=float(identity.pop("alpha")),  # type: ignore[arg-type]
        featurizer=str(identity.pop("featurizer")),
        calibration=identity.pop("calibration", None),  # type: ignore[arg-type]
        batch_size=opts.batch_size,
        partitions=done.partitions,
        reader=reader,
        versions=found,
        tensorflow_version=found["tensorflow"],
        spark_version=spark.version,
        durations_s=durations,
        images_per_s=round(len(done.plan.todo) / featurize, 2) if featurize else None,
        engine=opts.engine or "local",
        cluster_id=opts.cluster_id,
        step_id=os.environ.get(STEP_ID_VARIABLE) or None,
        run_id=run_id,
        flow_run_id=opts.flow_run_id,
        started_at=started_at.isoformat(),
        feature_quality=quality,
        extra=identity,  # identity fields this module does not name yet stay in metrics.json
    )


def earlier_metrics(spark: SparkSession, output: str) -> Optional[Dict[str, Any]]:
    """The metrics.json of the run already in ``output`` (read before --overwrite replaces it), if it finished."""
    try:
        return storage.read_json_if_present(spark, layout.child(output, layout.METRICS))
    except ValueError:  # not what a job writes: there is no previous run to name
        return None


def previous_run(earlier: Optional[Dict[str, Any]], replaced: bool) -> Optional[PreviousRun]:
    """The run this output held before this one, as its own metrics.json recorded it (never another output's)."""
    if not earlier:
        return None
    return PreviousRun(**{key: earlier.get(key) for key in PREVIOUS_RUN_KEYS}, replaced=replaced)


def write_metrics(spark: SparkSession, output: str, metrics: RunMetrics) -> RunMetrics:
    """Written last: its presence means the run finished."""
    metrics = metrics.replace(finished_at=datetime.now(timezone.utc).isoformat())
    uri = layout.child(output, layout.METRICS)
    storage.write_bytes(spark, uri, json.dumps(metrics.to_dict(), indent=2).encode())
    log.info("wrote %s", uri)
    return metrics
