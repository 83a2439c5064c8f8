"""Centred PCA with Spark ML, saved both as a Spark ML model and as plain numpy arrays."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import List

import numpy as np
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import PCA, StandardScaler
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.sql import DataFrame, SparkSession

from fruitjob import storage


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
