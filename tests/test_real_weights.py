"""With the real ImageNet weights (alpha 0.35, from ../shared), features carry the fruit's identity."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import shared_path
from tests.helpers import metrics, read_parquet, vectors

WEIGHTS = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
CLASSES = 40
PER_CLASS = 8


def nearest_centroid_accuracy(features: np.ndarray, labels: np.ndarray) -> float:
    """Half of each class builds its centroid, the other half is classified by the nearest one."""
    x = features / np.linalg.norm(features, axis=1, keepdims=True)
    names = sorted(set(labels))
    reference, queries, truth = [], [], []
    for index, name in enumerate(names):
        rows = x[labels == name]
        half = len(rows) // 2
        reference.append(rows[:half].mean(axis=0))
        queries.append(rows[half:])
        truth += [index] * (len(rows) - half)
    distances = np.linalg.norm(np.concatenate(queries)[:, None, :] - np.stack(reference)[None], axis=2)
    return float((distances.argmin(axis=1) == np.asarray(truth)).mean())


@pytest.fixture(scope="module")
def fruit_subset(tmp_path_factory):
    """A few real Fruits-360 classes, linked (not copied) into a temporary folder."""
    source = shared_path("data", "fruits-360-sample")
    root = tmp_path_factory.mktemp("fruits360")
    for folder in sorted(p for p in source.iterdir() if p.is_dir())[::3][:CLASSES]:
        (root / folder.name).mkdir()
        for image in sorted(folder.iterdir())[:PER_CLASS]:
            (root / folder.name / image.name).symlink_to(image)
    return root


@pytest.mark.shared
@pytest.mark.slow
def test_imagenet_weights_beat_random_weights(run_job, fruit_subset):
    weights = shared_path("weights", WEIGHTS)
    real = run_job(fruit_subset, "--weights", str(weights), "--pca-components", "10")
    random = run_job(fruit_subset, "--pca-components", "10")
    m = metrics(real)
    assert m["alpha"] == 0.35 and m["weights"] == str(weights) and m["images_ok"] == CLASSES * PER_CLASS
    scores = {}
    for name, output in (("real", real), ("random", random)):
        frame = read_parquet(output, "features")
        scores[name] = nearest_centroid_accuracy(vectors(frame, "features"), frame["label"].to_numpy())
    print("nearest-centroid accuracy", scores)
    assert scores["real"] >= 0.85, scores
    assert scores["real"] - scores["random"] >= 0.15, scores


def test_weights_that_do_not_fit_are_refused_before_any_image(spark, tmp_path):
    from fruitjob.weights import WeightsError, resolve_weights

    with pytest.raises(WeightsError, match="cannot be read"):
        resolve_weights(spark, str(tmp_path / "missing.h5"), 1.0)
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(WeightsError, match="do not fit MobileNetV2 alpha=1.0"):
        resolve_weights(spark, str(tmp_path / "junk.h5"), 1.0)


def test_real_weights_for_another_alpha_are_refused(spark):
    from fruitjob.weights import WeightsError, resolve_weights

    weights = shared_path("weights", WEIGHTS)
    with pytest.raises(WeightsError, match="do not fit MobileNetV2 alpha=1.0"):
        resolve_weights(spark, str(weights), 1.0)
