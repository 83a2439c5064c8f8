"""The converted model (float32 or int8 TFLite) run by LiteRT's XNNPACK interpreter, and its conversion cache.

On two cores the float model runs MobileNetV2 about twice as fast as Keras (docs/performance.md) with the same
features to within 1e-4; the int8 one (``--featurizer tflite-int8``) 2-2.4x the float one. Converting costs
~5-20 s and needs TensorFlow (:mod:`fruitjob.conversion`); running needs only LiteRT (:mod:`fruitjob.litert`). So
the driver converts once, caches the flatbuffer on disk by the weights' sha256 and the converter's version, and
ships the bytes in place of the weights; a Python worker only opens an interpreter on them. With the model cached,
the driver knows the weights by their hash (:func:`resolve_converted`) and imports no TensorFlow either.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Optional

import numpy as np
from pyspark.sql import SparkSession

from fruitjob import calibration, conversion, private_files
from fruitjob.litert import Engine, engine_threads, make_interpreter
from fruitjob.rules import FEATURE_DIM, TFLITE_FEATURIZERS
from fruitjob.weights import Weights, check_weights, identify_weights, resolve_weights

log = logging.getLogger("fruitflow.tflite")


def _tf_version() -> str:
    return conversion.converter_version() or "none"


def _cache_stem(weights: Weights, featurizer: str = "tflite") -> str:
    """What a cached model is converted from: the weights' hash, alpha, the converter's version (and for int8 the
    calibration set's hash)."""
    if featurizer == "tflite-int8":
        return "tflite-int8-%s-a%s-tf%s-cal%s" % (
            weights.sha256[:16],
            weights.alpha,
            _tf_version(),
            calibration.SHA256[:12],
        )
    return "tflite-%s-a%s-tf%s" % (weights.sha256[:16], weights.alpha, _tf_version())


def _check_featurizer(featurizer: str) -> None:
    if featurizer not in TFLITE_FEATURIZERS:
        raise ValueError("expected a TFLite featurizer (%s), got %r" % (", ".join(TFLITE_FEATURIZERS), featurizer))


def convert(weights: Weights, int8: bool = False) -> bytes:
    """The flatbuffer of these weights (TensorFlow imported here): float32, or int8 on the fixed calibration set."""
    return conversion.convert(weights, int8=int8)


def clear_cache() -> None:
    """Forget every converted model of this user on this machine (the benchmark measures a cold conversion)."""
    folder = private_files.private_dir()
    for name in os.listdir(folder):
        if name.startswith("tflite-") and name.endswith(".tflite"):
            private_files.remove(os.path.join(folder, name))


def cached_model(weights: Weights, featurizer: str = "tflite") -> Optional[bytes]:
    """The converted model of these weights in this machine's cache, if it is there (no TensorFlow needed)."""
    _check_featurizer(featurizer)
    return private_files.load(_cache_stem(weights, featurizer), ".tflite")


def tflite_model(weights: Weights, featurizer: str = "tflite") -> bytes:
    """The converted model: the bytes shipped with the weights, else a cached file, else converted now.

    The cache is this user's private temp directory; a cached file is named by the sha256 of its own bytes
    as well, and is used only when they match (the bytes read are the bytes checked and returned).
    """
    if weights.tflite:
        return weights.tflite
    cached = cached_model(weights, featurizer)
    if cached is not None:
        return cached
    data = convert(weights) if featurizer == "tflite" else convert(weights, int8=True)
    # Atomic: two processes converting at once never see half a file.
    private_files.store(_cache_stem(weights, featurizer), data, ".tflite")
    return data


def convert_for_workers(weights: Weights, featurizer: str = "tflite") -> Weights:
    """The weights with their converted model attached, so that no Python worker converts again."""
    # The Keras file is not needed past this point: workers run the flatbuffer, so it is not shipped (half the bytes).
    return dataclasses.replace(weights, tflite=tflite_model(weights, featurizer), data=b"", digest=weights.sha256)


def resolve_converted(
    spark: SparkSession, name: str, alpha: float, seed: int = 0, featurizer: str = "tflite"
) -> Weights:
    """The weights of a TFLite featurizer, with the converted model attached when this machine has it cached.

    Then no TensorFlow is imported and no Keras model built: the weights are known by their sha256 (random ones by
    the digest this machine recorded when it made them), and a model converted from them proves they fit
    MobileNetV2 at this alpha. Otherwise they are resolved and checked with Keras, as for ``--featurizer keras``,
    and :func:`convert_for_workers` converts them.
    """
    _check_featurizer(featurizer)
    known = identify_weights(spark, name, alpha, seed)
    if known is not None:
        cached = cached_model(known, featurizer)
        if cached is not None:
            log.info("converted model of %s (alpha %s, %s) found in the cache", known.name, alpha, featurizer)
            return dataclasses.replace(known, tflite=cached, data=b"", digest=known.sha256)
    if known is not None and known.data:  # a file already read: checked, not read again
        return check_weights(known)
    return resolve_weights(spark, name, alpha, seed)


def tflite_engine(weights: Weights, batch_size: int, threads: int = 0, featurizer: str = "tflite") -> Engine:
    """An engine (uint8 images -> float32 features) on the TFLite interpreter; XNNPACK is its default.

    Args:
        weights: the model's weights (with ``tflite`` attached when the driver converted them).
        batch_size: images per ``invoke``; 1-16 run as fast as larger batches and use far less memory.
        threads: interpreter threads; 0 takes ``engine_threads()`` (workers x threads = cores).
        featurizer: ``tflite`` or ``tflite-int8``: which model to convert when none is attached.
    """
    interpreter = make_interpreter(tflite_model(weights, featurizer), threads or engine_threads())
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    shape = [0]  # the batch size the tensors are allocated for

    def invoke(chunk: np.ndarray) -> np.ndarray:
        if shape[0] != len(chunk):
            interpreter.resize_tensor_input(input_index, [len(chunk), 224, 224, 3])
            interpreter.allocate_tensors()
            shape[0] = len(chunk)
        # Both models take float32 input and give float32 features: the int8 one (de)quantizes inside.
        interpreter.set_tensor(input_index, conversion.preprocess(chunk))
        interpreter.invoke()
        return interpreter.get_tensor(output_index).copy()

    def run(images: np.ndarray) -> np.ndarray:
        if images.ndim != 4 or images.shape[1:] != (224, 224, 3):
            raise ValueError("expected images of shape (n, 224, 224, 3), got %s" % (images.shape,))
        if len(images) == 0:
            return np.zeros((0, FEATURE_DIM), np.float32)
        outputs = [invoke(images[start : start + batch_size]) for start in range(0, len(images), batch_size)]
        return np.concatenate(outputs)

    return run
