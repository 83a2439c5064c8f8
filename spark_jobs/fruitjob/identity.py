"""The identity of a feature space: features from different weights, widths or engines never mix."""

from __future__ import annotations

import hashlib
import json
from typing import Dict, Optional

import numpy as np
from pyspark.sql import Column, SparkSession

from fruitjob import storage
from fruitjob.calibration import calibration_of
from fruitjob.errors import JobError

# What makes two feature vectors comparable. Library versions are recorded in metrics but not enforced:
# a patch release of TensorFlow moves features by rounding error, not into another space. An int8 model's features
# depend on its calibration set as well (None for the float featurizers, and in outputs older than int8).
IDENTITY_KEYS = ("weights_sha256", "alpha", "featurizer", "calibration")
IDENTITY_FILE = "identity.json"
# The key, in the metadata of the vector column of features/ and pca/, under which each Parquet file records the
# identity of the space its vectors are in (pca/ adds its ``pca_model_id``). Spark writes a column's metadata into
# every file's footer (the schema under ``org.apache.spark.sql.parquet.row.metadata``, Spark 3.5 and 4 alike), so a
# file says itself which space it belongs to, wherever it is copied; validation reads it with pyarrow.
PARQUET_METADATA_KEY = "fruitflow.identity"


class SpaceMismatch(JobError, ValueError):
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


def pca_model_id(mean: np.ndarray, components: np.ndarray) -> str:
    """A PCA space's identity: a hash of its mean and components (features x components), as float64. Every pca/ row
    carries it; validation computes it again from the model's pca_model.npz."""
    data = np.asarray(mean, dtype=np.float64).tobytes() + np.asarray(components, dtype=np.float64).tobytes()
    return hashlib.sha256(data).hexdigest()[:16]


def recorded(column: Column, name: str, identity: Dict[str, object]) -> Column:
    """``column`` as ``name``, its metadata recording ``identity`` (as one JSON string: Spark's metadata keeps it
    exactly, whatever the types inside)."""
    return column.alias(name, metadata={PARQUET_METADATA_KEY: json.dumps(identity, sort_keys=True)})


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
