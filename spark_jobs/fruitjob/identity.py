"""The identity of a feature space: features from different weights, widths or engines never mix."""

from __future__ import annotations

import json
from typing import Dict, Optional

from pyspark.sql import SparkSession

from fruitjob import storage
from fruitjob.calibration import calibration_of

# What makes two feature vectors comparable. Library versions are recorded in metrics but not enforced:
# a patch release of TensorFlow moves features by rounding error, not into another space. An int8 model's features
# depend on its calibration set as well (None for the float featurizers, and in outputs older than int8).
IDENTITY_KEYS = ("weights_sha256", "alpha", "featurizer", "calibration")
IDENTITY_FILE = "identity.json"


class SpaceMismatch(ValueError):
    """Features or a PCA model from another feature space; the message names the difference."""


def identity_of(weights_name: str, weights_sha256: str, alpha: float, featurizer: str) -> Dict[str, object]:
    """The feature space of a run: also what metrics.json records (``calibration``: the int8 model's, else None)."""
    return {
        "weights": weights_name,
        "weights_sha256": weights_sha256,
        "alpha": alpha,
        "featurizer": featurizer,
        "calibration": calibration_of(featurizer),
    }


def check_same_space(current: Dict[str, object], other: Dict[str, object], what: str) -> None:
    differences = [
        "%s: %s has %r, this run %r" % (key, what, other.get(key), current.get(key))
        for key in IDENTITY_KEYS
        if other.get(key) != current.get(key)
    ]
    if differences:
        raise SpaceMismatch(
            "%s comes from another feature space (%s); run with the same --weights, --alpha and --featurizer, "
            "or start a new output" % (what, "; ".join(differences))
        )


def save_identity(spark: SparkSession, folder: str, identity: Dict[str, object]) -> None:
    storage.write_bytes(spark, folder.rstrip("/") + "/" + IDENTITY_FILE, json.dumps(identity, indent=2).encode())


def load_identity(spark: SparkSession, folder: str) -> Optional[Dict[str, object]]:
    uri = folder.rstrip("/") + "/" + IDENTITY_FILE
    if not storage.exists(spark, uri):
        return None
    return json.loads(storage.read_bytes(spark, uri).decode())
