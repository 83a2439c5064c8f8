"""Which MobileNetV2 weights a run uses, resolved once on the driver and shipped to the workers as bytes.

``imagenet`` is Keras' own download (cached in ``~/.keras/models``, where an offline machine can be given
the file), a path or ``s3://`` URI is read through Hadoop's file system, and ``random`` is a seeded
initialisation built on the driver, so that every worker gets exactly the same values. Keras (hence TensorFlow) is
imported only to build, check or download weights: :func:`identify_weights` knows them by their hash without it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from typing import Optional

from pyspark.sql import SparkSession

from fruitjob import private_files, storage
from fruitjob.errors import JobError

IMAGENET_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"


class WeightsError(JobError, ValueError):
    """The weights cannot be used: missing, unreadable, or not MobileNetV2 weights for this alpha."""


@dataclass(frozen=True)
class Weights:
    name: str  # what the user asked for: imagenet, random, or the file's URI
    alpha: float
    data: bytes
    suffix: str  # ".h5" (Keras' legacy files) or ".weights.h5" (Keras 3)
    # The model converted to TFLite on the driver (featurizers tflite*), so that workers need not convert it.
    tflite: Optional[bytes] = field(default=None, repr=False, compare=False)
    # Set where the file's bytes are not a stable identity (HDF5 files we write carry timestamps).
    digest: Optional[str] = None

    @property
    def sha256(self) -> str:
        return self.digest or hashlib.sha256(self.data).hexdigest()


def imagenet_file_name(alpha: float) -> str:
    return "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_%s_224_no_top.h5" % _alpha_text(alpha)


def _alpha_text(alpha: float) -> str:
    return ("%g" % alpha) if alpha != 1.0 else "1.0"


def build_model(alpha: float):
    """MobileNetV2 without top, average-pooled: 224x224x3 in, 1280 floats out (weights not loaded)."""
    import keras

    return keras.applications.MobileNetV2(
        input_shape=(224, 224, 3), alpha=alpha, include_top=False, pooling="avg", weights=None
    )


def write_temp_weights(weights: Weights) -> str:
    """Materialise the bytes once per machine (Keras loads weights from a file), in this user's private
    temp directory, under the sha256 of the bytes themselves: a file there whose bytes do not match its
    name (planted, half-written) is replaced, never loaded."""
    path = private_files.store("weights", weights.data, weights.suffix)
    private_files.prune("weights", weights.suffix, keep=path)  # random weights' bytes differ in every run
    return path


def load_model(weights: Weights):
    model = build_model(weights.alpha)
    model.load_weights(write_temp_weights(weights))
    return model


def read_weights_file(spark: SparkSession, uri: str, what: str = "weights file") -> bytes:
    """The whole file at ``uri`` (local or on a Hadoop filesystem), or a :class:`WeightsError` naming ``what``."""
    try:
        return storage.read_file(spark, uri)
    except Exception as exc:  # noqa: BLE001 - Py4J and OS errors alike mean "cannot read it"
        raise WeightsError("%s %s cannot be read: %s" % (what, uri, str(exc).splitlines()[0])) from None


def _keras_cache_file(alpha: float) -> str:
    """Where Keras keeps (and first looks for) the ImageNet file of this alpha: ``$KERAS_HOME/models`` or
    ``~/.keras/models``."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "models", imagenet_file_name(alpha))


def _read_if_present(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def _imagenet_bytes(alpha: float) -> bytes:
    """The ImageNet file, from Keras' cache when it is there (read without importing Keras), else downloaded."""
    cached = _read_if_present(_keras_cache_file(alpha))
    if cached is not None:
        return cached
    import keras

    name = imagenet_file_name(alpha)
    try:
        path = keras.utils.get_file(name, IMAGENET_URL + name, cache_subdir="models")
    except Exception as exc:  # noqa: BLE001
        raise WeightsError(
            "ImageNet weights for alpha %s could not be downloaded (%s). Without internet, put %s into "
            "~/.keras/models/ or pass --weights PATH." % (alpha, str(exc).splitlines()[0], name)
        ) from None
    with open(path, "rb") as handle:
        return handle.read()


def _random_stem(alpha: float, seed: int) -> str:
    """What random weights' values depend on: alpha, seed, the model's structure (Keras' version) and numpy's
    generator (its version), and how they are drawn here (bump ``v1`` when :func:`_random_weights` changes)."""
    import numpy as np

    return "random-v1-a%s-s%d-keras%s-numpy%s" % (alpha, seed, _version("keras"), np.__version__)


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "none"


def _known_random_digest(alpha: float, seed: int) -> Optional[str]:
    data = private_files.load(_random_stem(alpha, seed), ".sha256")
    return data.decode("ascii") if data is not None else None


def _random_weights(alpha: float, seed: int) -> Weights:
    """Seeded He-uniform kernels drawn by numpy: the same values (and the hash that identifies them) in every
    process, whatever Keras' global random state went through, and activations that keep their scale through
    the network (Keras' Glorot default shrinks the pooled features to ~1e-10, too small to compare)."""
    import numpy as np

    model = build_model(alpha)
    rng = np.random.default_rng(seed)
    values = []
    for variable in model.weights:  # a fixed order: the model's structure
        array = np.asarray(variable.numpy())
        if array.ndim >= 2:
            receptive = int(np.prod(array.shape[:-2])) if array.ndim > 2 else 1
            depthwise = "depthwise" in variable.path
            fan_in = receptive * (array.shape[-1] if depthwise else array.shape[-2])
            limit = np.sqrt(6.0 / fan_in)
            array = rng.uniform(-limit, limit, array.shape).astype(array.dtype)
        values.append(array)  # 1-d: biases and batch-norm statistics keep Keras' constant initial values
    model.set_weights(values)
    digest = hashlib.sha256(b"".join(array.tobytes() for array in values)).hexdigest()
    # Recorded, so that a later run finds the model converted from these values without drawing them again.
    private_files.store(_random_stem(alpha, seed), digest.encode("ascii"), ".sha256")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "random.weights.h5")
        model.save_weights(path)
        with open(path, "rb") as handle:
            data = handle.read()
    return Weights("random(seed=%d)" % seed, alpha, data, ".weights.h5", digest=digest)


def identify_weights(spark: SparkSession, name: str, alpha: float, seed: int = 0) -> Optional[Weights]:
    """The weights as named, known by their sha256 without Keras (or TensorFlow) and not checked: a file's bytes,
    Keras' cached ImageNet file; random weights by the digest recorded when this machine made them. None when
    that needs Keras (random weights never made here, ImageNet weights not downloaded yet)."""
    if name == "imagenet":
        data = _read_if_present(_keras_cache_file(alpha))
        return Weights(name, alpha, data, ".h5") if data is not None else None
    if name == "random":
        digest = _known_random_digest(alpha, seed)
        return Weights("random(seed=%d)" % seed, alpha, b"", ".weights.h5", digest=digest) if digest else None
    suffix = ".weights.h5" if name.endswith(".weights.h5") else ".h5"
    return Weights(name, alpha, read_weights_file(spark, name), suffix)


def resolve_weights(spark: SparkSession, name: str, alpha: float, seed: int = 0) -> Weights:
    """Fetch or make the weights and prove they fit the model, before any image is processed."""
    if name == "imagenet":
        weights = Weights(name, alpha, _imagenet_bytes(alpha), ".h5")
    elif name == "random":
        weights = _random_weights(alpha, seed)
    else:
        suffix = ".weights.h5" if name.endswith(".weights.h5") else ".h5"
        weights = Weights(name, alpha, read_weights_file(spark, name), suffix)
    return check_weights(weights)


def check_weights(weights: Weights) -> Weights:
    """The weights, once Keras has loaded them into MobileNetV2 at their alpha; a :class:`WeightsError` if not."""
    try:
        load_model(weights)
    except Exception as exc:  # noqa: BLE001 - Keras raises many kinds for a file that does not fit
        raise WeightsError(
            "weights %s do not fit MobileNetV2 alpha=%s without top: %s"
            % (weights.name, weights.alpha, " ".join(str(exc).split())[:300])
        ) from None
    return weights
