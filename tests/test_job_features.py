"""The Spark job's features are MobileNetV2's: equal to a plain Keras run, whatever the partitioning."""

from __future__ import annotations

from urllib.parse import urlparse

import numpy as np
import pytest

from tests.conftest import TEST_ALPHA
from tests.helpers import metrics, read_parquet, vectors


@pytest.fixture(scope="module")
def keras_reference():
    """Features from a single-process Keras run: same decoding, same weights, no Spark."""
    from fruitjob.decoding import decode_image
    from fruitjob.weights import load_model, resolve_weights

    def _features(spark, paths: list[str]) -> np.ndarray:
        weights = resolve_weights(spark, "random", TEST_ALPHA, seed=0)
        model = load_model(weights)
        from keras.applications.mobilenet_v2 import preprocess_input

        batch = np.stack([decode_image(open(urlparse(p).path, "rb").read()) for p in paths]).astype(np.float32)
        return model.predict(preprocess_input(batch), verbose=0)

    return _features


@pytest.mark.slow
def test_features_equal_single_process_keras(spark, job_output, keras_reference):
    features = read_parquet(job_output, "features")
    expected = keras_reference(spark, list(features["path"]))
    assert np.abs(vectors(features, "features") - expected).max() <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("partitions", ["1", "3"])
def test_features_do_not_depend_on_partitioning(run_job, fruit_images, job_output, partitions):
    other = run_job(fruit_images, "--pca-components", "5", "--partitions", partitions)
    assert metrics(other)["partitions"] == int(partitions)
    a, b = read_parquet(job_output, "features"), read_parquet(other, "features")
    assert list(a["path"]) == list(b["path"])
    assert np.abs(vectors(a, "features") - vectors(b, "features")).max() <= 1e-4


def test_output_schema_and_counts(job_output, fruit_images):
    m = metrics(job_output)
    assert (m["images_total"], m["images_ok"], m["images_failed"]) == (25, 24, 1)
    assert (m["files_seen"], m["files_skipped"]) == (26, 1)
    features = read_parquet(job_output, "features")
    assert list(features.columns)[:4] == ["path", "label", "size", "features"]  # the documented ones first
    assert vectors(features, "features").shape == (24, 1280)
    assert (features["size"] > 0).all()
    pca = read_parquet(job_output, "pca")
    assert vectors(pca, "pca").shape == (24, 5)
    assert (job_output / "pca_model" / "pca_model.npz").exists()


def test_labels_with_spaces_and_non_ascii_survive(job_output, fruit_images):
    features = read_parquet(job_output, "features")
    expected = {p.name for p in fruit_images.iterdir() if p.is_dir()}
    assert set(features["label"]) == expected
    assert {"Apple Red 1", "Pêche Blanche"} <= expected
    for path, label in zip(features["path"], features["label"], strict=True):
        assert urlparse(path).path.split("/")[-2] == label
        assert "%20" not in path


def test_corrupt_image_lands_in_errors_with_reason(job_output):
    errors = read_parquet(job_output, "errors")
    assert list(errors["path"].str.rsplit("/", n=1).str[-1]) == ["broken.jpg"]
    assert errors.loc[0, "label"] == "Banana"
    assert "not a recognised image format" in errors.loc[0, "error"]


def test_a_run_is_one_pass_and_a_few_spark_jobs(spark, run_job, fruit_images):
    """features/ and errors/ come from one pass of the model (no staging dataset written and read back, no count()
    of what was written), the PCA model is saved as plain files, errors/ is written by the driver: a run without the
    health stage was 32 Spark jobs, each a few tenths of a second of idle cores at least (10 before errors/ was)."""
    from fruitjob.featurizer import WARM_UP_GROUP

    tracker = spark.sparkContext.statusTracker()

    def jobs() -> set[int]:
        return set(tracker.getJobIdsForGroup(None)) | set(tracker.getJobIdsForGroup(WARM_UP_GROUP))

    before = jobs()
    output = run_job(fruit_images, "--pca-components", "5", "--health", "off")
    print("SPARK JOBS", len(jobs() - before))
    assert len(jobs() - before) <= 12
    m = metrics(output)
    assert (m["images_ok"], m["images_failed"], m["features_total"], m["errors_total"]) == (24, 1, 24, 1)
    assert len(read_parquet(output, "errors")) == 1 and not (output / "_featurized").exists()
