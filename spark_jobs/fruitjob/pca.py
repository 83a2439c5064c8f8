"""Centred PCA with Spark ML, saved both as a Spark ML model and as plain numpy arrays."""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import PCA, StandardScaler
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from fruitjob import layout, storage
from fruitjob.identity import SpaceMismatch, check_same_space, load_identity, save_identity
from fruitjob.options import JobOptions
from fruitjob.rules import FEATURE_DIM

log = logging.getLogger("fruitflow.pca")


class PcaError(ValueError):
    """The PCA cannot be fitted (too few images); the message says why."""


@dataclass(frozen=True)
class FittedPca:
    model: PipelineModel  # StandardScaler(mean only) -> PCA: Spark ML's PCA does not centre by itself
    explained_variance: List[float]
    uri: str  # where the model is (or will be) saved

    @property
    def components(self) -> int:
        return len(self.explained_variance)

    @property
    def model_id(self) -> str:
        """The PCA space's identity: a hash of its mean and components (every pca/ row carries it)."""
        mean = np.asarray(self.model.stages[0].mean.toArray(), dtype=np.float64)
        components = np.asarray(self.model.stages[1].pc.toArray(), dtype=np.float64)
        return hashlib.sha256(mean.tobytes() + components.tobytes()).hexdigest()[:16]


def components_for(requested: int, images_ok: int, dim: int) -> int:
    """At most one component fewer than images (centred data has that rank), and at most the dimension."""
    return max(0, min(requested, images_ok - 1, dim))


def _vectors(features: DataFrame) -> DataFrame:
    return features.select("path", "label", array_to_vector("features").alias("x"))


def fit_pca(features: DataFrame, k: int, uri: str) -> FittedPca:
    scaler = StandardScaler(withMean=True, withStd=False, inputCol="x", outputCol="centred")
    pca = PCA(k=k, inputCol="centred", outputCol="pcv")
    model = Pipeline(stages=[scaler, pca]).fit(_vectors(features))
    variance = [float(v) for v in model.stages[1].explainedVariance.toArray()]
    return FittedPca(model=model, explained_variance=variance, uri=uri)


def project(fitted: FittedPca, features: DataFrame) -> DataFrame:
    projected = fitted.model.transform(_vectors(features))
    return projected.select(
        "path", "label", vector_to_array("pcv", "float32").alias("pca"), F.lit(fitted.model_id).alias("pca_model_id")
    )


def save_pca(spark: SparkSession, fitted: FittedPca, uri: str) -> None:
    fitted.model.write().overwrite().save(uri)
    buffer = io.BytesIO()
    np.savez(
        buffer,
        mean=fitted.model.stages[0].mean.toArray(),
        components=fitted.model.stages[1].pc.toArray(),
        explained_variance=np.asarray(fitted.explained_variance),
    )
    storage.write_bytes(spark, uri + "/pca_model.npz", buffer.getvalue())


def load_pca(uri: str, label: str) -> FittedPca:
    model = PipelineModel.load(uri)
    variance = [float(v) for v in model.stages[1].explainedVariance.toArray()]
    return FittedPca(model=model, explained_variance=variance, uri=label)


def existing_model(
    spark: SparkSession,
    opts: JobOptions,
    identity: Dict[str, object],
    previous: Optional[Dict[str, object]] = None,
    space: Optional[Dict[str, object]] = None,
) -> Optional[FittedPca]:
    """The model to project with instead of fitting one, if any.

    ``--pca-model`` (a pca_model/ folder or a run's output folder), or, for ``--incremental``, the one model the
    output's pca/ is in: as recorded in its space.json (``space``), else (older outputs) its own pca_model/ or the
    earlier run's ``--pca-model`` (``previous``).
    """
    recorded = (space or {}).get("pca_model") or (previous or {}).get("pca_model")
    if opts.pca_model:
        uri = opts.pca_model
        if storage.exists(spark, layout.child(uri, layout.PCA_MODEL)):
            uri = layout.child(uri, layout.PCA_MODEL)  # the output folder of a run was given
        if opts.incremental and recorded and recorded != uri:
            raise SpaceMismatch(
                "pca/ in %s was projected with %s; adding rows projected with %s would mix two spaces"
                % (opts.output, recorded, uri)
            )
    elif opts.incremental and (space or {}).get("pca_model"):
        uri = str(space["pca_model"])
    elif opts.incremental and storage.exists(spark, layout.child(opts.output, layout.PCA_MODEL)):
        uri = layout.child(opts.output, layout.PCA_MODEL)
    elif opts.incremental and recorded:
        uri = str(recorded)  # the output was projected with another run's model: stay in that space
    else:
        return None
    saved = load_identity(spark, uri)
    if saved is not None:
        check_same_space(identity, saved, "PCA model %s" % uri)
    fitted = load_pca(uri, uri)
    expected = (space or {}).get("pca_model_id") if opts.incremental else None
    if expected and expected != fitted.model_id:
        raise SpaceMismatch(
            "PCA model %s is no longer the one pca/ in %s was projected with (id %s, now %s); rerun with --overwrite"
            % (uri, opts.output, expected, fitted.model_id)
        )
    return fitted


def fit_and_save(spark: SparkSession, opts: JobOptions, features, identity: Dict[str, object]):
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
        raise PcaError("PCA needs at least 2 decodable images; %d decoded (see errors/)" % images_ok)
    model_uri = layout.child(opts.output, layout.PCA_MODEL)
    fitted = fit_pca(features, k, model_uri)
    save_pca(spark, fitted, model_uri)
    save_identity(spark, model_uri, {**identity, "pca_model_id": fitted.model_id})
    return fitted, note
