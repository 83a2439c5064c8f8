"""The TFLite interpreter a Python worker runs the converted model with, and what every engine shares.

LiteRT (``ai-edge-litert``) is the interpreter's home now: a ~10-20 MB wheel that imports in a fraction of a second
and needs only numpy, where TensorFlow costs ~2 s and ~400 MB per worker. It is looked for in this order:

1. ``ai_edge_litert.interpreter`` (ai-edge-litert: 2.3.0 here, 2.1.0 on the cluster's Python 3.9, the last with a
   cp39 wheel);
2. ``tflite_runtime.interpreter`` (tflite-runtime, the package's old name; 2.14.0 was its last release), for a
   Python no LiteRT wheel is built for;
3. ``tensorflow.lite``, the deprecated copy in TensorFlow, as a last resort, with a warning in the log.
"""

from __future__ import annotations

import logging
import os
import warnings
from importlib import metadata
from typing import Any, Callable, Optional, Tuple

import numpy as np

log = logging.getLogger("fruitflow.litert")
# An engine maps uint8 images (n, 224, 224, 3) to float32 features (n, 1280).
Engine = Callable[[np.ndarray], np.ndarray]
# (module, distribution whose version is reported)
_RUNTIMES = (
    ("ai_edge_litert.interpreter", "ai-edge-litert"),
    ("tflite_runtime.interpreter", "tflite-runtime"),
)
_FOUND: Optional[Tuple[Any, str]] = None


def engine_threads() -> int:
    """Threads per engine: one per task slot, so that workers x threads = cores."""
    return int(os.environ.get("FRUITFLOW_ENGINE_THREADS", "1"))


def _find() -> Tuple[Any, str]:
    import importlib

    for module_name, distribution in _RUNTIMES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        return module.Interpreter, "%s %s" % (distribution, _version(distribution))
    log.warning(
        "neither ai-edge-litert nor tflite-runtime is installed: running the model with TensorFlow's deprecated "
        "tf.lite.Interpreter, which imports all of TensorFlow in every Python worker (pip install ai-edge-litert)"
    )
    try:
        import tensorflow as tf
    except ImportError:
        raise ImportError(
            "no TFLite interpreter: install ai-edge-litert (or tflite-runtime where no LiteRT wheel exists for "
            "this Python), or run with --featurizer keras"
        ) from None
    return tf.lite.Interpreter, "tensorflow.lite %s" % tf.__version__


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def interpreter_class() -> Any:
    """The ``Interpreter`` class of the first runtime found (found once per process)."""
    global _FOUND
    if _FOUND is None:
        _FOUND = _find()
    return _FOUND[0]


def runtime() -> str:
    """Which interpreter runs the model here, with its version: ``ai-edge-litert 2.3.0``."""
    interpreter_class()
    assert _FOUND is not None
    return _FOUND[1]


def make_interpreter(model: bytes, threads: int):
    """An interpreter on a flatbuffer's bytes; XNNPACK (the CPU delegate) is the default of every runtime."""
    cls = interpreter_class()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # tf.lite's "will be deleted" notice, for the last resort
        return cls(model_content=model, num_threads=threads)
