"""Where each part of a run lives under ``--output``; one place for the names."""

from __future__ import annotations

FEATURES = "features"
PCA = "pca"
ERRORS = "errors"
PCA_MODEL = "pca_model"
METRICS = "metrics.json"
STAGING = "_featurized"  # what jobs before the one-pass write staged (a killed one left it): discarded
SPACE = "space.json"  # the feature space and the one PCA model the output's rows are in, recorded once
LOCK = "_fruitflow.lock"  # the lease of the run writing the output
SUMMARY = "summary.md"
PLOT = "explained_variance.png"
HEALTH = "health"  # pairs/, outliers/, mislabels/: the dataset-health tables (fruitjob/health.py)
# Columns, in order; the first of each are the documented ones (INTERFACE.md), the others serve reruns.
FEATURE_COLUMNS = ["path", "label", "size", "features", "modified", "etag", "run_id", "sha256"]
ERROR_COLUMNS = ["path", "label", "error", "size", "modified", "etag", "run_id"]
PCA_COLUMNS = ["path", "label", "pca", "pca_model_id"]


def child(output: str, name: str) -> str:
    return output.rstrip("/") + "/" + name
