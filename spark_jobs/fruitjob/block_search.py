"""The blocked exact search for similar pairs: cosine of the L2-normalised features >= a threshold, every pair of
rows compared (recall 1), no feature ever on the driver.

The rows are cut into blocks of about ``BLOCK_ROWS`` (by a hash of the path); each block becomes one Spark row of
arrays, sorted by (output, path). Blocks of this output are cross-joined with the blocks that come after them (this
output) and with every block of the earlier outputs, and each pair of blocks is one numpy matrix product in a worker
(``mapInPandas``): the product of two 1024-row blocks of 1280-d vectors takes a few milliseconds of BLAS. Two images
with the same ``sha256`` are a pair of similarity 1.0 (exact) whatever their features, so byte copies need no join of
their own. The cost is quadratic in the rows, but with BLAS constants; fruitjob/simhash.py searches the buckets of its
LSH with the same products (:func:`pairs_of_one`).

Each pair of blocks drops the pairs that are not in the top ``most`` of either image within that pair of blocks (they
cannot be in the top ``most`` overall: fruitjob/similarity.py's pair cap), and says how many pairs were above the
threshold (``found``, on its first row), so that the pairs the cap cut off can be counted.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Iterator, List, Optional

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DoubleType,
    FloatType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from fruitjob.rules import MAX_PAIRS_PER_IMAGE

BLOCK_ROWS = 1024
# the columns of the rows searched (``items``): ``side`` is "this" (this output) or "earlier"
ITEM_SCHEMA = StructType(
    [
        StructField("path", StringType(), False),
        StructField("label", StringType(), False),
        StructField("output", StringType(), True),
        StructField("run_id", StringType(), True),
        StructField("sha256", StringType(), True),
        StructField("side", StringType(), False),
        StructField("features", ArrayType(FloatType()), True),
    ]
)
ITEM_COLUMNS = ITEM_SCHEMA.names
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
# what the search returns: the pairs, and on the first row of each pair of blocks the pairs it found above the cut
FOUND = "found"
CANDIDATE_SCHEMA = StructType(PAIR_SCHEMA.fields + [StructField(FOUND, LongType(), False)])
_NOT_A_PAIR = -2.0  # below any cosine: the diagonal, and a block's lower triangle against itself


def unit_rows(vectors) -> np.ndarray:
    """Rows of ``vectors`` (a sequence of arrays) as a float32 matrix, each row of length 1 (zero rows stay 0)."""
    matrix = np.stack([np.asarray(v, dtype=np.float32) for v in vectors]) if len(vectors) else np.zeros((0, 0))
    norms = np.linalg.norm(matrix, axis=1, keepdims=True) if len(matrix) else np.zeros((0, 1))
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)


def block_count(rows: int, block_rows: int = BLOCK_ROWS) -> int:
    return max(1, int(math.ceil(rows / float(block_rows))))


def _blocks(items: DataFrame, count: int) -> DataFrame:
    block = F.pmod(F.xxhash64("path", "output"), F.lit(count)).cast("int")
    columns = ["output", "path", "label", "run_id", "sha256", "features"]
    # sorted by (output, path): ties in similarity fall to the same image in a block as in the window over all blocks
    rows = F.array_sort(F.collect_list(F.struct(*columns)))
    return (
        items.withColumn("block", block)
        .groupBy("side", "block")
        .agg(rows.alias("rows"))
        .select("side", "block", *[F.col("rows." + c).alias(c) for c in columns])
    )


def top_of_rows(similarity: np.ndarray, most: int) -> np.ndarray:
    """A mask of each row's ``most`` highest entries; between equal entries the lower column index goes first."""
    if similarity.shape[1] <= most:
        return np.ones(similarity.shape, dtype=bool)
    kth = -np.partition(-similarity, most - 1, axis=1)[:, most - 1 : most]
    above = similarity > kth
    tied = similarity == kth
    room = most - above.sum(axis=1, keepdims=True)
    return above | (tied & (np.cumsum(tied, axis=1) <= room))


def _pairs_of_blocks(threshold: float, most: int):
    def find(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in frames:
            out = [pairs_of_one(row, threshold, most) for row in frame.itertuples(index=False)]
            out = [pairs for pairs in out if len(pairs)]  # pandas warns on concatenating empty frames
            if out:
                yield pd.concat(out, ignore_index=True)

    return find


def _similarities(row, same_block: bool) -> np.ndarray:
    """Cosines as the table writes them (float64, at most 1.0), 1.0 for the same known sha256, -2 for no pair."""
    similarity = np.minimum((unit_rows(row.features) @ unit_rows(row.o_features).T).astype(np.float64), 1.0)
    columns = {}
    for j, digest in enumerate(row.o_sha256):
        if digest:
            columns.setdefault(digest, []).append(j)
    for i, digest in enumerate(row.sha256):
        if digest in columns:
            similarity[i, columns[digest]] = 1.0
    if same_block:
        np.fill_diagonal(similarity, _NOT_A_PAIR)
    return similarity


def pairs_of_one(row, threshold: float, most: int, emitted_elsewhere: Optional[np.ndarray] = None) -> pd.DataFrame:
    """The pairs of one pair of blocks (``row``: one block's columns, the other's as ``o_*``); pairs marked in
    ``emitted_elsewhere`` (the LSH's earlier tables) are ranked for the cap but neither kept nor counted here."""
    same_block = row.o_side == "this" and row.block == row.o_block
    similarity = _similarities(row, same_block)
    above = similarity >= threshold - 1e-6
    if emitted_elsewhere is not None:
        above &= ~emitted_elsewhere
    if same_block:  # the matrix is symmetric: each pair once (upper triangle); an image's column is its row
        above = np.triu(above, k=1)
        crowded = (above.sum(axis=0) + above.sum(axis=1)).max(initial=0) > most
        kept = above & (top_of_rows(similarity, most) | top_of_rows(similarity, most).T) if crowded else above
    else:
        crowded = max(above.sum(axis=0).max(initial=0), above.sum(axis=1).max(initial=0)) > most
        kept = above & (top_of_rows(similarity, most) | top_of_rows(similarity.T, most).T) if crowded else above
    i, j = np.nonzero(kept)
    if not len(i):
        return no_candidates()
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
    found = np.zeros(len(i), dtype=np.int64)
    found[0] = int(above.sum())
    return pd.DataFrame(
        {
            "path": a_path,
            "label": a_label,
            "other_path": b_path,
            "other_label": b_label,
            # within this output: null, so that the output can move (a copy names no other output)
            "other_output": np.full(len(i), None, dtype=object) if row.o_side == "this" else o_outputs[j],
            "similarity": similarity[i, j],
            "exact": (hashes[i] == o_hashes[j]) & (hashes[i] != ""),
            "conflict": a_label != b_label,
            "leak": leak,
            FOUND: found,
        }
    )


def chunks(frame: pd.DataFrame, block_rows: int) -> List[pd.DataFrame]:
    return [frame.iloc[start : start + block_rows] for start in range(0, len(frame), block_rows)]


def block_pair(one: pd.DataFrame, one_index: int, other: pd.DataFrame, other_index: int, other_side: str):
    """The columns :func:`pairs_of_one` reads, for two blocks of a bucket."""
    fields = {c: list(one[c]) for c in ("path", "label", "run_id", "sha256", "features")}
    fields.update({"o_" + c: list(other[c]) for c in ("path", "label", "run_id", "sha256", "features", "output")})
    return SimpleNamespace(block=one_index, o_block=other_index, o_side=other_side, **fields)


def no_candidates() -> pd.DataFrame:
    """An empty frame of CANDIDATE_SCHEMA's columns."""
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in CANDIDATE_SCHEMA.names})


def exact_candidate_pairs(
    items: DataFrame, rows: int, threshold: float, block_rows: int = BLOCK_ROWS, most: int = MAX_PAIRS_PER_IMAGE
) -> DataFrame:
    """CANDIDATE_SCHEMA rows of ``items`` (ITEM_COLUMNS; ``rows`` of them in all) with cosine >= ``threshold``, each
    among the ``most`` most similar of one of its images in its pair of blocks: every pair compared."""
    blocks = _blocks(items.select(*ITEM_COLUMNS), block_count(rows, block_rows))
    mine = blocks.where(F.col("side") == "this")
    others = blocks.select(*[F.col(c).alias("o_" + c) for c in blocks.columns])
    joined = mine.crossJoin(others).where((F.col("o_side") == "earlier") | (F.col("block") <= F.col("o_block")))
    return joined.mapInPandas(_pairs_of_blocks(threshold, most), CANDIDATE_SCHEMA)


__all__ = [
    "BLOCK_ROWS",
    "CANDIDATE_SCHEMA",
    "FOUND",
    "ITEM_COLUMNS",
    "ITEM_SCHEMA",
    "PAIR_COLUMNS",
    "PAIR_SCHEMA",
    "block_count",
    "block_pair",
    "chunks",
    "exact_candidate_pairs",
    "no_candidates",
    "pairs_of_one",
    "top_of_rows",
    "unit_rows",
]
