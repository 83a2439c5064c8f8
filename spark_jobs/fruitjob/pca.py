"""Centred PCA, fitted in one distributed pass (``gram_pca``), saved as a Spark ML model and as numpy arrays.

The saved model is what Spark ML's ``Pipeline([StandardScaler(withMean=True, withStd=False), PCA])`` writes (as plain
files: ``pipeline_files``), so ``PipelineModel.load`` reads it on any Spark; only the fit and the projection run as
numpy on Arrow batches.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
from pyspark.ml import PipelineModel
from pyspark.ml.common import _py2java
from pyspark.ml.feature import PCAModel, StandardScalerModel
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.ml.linalg import DenseMatrix, DenseVector
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from fruitjob import layout, storage
from fruitjob.errors import JobError
from fruitjob.gram_pca import Axes, Moments, moments, principal_axes, project_arrow
from fruitjob.identity import pca_model_id, recorded, save_identity
from fruitjob.laps import Laps
from fruitjob.options import JobOptions
from fruitjob.pipeline_files import is_scaler_then_pca, save_pipeline
from fruitjob.rules import FEATURE_DIM

log = logging.getLogger("fruitflow.pca")

# The pipeline's column names, as the Spark ML fit used to name them: models saved before and after read the same.
INPUT, CENTRED, OUTPUT = "x", "centred", "pcv"


class PcaError(JobError, ValueError):
    """The PCA cannot be fitted (too few images); the message says why."""


@dataclass(frozen=True)
class FittedPca:
    model: PipelineModel  # StandardScaler(mean only) -> PCA: Spark ML's PCA does not centre by itself
    explained_variance: List[float]
    uri: str  # where the model is (or will be) saved: the output's own pca_model/
    timings: Dict[str, float] = field(default_factory=dict, compare=False)  # seconds per sub-stage of the fit
    identity: Dict[str, object] = field(default_factory=dict, compare=False)  # its feature space, for pca/ files
    origin: Optional[str] = None  # the folder it was loaded from (--pca-model, an older output), None when fitted

    @property
    def components(self) -> int:
        return len(self.explained_variance)

    @property
    def mean(self) -> np.ndarray:
        return np.asarray(self.model.stages[0].mean.toArray(), dtype=np.float64)

    @property
    def axes(self) -> np.ndarray:
        """The principal axes, one per column (features x components)."""
        return np.asarray(self.model.stages[1].pc.toArray(), dtype=np.float64)

    @property
    def model_id(self) -> str:
        """The PCA space's identity: a hash of its mean and components (every pca/ row carries it)."""
        return pca_model_id(self.mean, self.axes)


# Components when --pca-components is not given: this many, but at most half the decodable images. n centred images
# have rank n-1, so n-1 components explain all of their variance (1.000) by construction, whatever the features.
DEFAULT_COMPONENTS = 50


def components_for(requested: Optional[int], images_ok: int, dim: int) -> int:
    """Components to fit: as given, at most one fewer than the images (the rank of centred data) and the dimension;
    by default (``requested`` None) at most half the images, so that a small batch is not described as fully
    explained by as many components as it has images."""
    if requested is None:
        return max(0, min(DEFAULT_COMPONENTS, images_ok // 2, dim))
    return max(0, min(requested, images_ok - 1, dim))


def components_note(requested: Optional[int], used: int, images_ok: int) -> Optional[str]:
    """Why ``used`` components were fitted when that is not simply what was asked, or None."""
    rank = max(images_ok - 1, 0)
    if requested is None:
        if used >= DEFAULT_COMPONENTS:
            return None
        return (
            "%d components used: by default %d, but at most half of the %d decodable images (%d components would "
            "explain all of their variance by construction); pass --pca-components to choose"
            % (used, DEFAULT_COMPONENTS, images_ok, rank)
        )
    if used < requested:
        return "%d components asked, %d used: %d images give at most %d, which explain all of their variance" % (
            requested,
            used,
            images_ok,
            rank,
        )
    if used == rank:
        return (
            "%d components of %d images explain all of their variance (1.000) by construction: ask for fewer "
            "(--pca-components) for a variance that says something" % (used, images_ok)
        )
    return None


def _vectors(features: DataFrame) -> DataFrame:
    return features.select("path", "label", array_to_vector("features").alias(INPUT))


def _uid(prefix: str) -> str:
    return "%s_%s" % (prefix, uuid.uuid4().hex[-12:])  # Spark's Identifiable.randomUID format


def spark_model(spark: SparkSession, axes: Axes) -> PipelineModel:
    """The Spark ML pipeline a Spark fit would have made, built from numpy through the models' JVM constructors."""
    sc = spark.sparkContext
    feature = sc._jvm.org.apache.spark.ml.feature
    dim, k = axes.components.shape
    scaler = StandardScalerModel._from_java(
        feature.StandardScalerModel(
            _uid("stdScal"), _py2java(sc, DenseVector(axes.std)), _py2java(sc, DenseVector(axes.mean))
        )
    )
    scaler._set(withMean=True, withStd=False, inputCol=INPUT, outputCol=CENTRED)
    pc = DenseMatrix(dim, k, axes.components.ravel(order="F"))  # column-major, as Spark stores matrices
    pca = PCAModel._from_java(
        feature.PCAModel(_uid("pca"), _py2java(sc, pc), _py2java(sc, DenseVector(axes.explained_variance)))
    )
    pca._set(k=k, inputCol=CENTRED, outputCol=OUTPUT)
    return PipelineModel([scaler, pca])


def _fit(spark: SparkSession, found: Moments, k: int, uri: str) -> FittedPca:
    axes = principal_axes(found, k)
    variance = [float(v) for v in axes.explained_variance]
    return FittedPca(model=spark_model(spark, axes), explained_variance=variance, uri=uri)


def fit_pca(features: DataFrame, k: int, uri: str) -> FittedPca:
    return _fit(features.sparkSession, moments(features, "features", FEATURE_DIM), k, uri)


def _centred_pca(model: PipelineModel) -> bool:
    """Whether the model is ours: mean-only scaler then PCA (then numpy on Arrow batches computes its transform)."""
    stages = model.stages
    return (
        len(stages) == 2
        and isinstance(stages[0], StandardScalerModel)
        and isinstance(stages[1], PCAModel)
        and bool(stages[0].getWithMean())
        and not stages[0].getWithStd()
    )


def project(fitted: FittedPca, features: DataFrame) -> DataFrame:
    if _centred_pca(fitted.model):
        projected = project_arrow(features, fitted.mean, fitted.axes, "features", ("path", "label"), "pca")
    else:  # another pipeline given with --pca-model: Spark ML computes what it means
        out = fitted.model.stages[-1].getOutputCol()
        projected = fitted.model.transform(_vectors(features))
        projected = projected.select("path", "label", vector_to_array(out, "float32").alias("pca"))
    if fitted.identity:  # each file of pca/ records the space and the model its rows are in
        space = {**fitted.identity, "pca_model_id": fitted.model_id}
        projected = projected.withColumn("pca", recorded(F.col("pca"), "pca", space))
    return projected.withColumn("pca_model_id", F.lit(fitted.model_id))


def save_pca(spark: SparkSession, fitted: FittedPca, uri: str) -> None:
    if is_scaler_then_pca(fitted.model):  # ours, and Spark ML fits of earlier outputs: plain files, no Spark job
        save_pipeline(spark, fitted.model, uri)
    else:
        fitted.model.write().overwrite().save(uri)
    buffer = io.BytesIO()
    np.savez(
        buffer,
        mean=fitted.mean,
        components=fitted.axes,
        explained_variance=np.asarray(fitted.explained_variance),
    )
    storage.write_bytes(spark, uri + "/pca_model.npz", buffer.getvalue())


def load_pca(uri: str, label: str) -> FittedPca:
    model = PipelineModel.load(storage.escape_glob(uri))  # its reader globs the path
    variance = [float(v) for v in model.stages[1].explainedVariance.toArray()]
    return FittedPca(model=model, explained_variance=variance, uri=label)


def save_model(spark: SparkSession, fitted: FittedPca, identity: Dict[str, object]) -> float:
    """Save the model to ``fitted.uri``; returns the seconds it took. ``identity.json`` goes last: a folder holding
    it holds the whole model (``completeness.model_problem``), with the id it records."""
    started = time.monotonic()
    save_pca(spark, fitted, fitted.uri)
    save_identity(spark, fitted.uri, {**identity, "pca_model_id": fitted.model_id})
    return round(time.monotonic() - started, 3)


def fit_and_save(
    spark: SparkSession, opts: JobOptions, features, identity: Dict[str, object], pca_uri: Optional[str] = None
):
    """Fit on ``features``, save the model to the output's pca_model/; returns (the model, a note or None).

    With ``pca_uri``, pca/ is written there too (``project``, overwriting), while the model is being saved (plain
    files written by the driver, ``pipeline_files``; a pipeline of another shape is five small Spark jobs).
    ``timings`` then has ``project_write`` beside ``save``, which overlap (``total`` is the wall time).
    """
    begin = time.monotonic()
    laps = Laps()
    found = moments(features, "features", FEATURE_DIM)  # the one pass over features/, which counts them too
    laps("moments")
    images_ok = found.n
    k = components_for(opts.pca_components, images_ok, FEATURE_DIM)
    note = components_note(opts.pca_components, k, images_ok)
    if note:
        log.warning(note)
    if k < 1:
        raise PcaError("PCA needs at least 2 decodable images; %d decoded (see errors/)" % images_ok)
    fitted = dataclasses.replace(_fit(spark, found, k, layout.child(opts.output, layout.PCA_MODEL)), identity=identity)
    laps("eigh")
    if pca_uri is None:
        laps.seconds["save"] = save_model(spark, fitted, identity)
    else:
        # A failed write is raised after the save has finished (leaving the pool waits for it), a failed save after
        # the write.
        with ThreadPoolExecutor(max_workers=1) as pool:
            saving = pool.submit(save_model, spark, fitted, identity)
            started = time.monotonic()
            project(fitted, features).write.mode("overwrite").parquet(pca_uri)
            laps.seconds["project_write"] = round(time.monotonic() - started, 3)
            laps.seconds["save"] = saving.result()
    laps.seconds["total"] = round(time.monotonic() - begin, 3)
    log.info("PCA of %d images, %d components: %s s", images_ok, k, laps.seconds)
    return dataclasses.replace(fitted, timings=laps.seconds), note
