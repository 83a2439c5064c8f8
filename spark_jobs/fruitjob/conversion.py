"""Keras MobileNetV2 -> TFLite flatbuffer, float32 or full-integer int8: the only module that needs TensorFlow to
make a model (imported inside the functions; the Python workers never call them).

Both flatbuffers take the float32 input Keras' ``preprocess_input`` makes (-1..1) and give 1280 float32 features:
the int8 one quantizes its input and dequantizes its output itself, so every engine call looks the same.
"""

from __future__ import annotations

import contextlib
import io
from typing import Iterator, List, Optional

import numpy as np

from fruitjob import calibration
from fruitjob.metrics import TENSORFLOW_DISTRIBUTIONS, first_installed
from fruitjob.weights import Weights, load_model


def converter_version() -> Optional[str]:
    """TensorFlow's version, read from its installed metadata: without importing it (~2 s, ~400 MB)."""
    return first_installed(TENSORFLOW_DISTRIBUTIONS)


def preprocess(images: np.ndarray) -> np.ndarray:
    """``keras.applications.mobilenet_v2.preprocess_input`` in the same float32 operations: uint8 -> -1..1."""
    x = images.astype(np.float32)
    x /= 127.5
    x -= 1.0
    return x


def _representative(samples: List[np.ndarray]):
    def generate() -> Iterator[List[np.ndarray]]:
        for sample in samples:
            yield [preprocess(sample)]

    return generate


def convert(weights: Weights, int8: bool = False, samples: Optional[List[np.ndarray]] = None) -> bytes:
    """The TFLite flatbuffer of MobileNetV2 with these weights.

    Args:
        weights: the Keras weights (their bytes: ``weights.data``).
        int8: full-integer post-training quantization (weights and activations int8; float32 in and out),
            calibrated on ``samples`` (uint8 images of shape (1, 224, 224, 3)), by default the fixed set of
            :mod:`fruitjob.calibration`. False: float32 as Keras computes it.

    ``from_keras_model`` freezes the variables into the flatbuffer; a concrete function of a Keras 3 model gave a
    graph without its weights here (NaN features), so it is not used.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(load_model(weights))
    if int8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative(samples or calibration.batches())
        # Every op int8 or the conversion fails: no op silently left in float.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    else:
        converter.optimizations = []  # no quantization
    with contextlib.redirect_stdout(io.StringIO()):  # Keras prints every variable of the exported graph
        return converter.convert()
