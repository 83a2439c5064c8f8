"""Feature quality at a glance: leave-one-out nearest-class-centroid accuracy, in metrics.json."""

from __future__ import annotations

import numpy as np

from fruitjob.metrics import ClassQuality
from tests.helpers import metrics


def _brute_force(vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    x = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    predicted = []
    for i in range(len(x)):
        others = np.arange(len(x)) != i
        names = sorted(set(labels[others]))
        centroids = np.stack([x[others & (labels == name)].mean(axis=0) for name in names])
        predicted.append(names[int(np.linalg.norm(centroids - x[i], axis=1).argmin())])
    return np.asarray(predicted)


def test_leave_one_out_predictions_equal_a_brute_force_loop():
    from fruitjob.quality import loo_predictions

    rng = np.random.default_rng(0)
    labels = np.repeat(np.array(["a", "b", "c"]), [5, 4, 6])
    vectors = rng.normal(size=(15, 8)) + (labels[:, None] == "a") * 1.5
    np.testing.assert_array_equal(loo_predictions(vectors, labels), _brute_force(vectors, labels))


def test_separable_classes_score_one_and_the_confusion_is_named():
    from fruitjob.quality import loo_predictions, per_class

    labels = np.array(["x"] * 4 + ["y"] * 4)
    vectors = np.vstack([np.eye(3)[[0] * 4] + 0.01 * np.arange(4)[:, None], np.eye(3)[[1] * 4]])
    predicted = loo_predictions(vectors, labels)
    assert (predicted == labels).all()
    rows = per_class(labels, np.array(["x", "x", "x", "y", "y", "y", "y", "y"]), predicted)
    assert rows[0] == ClassQuality(
        label="x", images=4, accuracy_features=0.75, accuracy_pca=1.0, most_confused_with="y"
    )


def test_the_job_reports_feature_quality(job_output):
    quality = metrics(job_output)["feature_quality"]
    assert quality["sample_size"] == 24 and quality["method"].startswith("leave-one-out")
    assert 0 <= quality["accuracy_features"] <= 1 and 0 <= quality["accuracy_pca"] <= 1
    assert {row["label"] for row in quality["per_class"]} == {
        "Apple Red 1",
        "Banana",
        "Lime Verde",
        "Orange Navel",
        "Plum Dark",
        "Pêche Blanche",
    }


def test_big_outputs_are_scored_on_a_stratified_sample_of_stated_size(spark, job_output):
    from fruitjob.quality import feature_quality

    features, pca = (spark.read.parquet(str(job_output / name)) for name in ("features", "pca"))
    quality = feature_quality(features, pca, size=12)  # 6 classes: 2 images each
    assert (quality.sample_size, quality.images_total) == (12, 24)
    assert all(row.images == 2 for row in quality.per_class)
