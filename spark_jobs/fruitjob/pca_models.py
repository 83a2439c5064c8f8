"""Which PCA model a run projects with, and how every output comes to hold its own copy of it.

An output is self-contained: its ``pca_model/`` is the model its ``pca/`` rows are in, also when ``--pca-model``
gave it (the loaded model is saved into the output, ~0.5 MB; its id, a hash of mean and axes, is unchanged by the
save). ``space.json`` names it by id and by the path ``pca_model`` relative to the output, so an output can be moved,
copied, chained to with ``--pca-model`` or extended with ``--incremental`` wherever it lies.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Dict, Optional

from pyspark.sql import SparkSession

from fruitjob import layout, storage
from fruitjob.completeness import model_problem
from fruitjob.errors import JobError
from fruitjob.identity import IDENTITY_FILE, SpaceMismatch, check_same_space, load_identity
from fruitjob.options import JobOptions
from fruitjob.pca import FittedPca, load_pca, save_model

# How space.json names the output's own model: relative to the output, so that the output can move.
OWN_MODEL = layout.PCA_MODEL


def _recorded_elsewhere(record: Optional[Dict[str, object]]) -> Optional[str]:
    """The absolute model path an older output's space.json or metrics.json recorded (before outputs held a copy)."""
    recorded = str((record or {}).get("pca_model") or "")
    return recorded if recorded and recorded != OWN_MODEL else None


def _read_json(spark: SparkSession, uri: str) -> Optional[Dict[str, object]]:
    if not storage.exists(spark, uri):
        return None
    try:
        return json.loads(storage.read_bytes(spark, uri).decode())
    except (ValueError, UnicodeDecodeError):
        return None


def model_folder(spark: SparkSession, source: str) -> str:
    """The model folder ``--pca-model source`` means: a model folder itself, or an output's own ``pca_model/``
    (an older output without one: the model its space.json or metrics.json names by absolute path)."""
    own = layout.child(source, layout.PCA_MODEL)
    if storage.exists(spark, own):
        return own
    if storage.exists(spark, layout.child(source, "metadata")) or storage.exists(
        spark, layout.child(source, IDENTITY_FILE)
    ):
        return source  # a pca_model/ folder was given
    # metrics.json only where there is no space.json: a newer output's metrics name its own model where it was written
    record = _read_json(spark, layout.child(source, layout.SPACE)) or _read_json(
        spark, layout.child(source, layout.METRICS)
    )
    return _recorded_elsewhere(record) or own  # own when absent: load_model says so


def load_model(spark: SparkSession, folder: str, owner: str, remedy: str) -> FittedPca:
    """The complete model in ``folder``; a :class:`JobError` naming ``owner``, what is missing and ``remedy`` if not."""
    problem = model_problem(spark, folder)
    if problem:
        raise JobError("the PCA model of %s is unusable: %s (%s); %s" % (owner, problem, folder, remedy))
    fitted = load_pca(folder, folder)
    recorded = (load_identity(spark, folder) or {}).get("pca_model_id")
    if recorded and recorded != fitted.model_id:
        raise JobError(
            "the PCA model of %s is unusable: %s holds model %s but its %s says %s (a partial copy?); %s"
            % (owner, folder, fitted.model_id, IDENTITY_FILE, recorded, remedy)
        )
    return dataclasses.replace(fitted, origin=folder)


def existing_model(
    spark: SparkSession,
    opts: JobOptions,
    identity: Dict[str, object],
    previous: Optional[Dict[str, object]] = None,
    space: Optional[Dict[str, object]] = None,
) -> Optional[FittedPca]:
    """The model to project with instead of fitting one, loaded into memory (before ``--overwrite`` clears the
    output it may come from), or None to fit one.

    ``--pca-model`` (a pca_model/ folder or a run's output folder), or, for ``--incremental``, the one model the
    output's pca/ is in, as its space.json (older outputs: metrics.json) records it. An unfinished run whose model
    was not recorded yet fits one, over every row.
    """
    record = (space if space is not None else previous) if opts.incremental else None
    recorded_id = (record or {}).get("pca_model_id")
    if opts.pca_model:
        folder = model_folder(spark, opts.pca_model)
        remedy = "pass another --pca-model, or rerun %s with --overwrite" % opts.pca_model
        fitted = load_model(spark, folder, opts.pca_model, remedy)
        if recorded_id and recorded_id != fitted.model_id:
            raise SpaceMismatch(
                "pca/ in %s is in PCA model %s; adding rows projected with %s (model %s) would mix two spaces"
                % (opts.output, recorded_id, opts.pca_model, fitted.model_id)
            )
    elif recorded_id:
        folder = layout.child(opts.output, layout.PCA_MODEL)
        if not storage.exists(spark, folder):
            folder = _recorded_elsewhere(record) or folder
        remedy = "rerun with --overwrite (or --overwrite --pca-model <the output it came from>)"
        fitted = load_model(spark, folder, opts.output, remedy)
        if fitted.model_id != recorded_id:
            raise SpaceMismatch(
                "PCA model %s is no longer the one pca/ in %s was projected with (id %s, now %s); "
                "rerun with --overwrite" % (folder, opts.output, recorded_id, fitted.model_id)
            )
    else:
        return None
    saved = load_identity(spark, folder)
    if saved is not None:
        check_same_space(identity, saved, "PCA model %s" % folder)
    return dataclasses.replace(fitted, identity=identity)  # pca/ files record the space


def hold_in_output(spark: SparkSession, output: str, fitted: FittedPca, identity: Dict[str, object]) -> FittedPca:
    """The model, saved into the output's own pca_model/ unless that already is it (complete, same id)."""
    own = layout.child(output, layout.PCA_MODEL)
    there = model_problem(spark, own) is None and (load_identity(spark, own) or {}).get("pca_model_id")
    held = dataclasses.replace(fitted, uri=own)
    if there != fitted.model_id:
        save_model(spark, held, identity)
    return held
