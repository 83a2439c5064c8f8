"""Spark ML's PCA, centred, agrees with numpy's SVD on the same feature matrix."""

from __future__ import annotations

import numpy as np

from tests.helpers import metrics, read_parquet, vectors


def test_explained_variance_equals_numpy_svd(job_output):
    x = vectors(read_parquet(job_output, "features"), "features")
    centred = x - x.mean(axis=0)
    singular = np.linalg.svd(centred, compute_uv=False)
    ratios = singular**2 / (singular**2).sum()
    m = metrics(job_output)
    np.testing.assert_allclose(m["explained_variance"], ratios[: m["pca_components"]], rtol=1e-3)
    assert abs(m["explained_variance_total"] - sum(m["explained_variance"])) < 1e-9


def test_pca_values_are_centred_projections(job_output):
    features = read_parquet(job_output, "features")
    pca = read_parquet(job_output, "pca")
    saved = np.load(job_output / "pca_model" / "pca_model.npz")
    x = vectors(features, "features")
    np.testing.assert_allclose(saved["mean"], x.mean(axis=0), atol=1e-5)
    projected = (x - saved["mean"]) @ saved["components"]
    np.testing.assert_allclose(vectors(pca, "pca"), projected, atol=1e-3)
    assert np.abs(vectors(pca, "pca").mean(axis=0)).max() < 1e-3


def test_fewer_components_when_fewer_images(run_job, tmp_path):
    from tasks.local.sample_images import make_sample_images

    images = make_sample_images(tmp_path / "few", per_class=1, size=48)  # 6 images: rank 5 once centred
    output = run_job(images, "--pca-components", "50")
    m = metrics(output)
    assert (m["pca_components_asked"], m["pca_components"]) == (50, 5)
    assert "50 components asked, 5 used" in m["pca_note"]


def test_pca_model_is_a_spark_ml_pipeline_whose_transform_gives_pca(job_output, spark):
    """Users load pca_model/ with Spark ML, as before the one-pass fit: its transform is what pca/ holds."""
    from pyspark.ml import PipelineModel
    from pyspark.ml.feature import PCAModel, StandardScalerModel
    from pyspark.ml.functions import array_to_vector, vector_to_array

    model = PipelineModel.load(str(job_output / "pca_model"))
    scaler, pca = model.stages
    assert isinstance(scaler, StandardScalerModel) and isinstance(pca, PCAModel)
    k = metrics(job_output)["pca_components"]
    assert (scaler.getWithMean(), scaler.getWithStd(), pca.getK()) == (True, False, k)
    features = spark.read.parquet(str(job_output / "features")).select("path", array_to_vector("features").alias("x"))
    transformed = model.transform(features).select("path", vector_to_array("pcv").alias("pca")).toPandas()
    transformed = transformed.sort_values("path").reset_index(drop=True)
    np.testing.assert_allclose(vectors(transformed, "pca"), vectors(read_parquet(job_output, "pca"), "pca"), atol=1e-4)
