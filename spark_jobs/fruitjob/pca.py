"""Centred PCA with Spark ML, saved both as a Spark ML model and as plain numpy arrays."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import PCA, StandardScaler
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.sql import DataFrame, SparkSession

from fruitjob import layout, storage
from fruitjob.identity import SpaceMismatch, check_same_space, load_identity, save_identity
from fruitjob.options import JobOptions
from fruitjob.weights import FEATURE_DIM

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
    return projected.select("path", "label", vector_to_array("pcv", "float32").alias("pca"))


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
    spark: SparkSession, opts: JobOptions, identity: Dict[str, object], previous: Optional[Dict[str, object]] = None
) -> Optional[FittedPca]:
    """The model to project with instead of fitting one, if any.

    ``--pca-model`` (a pca_model/ folder or a run's output folder), or, for ``--incremental``, the model the
    output's pca/ was made with: its own pca_model/, or the earlier run's ``--pca-model`` (``previous``).
    """
    earlier = (previous or {}).get("pca_model")
    if opts.pca_model:
        uri = opts.pca_model
        if storage.exists(spark, layout.child(uri, layout.PCA_MODEL)):
            uri = layout.child(uri, layout.PCA_MODEL)  # the output folder of a run was given
        if opts.incremental and earlier and earlier != uri:
            raise SpaceMismatch(
                "pca/ in %s was projected with %s; adding rows projected with %s would mix two spaces"
                % (opts.output, earlier, uri)
            )
    elif opts.incremental and storage.exists(spark, layout.child(opts.output, layout.PCA_MODEL)):
        uri = layout.child(opts.output, layout.PCA_MODEL)
    elif opts.incremental and earlier:
        uri = str(earlier)  # the output was projected with another run's model: stay in that space
    else:
        return None
    saved = load_identity(spark, uri)
    if saved is not None:
        check_same_space(identity, saved, "PCA model %s" % uri)
    return load_pca(uri, uri)


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
    save_identity(spark, model_uri, identity)
    return fitted, note
