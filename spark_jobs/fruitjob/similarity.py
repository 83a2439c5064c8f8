"""Similar pairs of images: cosine of the L2-normalised features >= a threshold, found by a blocked exact search.

The rows are cut into blocks of about ``BLOCK_ROWS`` (by a hash of the path); each block becomes one Spark row of
arrays. Blocks of this output are cross-joined with the blocks that come after them (this output) and with every
block of the earlier outputs, and each pair of blocks is one numpy matrix product in a worker (``mapInPandas``):
exact (recall 1), no feature ever on the driver, and the product of two 1024-row blocks of 1280-d vectors takes a
few milliseconds of BLAS. Each image keeps its ``MAX_PAIRS_PER_IMAGE`` most similar pairs in each pair of blocks,
so that features that are all alike (random weights) make rows linear in the images, not n^2. The cost is
quadratic in the rows, but with BLAS constants: docs/performance.md (Dataset health) compares it with Spark ML's
LSH (``bench/health_scale.py``).
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, DoubleType, StringType, StructField, StructType

from fruitjob.rules import MAX_PAIRS_PER_IMAGE

BLOCK_ROWS = 1024
METHOD = "exact-blocked"
# the columns of the rows searched (``items``): ``side`` is "this" (this output) or "earlier"
ITEM_COLUMNS = ["path", "label", "output", "run_id", "sha256", "side", "features"]
PAIR_SCHEMA = StructType(
    [
        StructField("path", StringType(), False),
        StructField("label", StringType(), False),
        StructField("other_path", StringType(), False),
        StructField("other_label", StringType(), False),
        StructField("other_output", StringType(), True),
        StructField("similarity", DoubleType(), False),
        StructField("exact", BooleanType(), False),
        StructField("conflict", BooleanType(), False),
        StructField("leak", BooleanType(), False),
    ]
)
PAIR_COLUMNS = [f.name for f in PAIR_SCHEMA.fields]


def unit_rows(vectors) -> np.ndarray:
    """Rows of ``vectors`` (a sequence of arrays) as a float32 matrix, each row of length 1 (zero rows stay 0)."""
    matrix = np.stack([np.asarray(v, dtype=np.float32) for v in vectors]) if len(vectors) else np.zeros((0, 0))
    norms = np.linalg.norm(matrix, axis=1, keepdims=True) if len(matrix) else np.zeros((0, 1))
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)


def _blocks(items: DataFrame, rows: int, block_rows: int) -> DataFrame:
    count = max(1, int(math.ceil(rows / float(block_rows))))
    block = F.pmod(F.xxhash64("path", "output"), F.lit(count)).cast("int")
    return (
        items.withColumn("block", block)
        .groupBy("side", "block")
        .agg(*[F.collect_list(c).alias(c) for c in ITEM_COLUMNS if c != "side"])
    )


def _pairs_of_blocks(threshold: float):
    def find(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in frames:
            out = []
            for row in frame.itertuples(index=False):
                out.append(_pairs_of_one(row, threshold))
            if out:
                yield pd.concat(out, ignore_index=True)

    return find


def _most_similar(similarity: np.ndarray, threshold: float, most: int):
    """(rows, columns) of the entries >= ``threshold``, at most ``most`` per row: the highest ones."""
    if similarity.shape[1] > most:  # the row's ``most`` highest, the others below any threshold
        beaten = np.argpartition(-similarity, most, axis=1)[:, most:]
        similarity = similarity.copy()
        np.put_along_axis(similarity, beaten, -2.0, axis=1)
    return np.nonzero(similarity >= threshold - 1e-6)


def _pairs_of_one(row, threshold: float) -> pd.DataFrame:
    left, right = unit_rows(row.features), unit_rows(row.o_features)
    similarity = left @ right.T
    same_block = row.o_side == "this" and row.block == row.o_block
    if same_block:
        similarity = np.triu(similarity, k=1) + np.tril(np.full_like(similarity, -2.0))
    i, j = _most_similar(similarity, threshold, MAX_PAIRS_PER_IMAGE)
    if not len(i):
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in PAIR_COLUMNS})
    paths, labels, runs, hashes = (
        np.asarray(getattr(row, c), dtype=object) for c in ("path", "label", "run_id", "sha256")
    )
    o_paths, o_labels, o_runs, o_hashes = (
        np.asarray(getattr(row, "o_" + c), dtype=object) for c in ("path", "label", "run_id", "sha256")
    )
    o_outputs = np.asarray(row.o_output, dtype=object)
    a_path, a_label, b_path, b_label = paths[i], labels[i], o_paths[j], o_labels[j]
    if row.o_side == "this":  # within this output: once, path < other_path
        swap = a_path > b_path
        a_path, b_path = np.where(swap, b_path, a_path), np.where(swap, a_path, b_path)
        a_label, b_label = np.where(swap, b_label, a_label), np.where(swap, a_label, b_label)
        leak = runs[i] != o_runs[j]  # an earlier batch of this output
    else:
        leak = np.ones(len(i), dtype=bool)
    exact = (hashes[i] == o_hashes[j]) & (hashes[i] != "")
    return pd.DataFrame(
        {
            "path": a_path,
            "label": a_label,
            "other_path": b_path,
            "other_label": b_label,
            # within this output: null, so that the output can move (a copy names no other output)
            "other_output": np.full(len(i), None, dtype=object) if row.o_side == "this" else o_outputs[j],
            "similarity": np.where(exact, 1.0, np.minimum(similarity[i, j].astype(np.float64), 1.0)),
            "exact": exact,
            "conflict": a_label != b_label,
            "leak": leak,
        }
    )


def similar_pairs(items: DataFrame, rows: int, threshold: float, block_rows: int = BLOCK_ROWS) -> DataFrame:
    """PAIR_SCHEMA rows of ``items`` (ITEM_COLUMNS; ``rows`` of them in all) with cosine >= ``threshold``: pairs
    within this output once, and this output against the earlier ones."""
    blocks = _blocks(items.select(*ITEM_COLUMNS), rows, block_rows)
    mine = blocks.where(F.col("side") == "this")
    others = blocks.select(*[F.col(c).alias("o_" + c) for c in blocks.columns])
    joined = mine.crossJoin(others).where((F.col("o_side") == "earlier") | (F.col("block") <= F.col("o_block")))
    return joined.mapInPandas(_pairs_of_blocks(threshold), PAIR_SCHEMA)


__all__ = ["BLOCK_ROWS", "ITEM_COLUMNS", "METHOD", "PAIR_COLUMNS", "PAIR_SCHEMA", "similar_pairs", "unit_rows"]
