"""Each image against the class centroids (means of the unit features; its own class's without itself): the
health stage's outlier scores and suspected mislabels (fruitjob/health.py).

- Outlier score: ``1 - max_c cos(x, centroid_c)``, higher = further from every class; flagged above
  ``median + OUTLIER_MADS * 1.4826 * MAD`` of the scores and at least ``OUTLIER_MIN_SCORE``.
- Suspected mislabel: an image closer to another class's centroid than to its own;
  ``confidence = sigmoid((cos_other - cos_own) / MISLABEL_TEMPERATURE)`` (0.5 .. 1), flagged from ``MISLABEL_CUT``.

Only the class sums (labels x 1280 doubles) and the scores (a few values an image, no feature) reach the driver.
"""

from __future__ import annotations

from typing import Dict, Iterator, List, Tuple

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql.types import ArrayType, DoubleType, LongType, StringType, StructField, StructType

from fruitjob.block_search import unit_rows

OUTLIER_MADS = 6.0
OUTLIER_MIN_SCORE = 0.25
MISLABEL_TEMPERATURE = 0.05
MISLABEL_CUT = 0.9

SUMS_SCHEMA = StructType(
    [
        StructField("side", StringType(), False),
        StructField("label", StringType(), False),
        StructField("n", LongType(), False),
        StructField("total", ArrayType(DoubleType()), True),  # null for the earlier outputs' rows: only counted
    ]
)
SCORE_SCHEMA = StructType(
    [
        StructField("path", StringType(), False),
        StructField("label", StringType(), False),
        StructField("score", DoubleType(), False),
        StructField("nearest_label", StringType(), True),
        StructField("resembles", StringType(), True),
        StructField("confidence", DoubleType(), True),
    ]
)


def class_sums(items: DataFrame) -> Tuple[List[str], np.ndarray, np.ndarray, Dict[str, int]]:
    """(labels, images per label, sum of the unit features per label) of the rows whose ``side`` is "this", and the
    rows of each side: partial sums per partition, reduced here (one Spark job)."""

    def partial(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        sums: Dict[str, np.ndarray] = {}
        counts: Dict[Tuple[str, str], int] = {}
        for frame in frames:
            mine = frame[frame["side"] == "this"]
            units = unit_rows(list(mine["features"])).astype(np.float64)
            for label, positions in mine.groupby("label").indices.items():
                sums[label] = sums.get(label, 0.0) + units[positions].sum(axis=0)
            for (side, label), size in frame.groupby(["side", "label"]).size().items():
                counts[(side, label)] = counts.get((side, label), 0) + int(size)
        if counts:  # an empty partition yields nothing
            keys = list(counts)
            yield pd.DataFrame(
                {
                    "side": [side for side, _ in keys],
                    "label": [label for _, label in keys],
                    "n": [counts[key] for key in keys],
                    "total": [sums.get(label) if side == "this" else None for side, label in keys],
                }
            )

    rows = items.select("side", "label", "features").mapInPandas(partial, SUMS_SCHEMA).collect()
    sides: Dict[str, int] = {}
    for row in rows:
        sides[row["side"]] = sides.get(row["side"], 0) + row["n"]
    mine = [row for row in rows if row["side"] == "this"]
    labels = sorted({row["label"] for row in mine})
    index = {label: k for k, label in enumerate(labels)}
    counts = np.zeros(len(labels))
    totals = np.zeros((len(labels), len(mine[0]["total"]) if mine else 0))
    for row in mine:
        counts[index[row["label"]]] += row["n"]
        totals[index[row["label"]]] += np.asarray(row["total"])
    return labels, counts, totals, sides


def scorer(labels: List[str], counts: np.ndarray, totals: np.ndarray):
    index = {label: k for k, label in enumerate(labels)}
    names = np.asarray(labels, dtype=object)

    def score(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in frames:
            units = unit_rows(list(frame["features"])).astype(np.float64)
            own = np.asarray([index[label] for label in frame["label"]])
            rows = np.arange(len(frame))
            # each image against every centroid; its own class's without itself (leave one out)
            centroids = totals / np.maximum(np.linalg.norm(totals, axis=1, keepdims=True), 1e-12)
            sims = units @ centroids.T
            own_sum = totals[own] - units
            own_norm = np.linalg.norm(own_sum, axis=1)
            alone = counts[own] <= 1
            sims[rows, own] = np.where(alone, -1.0, (units * own_sum).sum(axis=1) / np.maximum(own_norm, 1e-12))
            nearest = sims.argmax(axis=1)
            own_sim = sims[rows, own].copy()
            others = sims.copy()
            others[rows, own] = -np.inf
            other = others.argmax(axis=1)
            margin = others[rows, other] - own_sim
            suspect = (margin > 0) & ~alone & (len(labels) > 1)
            confidence = 1.0 / (1.0 + np.exp(-np.clip(margin / MISLABEL_TEMPERATURE, -50, 50)))
            yield pd.DataFrame(
                {
                    "path": frame["path"],
                    "label": frame["label"],
                    "score": 1.0 - sims[rows, nearest],
                    "nearest_label": names[nearest],
                    "resembles": np.where(suspect, names[other], None),
                    "confidence": np.where(suspect, confidence, np.nan),
                }
            )

    return score


def outlier_cut(scores: np.ndarray) -> float:
    """``median + OUTLIER_MADS * 1.4826 * MAD`` of the scores, at least ``OUTLIER_MIN_SCORE`` (1.0 with no score)."""
    if not len(scores):
        return 1.0
    median = float(np.median(scores))
    mad = float(np.median(np.abs(scores - median)))
    return max(OUTLIER_MIN_SCORE, median + OUTLIER_MADS * 1.4826 * mad)


__all__ = ["MISLABEL_CUT", "OUTLIER_MADS", "SCORE_SCHEMA", "class_sums", "outlier_cut", "scorer"]
