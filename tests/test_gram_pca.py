"""The one-pass Gram PCA (fruitjob.gram_pca) against numpy, and its models against Spark ML's own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fruitjob import blas, gram_pca, pca
from fruitjob.options import parse_options
from fruitjob.rules import FEATURE_DIM


def _features(n: int, seed: int = 0, offset: float = 0.0) -> np.ndarray:
    """Low rank plus noise with a decaying spectrum, non-negative like pooled CNN features."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 12)) * (0.7 ** np.arange(12))
    x = np.maximum(latent @ rng.normal(size=(12, FEATURE_DIM)) + 0.3, 0) + 0.05 * rng.random((n, FEATURE_DIM))
    return (x + offset).astype(np.float32)


def _write(folder: Path, x: np.ndarray, files: int) -> str:
    """features/ as the job writes it (path, label, size, features) in ``files`` Parquet files (some may be empty)."""
    folder.mkdir(parents=True)
    for index, rows in enumerate(np.array_split(np.arange(len(x)), files)):
        offsets = pa.array(np.arange(0, (len(rows) + 1) * FEATURE_DIM, FEATURE_DIM, dtype=np.int32))
        table = pa.table(
            {
                "path": pa.array(["file:/in/%s/%04d.jpg" % ("ab"[i % 2], i) for i in rows], pa.string()),
                "label": pa.array(["ab"[i % 2] for i in rows], pa.string()),
                "size": pa.array(np.full(len(rows), 100, dtype=np.int64)),
                "features": pa.ListArray.from_arrays(offsets, pa.array(x[rows].ravel(), pa.float32())),
            }
        )
        pq.write_table(table, folder / ("part-%03d.parquet" % index))
    return str(folder)


def _numpy_pca(x: np.ndarray, k: int):
    x = x.astype(np.float64)
    mean = x.mean(axis=0)
    _u, singular, vt = np.linalg.svd(x - mean, full_matrices=False)
    return mean, vt[:k].T, (singular**2 / (singular**2).sum())[:k]


@pytest.fixture(scope="module")
def matrix() -> np.ndarray:
    return _features(160)


@pytest.fixture(scope="module")
def features(spark, matrix, tmp_path_factory):
    # 7 files for 2 task slots: coalesced into 2 partitions, merged by treeAggregate.
    return spark.read.parquet(_write(tmp_path_factory.mktemp("gram") / "features", matrix, 7))


@pytest.fixture(scope="module")
def fitted(features):
    return pca.fit_pca(features, 6, "unsaved")


def test_block_moments_and_merge_equal_numpy(monkeypatch):
    x = _features(50, seed=3, offset=1e4).astype(np.float64)  # a large mean: X^T X - n m m^T would lose the variance
    monkeypatch.setattr(gram_pca, "BLOCK_ROWS", 8)  # blocks straddle the batches below
    batches = [
        pa.RecordBatch.from_arrays([pa.array(list(part), pa.list_(pa.float32()))], ["features"])
        for part in np.array_split(x.astype(np.float32), [5, 6, 30])
    ]
    whole = gram_pca.block_moments(gram_pca._blocks(batches, FEATURE_DIM))
    halves = gram_pca.merge(
        gram_pca.block_moments([x[:13]]), gram_pca.merge(None, gram_pca.block_moments([x[13:20], x[20:]]))
    )
    expected = np.cov(x, rowvar=False)  # x holds float32 values: the batches carry them exactly
    for found in (whole, halves):
        assert found.n == 50
        np.testing.assert_allclose(found.mean, x.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(found.covariance(), expected, rtol=1e-6, atol=1e-9 * np.abs(expected).max())
    assert gram_pca.block_moments([]) is None


@pytest.mark.parametrize("driver_merge_slots", [16, 0])  # 0: merged by treeAggregate, as on clusters of > 16 slots
def test_moments_in_one_distributed_pass_equal_numpy(features, matrix, monkeypatch, driver_merge_slots):
    monkeypatch.setattr(gram_pca, "DRIVER_MERGE_SLOTS", driver_merge_slots)
    found = gram_pca.moments(features, "features", FEATURE_DIM)
    x = matrix.astype(np.float64)
    assert found.n == len(x)
    np.testing.assert_allclose(found.mean, x.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(found.covariance(), np.cov(x, rowvar=False), atol=1e-10)


def test_explained_variance_and_components_equal_numpy_svd(fitted, matrix):
    mean, components, ratios = _numpy_pca(matrix, 6)
    np.testing.assert_allclose(fitted.explained_variance, ratios, rtol=1e-3)
    np.testing.assert_allclose(fitted.mean, mean, atol=1e-10)
    axes = fitted.axes
    assert axes.shape == (FEATURE_DIM, 6)
    np.testing.assert_allclose(np.abs((axes * components).sum(axis=0)), 1.0, atol=1e-6)  # the same axes
    # Deterministic signs: each axis' largest entry (in size) is positive.
    assert (axes[np.abs(axes).argmax(axis=0), np.arange(6)] > 0).all()


def test_projection_equals_the_spark_ml_pipelines_transform(fitted, features, matrix):
    ours = pca.project(fitted, features).toPandas().sort_values("path").reset_index(drop=True)
    spark_ml = fitted.model.transform(pca._vectors(features)).select("path", pca.vector_to_array("pcv").alias("v"))
    spark_ml = spark_ml.toPandas().sort_values("path").reset_index(drop=True)
    assert list(ours.columns) == ["path", "label", "pca", "pca_model_id"]
    assert list(ours["path"]) == list(spark_ml["path"]) and len(ours) == len(matrix)
    np.testing.assert_allclose(np.stack(ours["pca"]), np.stack(spark_ml["v"]), atol=1e-4)
    assert set(ours["pca_model_id"]) == {fitted.model_id}
    order = np.argsort(["file:/in/%s/%04d.jpg" % ("ab"[i % 2], i) for i in range(len(matrix))])
    expected = (matrix[order].astype(np.float64) - fitted.mean) @ fitted.axes
    np.testing.assert_allclose(np.stack(ours["pca"]), expected, atol=1e-4)


def test_saved_model_is_a_spark_ml_pipeline_and_npz(spark, fitted, features, tmp_path):
    from pyspark.ml import PipelineModel
    from pyspark.ml.feature import PCAModel, StandardScalerModel

    uri = str(tmp_path / "pca_model")
    pca.save_pca(spark, fitted, uri)
    loaded = PipelineModel.load(uri)
    scaler, spark_pca = loaded.stages
    assert isinstance(scaler, StandardScalerModel) and isinstance(spark_pca, PCAModel)
    assert (scaler.getWithMean(), scaler.getWithStd(), spark_pca.getK()) == (True, False, 6)
    np.testing.assert_array_equal(spark_pca.explainedVariance.toArray(), fitted.explained_variance)
    again = pca.load_pca(uri, uri)
    assert again.model_id == fitted.model_id and again.explained_variance == fitted.explained_variance
    saved = np.load(tmp_path / "pca_model" / "pca_model.npz")
    np.testing.assert_array_equal(saved["mean"], fitted.mean)
    np.testing.assert_array_equal(saved["components"], fitted.axes)
    np.testing.assert_array_equal(saved["explained_variance"], fitted.explained_variance)


def test_the_model_is_saved_as_plain_files_without_a_spark_job(spark, fitted, tmp_path):
    """Spark ML's own save was five small Spark jobs (~3 s on 2 busy cores); the files are the same kind, and load."""
    from pyspark.ml import PipelineModel

    from fruitjob.completeness import model_problem

    context = spark.sparkContext
    context.setJobGroup("fruitflow-test-save", "the model save", False)
    try:
        pca.save_pca(spark, fitted, str(tmp_path / "pca_model"))
    finally:
        context.setLocalProperty("spark.jobGroup.id", None)
    assert context.statusTracker().getJobIdsForGroup("fruitflow-test-save") == []
    saved = tmp_path / "pca_model"
    scaler, spark_pca = PipelineModel.load(str(saved)).stages
    assert (scaler.getInputCol(), scaler.getOutputCol(), spark_pca.getOutputCol()) == ("x", "centred", "pcv")
    np.testing.assert_array_equal(scaler.mean.toArray(), fitted.mean)
    np.testing.assert_array_equal(spark_pca.pc.toArray(), fitted.axes)
    stages = sorted(saved.glob("stages/*"))
    assert [stage.name.split("_")[1] for stage in stages] == ["stdScal", "pca"]
    for folder in [saved / "metadata", *(stage / part for stage in stages for part in ("metadata", "data"))]:
        assert (folder / "_SUCCESS").exists(), folder
    (saved / "identity.json").write_text("{}")
    assert model_problem(spark, str(saved)) is None


@pytest.mark.slow
@pytest.mark.parametrize("with_std", [False, True])
def test_models_fitted_by_spark_ml_project_as_their_transform(spark, features, tmp_path, with_std):
    """pca_model/ folders of earlier runs (Spark ML's fit) keep working with --pca-model and --incremental; a
    pipeline that also scales (not ours) is projected by Spark ML itself."""
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import PCA, StandardScaler

    stages = [
        StandardScaler(withMean=True, withStd=with_std, inputCol="x", outputCol="centred"),
        PCA(k=4, inputCol="centred", outputCol="pcv"),
    ]
    Pipeline(stages=stages).fit(pca._vectors(features)).write().save(str(tmp_path / "old"))
    old = pca.load_pca(str(tmp_path / "old"), "old")
    assert pca._centred_pca(old.model) is not with_std
    ours = pca.project(old, features).toPandas().sort_values("path")
    theirs = old.model.transform(pca._vectors(features)).select("path", pca.vector_to_array("pcv").alias("v"))
    theirs = theirs.toPandas().sort_values("path")
    np.testing.assert_allclose(np.stack(ours["pca"]), np.stack(theirs["v"]), atol=1e-4)


def test_fit_and_save_counts_in_the_same_pass_and_times_its_parts(spark, features, tmp_path):
    opts = parse_options(["--images", "/in", "--output", str(tmp_path / "out"), "--pca-components", "200"])
    fitted, note = pca.fit_and_save(spark, opts, features, {"weights": "test"})
    assert fitted.components == 159 and "200 components asked, 159 used: 160 images" in note
    assert set(fitted.timings) == {"moments", "eigh", "save", "total"} and min(fitted.timings.values()) >= 0
    assert (tmp_path / "out" / "pca_model" / "pca_model.npz").exists()
    for rows, subset in ((1, features.limit(1)), (0, features.where("label = 'none'"))):  # 0: every partition empty
        with pytest.raises(pca.PcaError, match="at least 2 decodable images; %d decoded" % rows):
            pca.fit_and_save(spark, opts.replace(output=str(tmp_path / str(rows))), subset, {"weights": "test"})


@pytest.mark.slow
def test_fit_and_save_writes_pca_while_the_model_is_saved(spark, features, tmp_path):
    import pandas as pd

    opts = parse_options(["--images", "/in", "--output", str(tmp_path / "out"), "--pca-components", "3"])
    fitted, _note = pca.fit_and_save(spark, opts, features, {"weights": "test"}, str(tmp_path / "out" / "pca"))
    assert {"project_write", "save", "total"} <= set(fitted.timings)
    written = pd.read_parquet(tmp_path / "out" / "pca").sort_values("path")
    expected = pca.project(pca.load_pca(fitted.uri, fitted.uri), features).toPandas().sort_values("path")
    np.testing.assert_array_equal(np.stack(written["pca"]), np.stack(expected["pca"]))
    assert set(written["pca_model_id"]) == {fitted.model_id}

    (tmp_path / "taken").write_text("a file where pca_model/ should go")  # the save fails: the error is raised
    with pytest.raises(Exception, match="taken"):
        pca.fit_and_save(spark, opts.replace(output=str(tmp_path / "taken")), features, {}, str(tmp_path / "pca2"))


def test_blas_threads_are_limited_then_restored():
    controls = blas._controls()
    if not controls:
        pytest.skip("numpy's BLAS here is not OpenBLAS: nothing to limit")
    getter = controls[0][0]
    before = getter()
    with blas.blas_threads(1):
        assert getter() == 1
    assert getter() == before
