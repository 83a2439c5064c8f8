"""The Keras model converted to TensorFlow Lite (float32) and run by its XNNPACK interpreter.

On two cores this runs MobileNetV2 about twice as fast as Keras (see docs/performance.md) and gives the
same features to within 1e-5. Converting costs ~5 s and needs Keras; running needs only the flatbuffer.
So the driver converts once (:func:`convert_for_workers`, cached on disk by the weights' hash) and ships
the bytes with the weights, and a Python worker only opens an interpreter on them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import warnings
from typing import Callable

import numpy as np

from fruitjob import private_files
from fruitjob.rules import FEATURE_DIM
from fruitjob.weights import Weights

log = logging.getLogger("fruitflow.tflite")
Engine = Callable[[np.ndarray], np.ndarray]


def _tf_version() -> str:
    import tensorflow as tf

    return tf.__version__


def convert(weights: Weights) -> bytes:
    """The TFLite flatbuffer of MobileNetV2 with these weights: float32 in (-1..1), pooled features out.

    ``from_keras_model`` freezes the variables into the flatbuffer; a concrete function of a Keras 3
    model gave a graph without its weights here (NaN features), so it is not used.
    """
    import tensorflow as tf

    from fruitjob.weights import load_model

    converter = tf.lite.TFLiteConverter.from_keras_model(load_model(weights))
    converter.optimizations = []  # float32 as Keras computes it: no quantisation
    with contextlib.redirect_stdout(io.StringIO()):  # Keras prints every variable of the exported graph
        return converter.convert()


def _cache_stem(weights: Weights) -> str:
    """What a cached model is converted from: the weights' hash, alpha and the converter's version."""
    return "tflite-%s-a%s-tf%s" % (weights.sha256[:16], weights.alpha, _tf_version())


def clear_cache() -> None:
    """Forget every converted model of this user on this machine (the benchmark measures a cold conversion)."""
    folder = private_files.private_dir()
    for name in os.listdir(folder):
        if name.startswith("tflite-") and name.endswith(".tflite"):
            private_files.remove(os.path.join(folder, name))


def tflite_model(weights: Weights) -> bytes:
    """The converted model: the bytes shipped with the weights, else a cached file, else converted now.

    The cache is this user's private temp directory; a cached file is named by the sha256 of its own bytes
    as well, and is used only when they match (the bytes read are the bytes checked and returned).
    """
    if weights.tflite:
        return weights.tflite
    stem = _cache_stem(weights)
    cached = private_files.load(stem, ".tflite")
    if cached is not None:
        return cached
    data = convert(weights)
    private_files.store(stem, data, ".tflite")  # atomic: two processes converting at once never see half a file
    return data


def convert_for_workers(weights: Weights) -> Weights:
    """The weights with their converted model attached, so that no Python worker converts again."""
    # The Keras file is not needed past this point: workers run the flatbuffer, so it is not shipped (half the bytes).
    return dataclasses.replace(weights, tflite=tflite_model(weights), data=b"", digest=weights.sha256)


def _interpreter(model: bytes, threads: int):
    # ai-edge-litert is the interpreter's new home and much lighter to import; TensorFlow's copy is used
    # where it is not installed (it ships with tensorflow 2.21 and only warns that it is deprecated).
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return Interpreter(model_content=model, num_threads=threads)


def tflite_engine(weights: Weights, batch_size: int, threads: int = 0) -> Engine:
    """An engine (uint8 images -> float32 features) on the TFLite interpreter; XNNPACK is its default.

    Args:
        weights: the model's weights (with ``tflite`` attached when the driver converted them).
        batch_size: images per ``invoke``; 1-16 run as fast as larger batches and use far less memory.
        threads: interpreter threads; 0 takes ``engine_threads()`` (workers x threads = cores).
    """
    if not threads:
        from fruitjob.featurizer import engine_threads

        threads = engine_threads()
    interpreter = _interpreter(tflite_model(weights), threads)
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    shape = [0]  # the batch size the tensors are allocated for

    def invoke(chunk: np.ndarray) -> np.ndarray:
        if shape[0] != len(chunk):
            interpreter.resize_tensor_input(input_index, [len(chunk), 224, 224, 3])
            interpreter.allocate_tensors()
            shape[0] = len(chunk)
        # keras.applications.mobilenet_v2.preprocess_input, in the same float32 operations.
        x = chunk.astype(np.float32)
        x /= 127.5
        x -= 1.0
        interpreter.set_tensor(input_index, x)
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
