"""The TFLite featurizer gives Keras' features: max abs diff <= 1e-4 on the pooled 1280 values."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import TEST_ALPHA, shared_path

TOLERANCE = 1e-4
REAL_WEIGHTS = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> np.ndarray:
    from fruitjob.decoding import decode_image
    from tasks.local.sample_images import make_sample_images

    root = make_sample_images(tmp_path_factory.mktemp("engine-images"), per_class=1, size=100)
    decoded = [decode_image(path.read_bytes()) for path in sorted(root.rglob("*.jpg"))]
    noise = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)  # full value range
    return np.concatenate([np.stack(decoded), noise])


def _compare(weights, images: np.ndarray) -> None:
    from fruitjob.featurizer import get_engine
    from fruitjob.tflite_engine import convert_for_workers, tflite_engine

    expected = get_engine(weights, "keras", 8)(images)
    # Batches of 3 leave a short last batch: the interpreter's tensors are resized between calls.
    actual = tflite_engine(convert_for_workers(weights), 3, threads=1)(images)
    assert actual.shape == expected.shape == (len(images), 1280)
    assert actual.dtype == np.float32
    diff = float(np.abs(actual - expected).max())
    scale = float(np.abs(expected).max())
    assert scale > 0
    assert diff <= TOLERANCE, f"max abs diff {diff:.3g} > {TOLERANCE} (features up to {scale:.3g})"
    # Random weights give tiny features, where an absolute bound alone would prove nothing.
    assert diff <= TOLERANCE * scale or scale > 1, f"max abs diff {diff:.3g} for features up to {scale:.3g}"


@pytest.mark.shared
def test_tflite_matches_keras_with_real_weights(images):
    from fruitjob.weights import Weights

    path = shared_path("weights", REAL_WEIGHTS)
    _compare(Weights(str(path), 0.35, path.read_bytes(), ".h5"), images)


def test_tflite_matches_keras_with_random_weights(images):
    from fruitjob.weights import _random_weights

    _compare(_random_weights(TEST_ALPHA, 0), images)


def test_engine_refuses_wrong_shapes_and_handles_empty_input():
    from fruitjob.tflite_engine import tflite_engine
    from fruitjob.weights import _random_weights

    engine = tflite_engine(_random_weights(TEST_ALPHA, 0), 4, threads=1)
    assert engine(np.zeros((0, 224, 224, 3), np.uint8)).shape == (0, 1280)
    with pytest.raises(ValueError, match=r"expected images of shape \(n, 224, 224, 3\), got \(1, 100, 100, 3\)"):
        engine(np.zeros((1, 100, 100, 3), np.uint8))
