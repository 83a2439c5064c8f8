"""Spark ML's PCA, centred, agrees with numpy's SVD on the same feature matrix."""

from __future__ import annotations

import numpy as np
import pytest

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


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_small_batch_gets_a_default_that_suits_it_and_the_summary_says_why(run_job, tmp_path, caplog):
    """Issue 19, small batches: 12 images and no --pca-components gave 11 components explaining 1.000, unsaid."""
    from pyarrow import fs

    from tasks.contract import RunResult
    from tasks.local.sample_images import make_sample_images
    from tasks.summary import summary_markdown
    from tasks.validation import verify_output

    images = make_sample_images(tmp_path / "few", per_class=2, size=48)
    with caplog.at_level("WARNING", logger="fruitflow.pca"):
        output = run_job(images)
    m = metrics(output)
    assert (m["pca_components_asked"], m["pca_components"]) == (None, 6)
    assert m["explained_variance_total"] < 0.999
    why = "6 components used: by default 50, but at most half of the 12 decodable images"
    assert m["pca_note"].startswith(why) and why in caplog.text
    markdown = summary_markdown(verify_output(str(output), fs.LocalFileSystem()), RunResult("local", str(output)))
    assert "| PCA | 6 components (default), explained variance" in markdown and f"Note: {why}" in markdown


def test_the_components_rule():
    from fruitjob.pca import components_for, components_note

    assert (components_for(None, 48, 1280), components_for(None, 1000, 1280), components_for(None, 2, 1280)) == (
        24,
        50,
        1,
    )
    assert (components_for(50, 48, 1280), components_for(50, 1000, 1280)) == (47, 50)  # given: honoured up to n-1
    assert components_note(50, 47, 48).startswith("50 components asked, 47 used: 48 images give at most 47")
    assert "explain all of their variance (1.000) by construction" in components_note(47, 47, 48)
    assert components_note(None, 50, 1000) is None and components_note(10, 10, 1000) is None
