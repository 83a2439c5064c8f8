"""``space.json``: the feature space an output's rows are in and the one PCA model of its ``pca/``, recorded once.

Written before the first row and again once the PCA model is known, so that a later ``--incremental`` run, even
after a crash that left no ``metrics.json``, checks the same identity and projects with exactly that model.
"""

from __future__ import annotations

import json
from typing import Dict, Optional

from pyspark.sql import SparkSession

from fruitjob import layout, storage


def load_space(spark: SparkSession, output: str) -> Optional[Dict[str, object]]:
    uri = layout.child(output, layout.SPACE)
    if not storage.exists(spark, uri):
        return None
    return json.loads(storage.read_bytes(spark, uri).decode())


def save_space(
    spark: SparkSession,
    output: str,
    identity: Dict[str, object],
    pca_model: Optional[str] = None,
    pca_model_id: Optional[str] = None,
) -> None:
    record = {"identity": identity, "pca_model": pca_model, "pca_model_id": pca_model_id}
    storage.write_bytes(spark, layout.child(output, layout.SPACE), json.dumps(record, indent=2).encode())
