"""Do the features separate the classes? Leave-one-out nearest-class-centroid accuracy, without training anything.

Each image is classified by the nearest class centroid (L2-normalised vectors), its own class's centroid computed
without it; on the full features and in the PCA space. Cheap: on the driver, over every image of a small output
or a fixed-size stratified sample of a big one (the same images per class whatever the partitioning: chosen by a
hash of the path). Classes of one image cannot be scored and are left out.
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from fruitjob.metrics import ClassQuality, FeatureQuality

SAMPLE_SIZE = 5000
METHOD = "leave-one-out nearest class centroid (L2-normalised), on the driver"


def loo_predictions(vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The class each row's nearest centroid gives, its own class's centroid computed without it."""
    x = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    names, index, counts = np.unique(labels, return_inverse=True, return_counts=True)
    sums = np.zeros((len(names), x.shape[1]))
    np.add.at(sums, index, x)
    centroids = sums / counts[:, None]
    distances = (x**2).sum(1)[:, None] - 2 * x @ centroids.T + (centroids**2).sum(1)[None, :]
    own = counts[index]
    scored = own > 1
    loo = (sums[index][scored] - x[scored]) / (own[scored] - 1)[:, None]
    distances[np.flatnonzero(scored), index[scored]] = ((x[scored] - loo) ** 2).sum(1)
    distances[np.flatnonzero(~scored), index[~scored]] = np.inf  # one image: its class has no other member
    return names[distances.argmin(axis=1)]


def per_class(labels: np.ndarray, by_features: np.ndarray, by_pca: np.ndarray) -> List[ClassQuality]:
    """Accuracy per class on both spaces, and the class its images are most often taken for (full features)."""
    rows = []
    for label in sorted(set(labels.tolist())):
        mine = labels == label
        wrong = by_features[mine][by_features[mine] != label]
        values, counts = np.unique(wrong, return_counts=True)
        rows.append(
            ClassQuality(
                label=label,
                images=int(mine.sum()),
                accuracy_features=round(float((by_features[mine] == label).mean()), 4),
                accuracy_pca=round(float((by_pca[mine] == label).mean()), 4),
                most_confused_with=str(values[counts.argmax()]) if len(values) else None,
            )
        )
    return rows


def sample(features: DataFrame, pca: DataFrame, size: int = SAMPLE_SIZE, total: Optional[int] = None) -> DataFrame:
    """(label, features, pca) of every image, or of about ``size`` images stratified by class.

    The sample is chosen on (path, label) alone, so only the chosen images' vectors are joined and moved. ``total``:
    the rows of ``features``, when the caller knows them (else counted).
    """
    keys = features.select("path", "label")
    if total is None:
        total = keys.count()
    if total > size:
        classes = max(1, keys.select("label").distinct().count())
        quota = max(2, size // classes)
        rank = F.row_number().over(Window.partitionBy("label").orderBy(F.xxhash64("path"), "path"))
        chosen = F.broadcast(keys.withColumn("rank", rank).where(F.col("rank") <= quota).select("path"))
        features, pca = (frame.join(chosen, on="path", how="left_semi") for frame in (features, pca))
    joined = features.select("path", "label", "features").join(pca.select("path", "pca"), on="path")
    return joined.select("label", "features", "pca")


def _matrix(column) -> np.ndarray:
    return np.stack([np.asarray(v, dtype=np.float64) for v in column])


def feature_quality(
    features: DataFrame, pca: DataFrame, size: int = SAMPLE_SIZE, total: Optional[int] = None
) -> Optional[FeatureQuality]:
    """The ``feature_quality`` entry of metrics.json, or None when no class has two images. ``total``: the rows of
    ``features``, when the caller knows them (the job does: it counted what it wrote), else they are counted."""
    if total is None:
        total = features.count()
    rows = sample(features, pca, size, total).toPandas()  # through Arrow (configured by the job): ~3x collect()
    labels = rows["label"].to_numpy().astype(str)
    if not len(rows) or max(np.unique(labels, return_counts=True)[1]) < 2:
        return None
    full = loo_predictions(_matrix(rows["features"]), labels)
    reduced = loo_predictions(_matrix(rows["pca"]), labels)
    scored = np.isin(labels, [k for k, n in zip(*np.unique(labels, return_counts=True)) if n > 1])
    return FeatureQuality(
        method=METHOD,
        sample_size=int(scored.sum()),
        images_total=int(total),
        accuracy_features=round(float((full[scored] == labels[scored]).mean()), 4),
        accuracy_pca=round(float((reduced[scored] == labels[scored]).mean()), 4),
        per_class=per_class(labels[scored], full[scored], reduced[scored]),
    )
