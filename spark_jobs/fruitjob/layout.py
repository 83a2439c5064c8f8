"""Where each part of a run lives under ``--output``; one place for the names."""

from __future__ import annotations

FEATURES = "features"
PCA = "pca"
ERRORS = "errors"
PCA_MODEL = "pca_model"
METRICS = "metrics.json"
STAGING = "_featurized"  # one pass of the model, split into features/ and errors/, then removed


def child(output: str, name: str) -> str:
    return output.rstrip("/") + "/" + name
