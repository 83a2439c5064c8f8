"""``space.json``: the feature space an output's rows are in and the one PCA model of its ``pca/``, recorded once.

Written before the first row and again once the PCA model is known, so that a later ``--incremental`` run, even
after a crash that left no ``metrics.json``, checks the same identity and projects with exactly that model. The model
is the output's own ``pca_model/``, named relative to the output (``"pca_model"``) so that the output can move;
``pca_model_origin`` says where a ``--pca-model`` came from (informational: never read to find the model).
"""

from __future__ import annotations

import json
from typing import Dict, Optional

from pyspark.sql import SparkSession

from fruitjob import layout, storage
from fruitjob.errors import JobError


def load_space(spark: SparkSession, output: str) -> Optional[Dict[str, object]]:
    uri = layout.child(output, layout.SPACE)
    try:
        return storage.read_json_if_present(spark, uri)
    except ValueError as exc:  # UnicodeDecodeError among them
        raise JobError("%s is not readable JSON (%s); rerun with --overwrite to redo the output" % (uri, exc)) from None


def save_space(
    spark: SparkSession,
    output: str,
    identity: Dict[str, object],
    pca_model_id: Optional[str] = None,
    pca_model_origin: Optional[str] = None,
) -> None:
    """Record the space; with ``pca_model_id``, the output's own pca_model/ holds that model (saved before)."""
    record = {
        "identity": identity,
        "pca_model": layout.PCA_MODEL if pca_model_id else None,
        "pca_model_id": pca_model_id,
        "pca_model_origin": pca_model_origin,
    }
    storage.write_bytes(spark, layout.child(output, layout.SPACE), json.dumps(record, indent=2).encode())
