"""``--featurizer tflite-int8``: full-integer MobileNetV2 calibrated on a fixed set, 1280 float features out, in a
feature space of its own (its calibration is part of the identity), and close to the float features."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import TEST_ALPHA, shared_path
from tests.helpers import metrics, read_parquet, vectors

REAL_WEIGHTS = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
# The calibration set of fruitjob/calibration.py (GENERATOR v1): a change of these pixels must come with a new
# GENERATOR name, since it moves every int8 feature into another space.
CALIBRATION_SHA256 = "3cf5e4b06a7ba089d7c7d9c84b9d7c3e77d0ba1b97be1c5a2169da1a75638ec2"


def test_the_calibration_set_is_fixed_and_described():
    import hashlib

    from fruitjob import calibration

    description = calibration.describe()
    assert (description["set"], description["images"]) == ("fruitflow-synthetic-fruits-v1", 128)
    assert calibration.SHA256 == description["sha256"] == CALIBRATION_SHA256
    drawn = calibration.images()
    assert hashlib.sha256(drawn.tobytes()).hexdigest() == CALIBRATION_SHA256, "pixels changed: bump GENERATOR"
    assert drawn.shape == (128, 224, 224, 3) and drawn.dtype == np.uint8 and drawn.std() > 20
    np.testing.assert_array_equal(drawn[:3], calibration.images(3))  # each image from its own (seed, index)
    assert len(calibration.batches()) == 128
    assert calibration.calibration_of("tflite") is None and calibration.calibration_of("keras") is None
    assert calibration.calibration_of("tflite-int8") == description
    json.dumps(description)


def test_a_calibration_set_drawn_differently_is_refused(monkeypatch):
    from fruitjob import calibration

    monkeypatch.setattr(calibration, "SEED", calibration.SEED + 1)
    with pytest.raises(RuntimeError, match="recorded under the wrong identity"):
        calibration.batches()


def test_int8_and_float_and_differently_calibrated_spaces_never_mix():
    from fruitjob.identity import IDENTITY_KEYS, SpaceMismatch, check_same_space, identity_of

    assert "calibration" in IDENTITY_KEYS
    int8 = identity_of("random(seed=0)", "ab" * 32, 0.35, "tflite-int8")
    float_ = identity_of("random(seed=0)", "ab" * 32, 0.35, "tflite")
    assert float_["calibration"] is None and int8["calibration"]["sha256"] == CALIBRATION_SHA256
    with pytest.raises(SpaceMismatch, match="featurizer"):
        check_same_space(int8, float_, "the run already in out/")
    other = dict(int8, calibration=dict(int8["calibration"], sha256="0" * 64))
    with pytest.raises(SpaceMismatch, match="calibration"):
        check_same_space(int8, other, "the run already in out/")
    older = {k: v for k, v in float_.items() if k != "calibration"}  # outputs written before int8 existed
    check_same_space(float_, older, "an older run")


@pytest.fixture(scope="module")
def engines():
    from fruitjob.tflite_engine import tflite_engine
    from fruitjob.weights import _random_weights

    weights = _random_weights(TEST_ALPHA, 0)
    return tflite_engine(weights, 4, threads=1), tflite_engine(weights, 4, threads=1, featurizer="tflite-int8")


@pytest.fixture(scope="module")
def sample_images(tmp_path_factory) -> np.ndarray:
    from fruitjob.decoding import decode_image
    from tasks.local.sample_images import make_sample_images

    root = make_sample_images(tmp_path_factory.mktemp("int8-images"), per_class=2, size=64, seed=11)
    return np.stack([decode_image(path.read_bytes()) for path in sorted(root.rglob("*.jpg"))])


def test_int8_gives_1280_floats_close_to_the_float_model(engines, sample_images):
    float_engine, int8_engine = engines
    expected, actual = float_engine(sample_images), int8_engine(sample_images[:5])  # a short last batch too
    actual = np.concatenate([actual, int8_engine(sample_images[5:])])
    assert actual.shape == (len(sample_images), 1280) and actual.dtype == np.float32
    assert np.isfinite(actual).all()
    assert not np.array_equal(actual, expected), "the int8 engine ran the float model"
    cosine = (actual * expected).sum(1) / np.linalg.norm(actual, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() > 0.99, cosine
    # Each int8 vector is nearer to its own image's float vector than to any other image's.
    distances = ((actual[:, None, :] - expected[None, :, :]) ** 2).sum(2)
    assert (distances.argmin(axis=1) == np.arange(len(actual))).all()
    assert int8_engine(np.zeros((0, 224, 224, 3), np.uint8)).shape == (0, 1280)


def test_the_int8_model_is_integer_inside_with_float_input_and_output():
    from fruitjob.litert import make_interpreter
    from fruitjob.tflite_engine import tflite_model
    from fruitjob.weights import _random_weights

    interpreter = make_interpreter(tflite_model(_random_weights(TEST_ALPHA, 0), "tflite-int8"), 1)
    assert interpreter.get_input_details()[0]["dtype"] == np.float32
    assert interpreter.get_output_details()[0]["dtype"] == np.float32
    kinds = [np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()]
    assert kinds.count("float32") == 2, "only the input and the output are float: %s" % sorted(set(kinds))
    assert kinds.count("int8") > 100


@pytest.fixture(scope="module")
def int8_output(run_job, fruit_images):
    return run_job(fruit_images, "--featurizer", "tflite-int8", "--pca-components", "5")


def test_the_job_records_the_calibration_and_writes_float_features(int8_output):
    from fruitjob import calibration

    m = metrics(int8_output)
    assert m["featurizer"] == "tflite-int8" and m["calibration"] == calibration.describe()
    assert (m["images_ok"], m["images_failed"]) == (24, 1)
    features = vectors(read_parquet(int8_output, "features"), "features")
    assert features.shape == (24, 1280) and np.isfinite(features).all()
    space = json.loads((int8_output / "space.json").read_text())
    assert space["identity"]["calibration"]["sha256"] == CALIBRATION_SHA256


def test_a_float_run_is_refused_into_an_int8_output_and_an_int8_run_on_a_float_pca(
    spark, int8_output, job_output, fruit_images
):
    from fruitjob.identity import SpaceMismatch
    from fruitjob.job import run
    from fruitjob.options import parse_options
    from tests.conftest import JOB_DEFAULTS

    base = ["--images", str(fruit_images), *JOB_DEFAULTS]
    with pytest.raises(SpaceMismatch, match="featurizer: the run already in .* has 'tflite-int8', this run 'tflite'"):
        run(spark, parse_options([*base, "--output", str(int8_output), "--incremental", "--featurizer", "tflite"]))
    assert metrics(int8_output)["featurizer"] == "tflite-int8", "a refused run left the output as it was"
    with pytest.raises(SpaceMismatch, match="calibration"):
        run(
            spark,
            parse_options(
                [*base, "--output", str(int8_output) + "-projected", "--featurizer", "tflite-int8"]
                + ["--pca-model", str(job_output)]
            ),
        )


@pytest.mark.slow
@pytest.mark.shared
def test_int8_costs_less_than_two_points_of_accuracy_with_real_weights():
    """Nearest class centroid on 40 real Fruits-360 classes (30 images each), every other one (by name) as reference."""
    from fruitjob.decoding import decode_image
    from fruitjob.tflite_engine import tflite_engine
    from fruitjob.weights import Weights

    path = shared_path("weights", REAL_WEIGHTS)
    source = shared_path("data", "fruits-360-sample")
    weights = Weights(str(path), 0.35, path.read_bytes(), ".h5")
    images, labels = [], []
    for folder in sorted(p for p in source.iterdir() if p.is_dir())[::3][:40]:
        for image in sorted(folder.iterdir()):
            images.append(decode_image(image.read_bytes()))
            labels.append(folder.name)
    images, labels = np.stack(images), np.asarray(labels)
    scores = {}
    for featurizer in ("tflite", "tflite-int8"):
        features = tflite_engine(weights, 4, threads=2, featurizer=featurizer)(images)
        scores[featurizer] = interleaved_accuracy(features, labels)
    print("nearest-centroid accuracy, 40 classes x 30 images", scores)
    assert scores["tflite"] >= 0.85, scores
    assert scores["tflite-int8"] >= scores["tflite"] - 0.02, scores


def interleaved_accuracy(features: np.ndarray, labels: np.ndarray) -> float:
    """Every other image of a class (in order) builds its centroid; the others are classified by the nearest."""
    x = features / np.linalg.norm(features, axis=1, keepdims=True)
    names = sorted(set(labels))
    centroids = np.stack([x[labels == name][0::2].mean(axis=0) for name in names])
    queries = [(row, index) for index, name in enumerate(names) for row in x[labels == name][1::2]]
    rows, truth = np.stack([q[0] for q in queries]), np.asarray([q[1] for q in queries])
    distances = ((rows[:, None, :] - centroids[None]) ** 2).sum(2)
    return float((distances.argmin(axis=1) == truth).mean())
