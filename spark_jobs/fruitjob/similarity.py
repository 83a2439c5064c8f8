"""Similar pairs of images: cosine of the L2-normalised features >= a threshold, found by a blocked exact search, or
above ``EXACT_BELOW_ROWS`` rows by a random-hyperplane (SimHash) LSH whose buckets are searched the same blocked way.

The rows are cut into blocks of about ``BLOCK_ROWS`` (by a hash of the path); each block becomes one Spark row of
arrays, sorted by (output, path). Blocks of this output are cross-joined with the blocks that come after them (this
output) and with every block of the earlier outputs, and each pair of blocks is one numpy matrix product in a worker
(``mapInPandas``): exact (recall 1), no feature ever on the driver, and the product of two 1024-row blocks of 1280-d
vectors takes a few milliseconds of BLAS. Two images with the same ``sha256`` are a pair of similarity 1.0 (exact)
whatever their features, so byte copies need no join of their own.

The pair cap: an image keeps its ``most`` most similar pairs (similarity, then the other image's output and path), and
a pair stays when it is among the kept ones of either of its two images, so that features that are all alike (random
weights) make rows linear in the images, not n^2. Each pair of blocks already drops the pairs that are not in the top
``most`` of either image within that pair of blocks (they cannot be in the top ``most`` overall); a window over the
rest then applies the cap over all the blocks, unless there was only one pair of blocks (then it is done). Each pair of
blocks also says how many pairs were above the threshold (``found``, on its first row), so that the pairs the cap cut
off can be counted. The exact search's cost is quadratic in the rows, but with BLAS constants.

The LSH (``METHOD_LSH``): each row gets ``tables`` signatures of ``bits`` bits, the signs of its features against
seeded Gaussian hyperplanes (the same in every worker and every run: the same pairs on a rerun). ``bits`` grows with
the rows so that a bucket holds about one block (log2(rows / block)); ``tables`` is the fewest that give a pair at the
threshold a collision in some table with probability >= ``LSH_RECALL`` (one bit collides with probability
1 - angle / pi). Rows are grouped by (table, bucket) and each bucket is searched as above, in blocks (a bucket larger
than a block is cut into blocks and every pair of them multiplied). A pair is emitted only in the first table where
its two signatures collide (computed from the two signatures), so once; a last table buckets the ``sha256``, so that
byte copies are pairs whatever their features. The pair cap is then the same window. docs/performance.md (Dataset
health) measures both and the crossover (``bench/health_scale.py``).
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Iterator, List, Optional, Tuple

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window
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
METHOD = "exact-blocked"
METHOD_LSH = "simhash-lsh"
# Below this many rows (this output's and the earlier ones') the exact search (recall 1) runs: the two cost about the
# same at 4,000 rows, the LSH 1.3x less at 8,000 (docs/performance.md, "The similarity search at scale"); tests set it
# lower to run the LSH on a few rows.
EXACT_BELOW_ROWS = 4096
LSH_RECALL = 0.99  # the least probability that a pair at the threshold collides in some table
LSH_SEED = 22
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
# what the search returns: the pairs, and on the first row of each pair of blocks the pairs it found above the cut
FOUND = "found"
CANDIDATE_SCHEMA = StructType(PAIR_SCHEMA.fields + [StructField(FOUND, LongType(), False)])
# the LSH's rows: ITEM_COLUMNS, each row's signature in every table (``keys``), then one row per (table, bucket)
SIGNED_SCHEMA = StructType(
    [
        StructField("path", StringType(), False),
        StructField("label", StringType(), False),
        StructField("output", StringType(), True),
        StructField("run_id", StringType(), True),
        StructField("sha256", StringType(), True),
        StructField("side", StringType(), False),
        StructField("features", ArrayType(FloatType()), True),
        StructField("keys", ArrayType(LongType()), False),
    ]
)
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
            out = [_pairs_of_one(row, threshold, most) for row in frame.itertuples(index=False)]
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


def _pairs_of_one(row, threshold: float, most: int, emitted_elsewhere: Optional[np.ndarray] = None) -> pd.DataFrame:
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
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in CANDIDATE_SCHEMA.names})
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


def keep_top_pairs(candidates: DataFrame, most: int) -> DataFrame:
    """The candidates among the ``most`` most similar pairs of either of their images (over all the blocks), as
    PAIR_COLUMNS."""
    this = F.lit("")  # this output's images: other_output is null for them
    key = ["path", "other_path", "other_output"]
    ends = candidates.select(
        "*",
        this.alias("end_output"),
        F.col("path").alias("end_path"),
        F.coalesce("other_output", this).alias("far_output"),
        F.col("other_path").alias("far_path"),
    ).unionByName(
        candidates.select(
            "*",
            F.coalesce("other_output", this).alias("end_output"),
            F.col("other_path").alias("end_path"),
            this.alias("far_output"),
            F.col("path").alias("far_path"),
        )
    )
    order = Window.partitionBy("end_output", "end_path").orderBy(
        F.col("similarity").desc(), F.col("far_output"), F.col("far_path")
    )
    ranked = ends.withColumn("rank", F.row_number().over(order)).where(F.col("rank") <= most)
    return ranked.dropDuplicates(key).select(*PAIR_COLUMNS)


def search_method(rows: int) -> str:
    """The search for ``rows`` rows: exact below ``EXACT_BELOW_ROWS``, the LSH from there."""
    return METHOD if rows < EXACT_BELOW_ROWS else METHOD_LSH


def lsh_shape(rows: int, threshold: float, block_rows: int = BLOCK_ROWS, recall: float = LSH_RECALL) -> Tuple[int, int]:
    """(bits, tables): buckets of about one block, and a pair at ``threshold`` colliding in some table with
    probability >= ``recall``."""
    bits = max(1, int(math.ceil(math.log2(max(2.0, rows / float(block_rows))))))
    angle = math.acos(max(-1.0, min(1.0, threshold)))
    together = (1.0 - angle / math.pi) ** bits  # the pair's collision probability in one table
    if together >= 1.0:
        return bits, 1
    if together <= 0.0:
        raise ValueError("no LSH reaches a threshold of %s" % threshold)
    return bits, max(1, int(math.ceil(math.log(1.0 - recall) / math.log(1.0 - together))))


def hyperplanes(dimension: int, bits: int, tables: int, seed: int = LSH_SEED) -> np.ndarray:
    """The seeded Gaussian hyperplanes, one column per bit of every table (table-major)."""
    return np.random.default_rng(seed).standard_normal((dimension, tables * bits)).astype(np.float32)


def signatures(unit: np.ndarray, bits: int, tables: int, seed: int = LSH_SEED) -> np.ndarray:
    """Each row's bucket in every table (rows x tables int64): the bits are the signs against the hyperplanes."""
    if not len(unit):
        return np.zeros((0, tables), dtype=np.int64)
    signs = (unit @ hyperplanes(unit.shape[1], bits, tables, seed)) >= 0
    weights = np.left_shift(np.int64(1), np.arange(bits, dtype=np.int64))
    return (signs.reshape(len(unit), tables, bits).astype(np.int64) * weights).sum(axis=2)


def _signed(bits: int, tables: int):
    def sign(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in frames:
            keys = signatures(unit_rows(list(frame["features"])), bits, tables)
            yield frame.assign(keys=list(keys))

    return sign


def _chunks(frame: pd.DataFrame, block_rows: int) -> List[pd.DataFrame]:
    return [frame.iloc[start : start + block_rows] for start in range(0, len(frame), block_rows)]


def _block_pair(one: pd.DataFrame, one_index: int, other: pd.DataFrame, other_index: int, other_side: str):
    """The columns :func:`_pairs_of_one` reads, for two blocks of a bucket."""
    fields = {c: list(one[c]) for c in ("path", "label", "run_id", "sha256", "features")}
    fields.update({"o_" + c: list(other[c]) for c in ("path", "label", "run_id", "sha256", "features", "output")})
    return SimpleNamespace(block=one_index, o_block=other_index, o_side=other_side, **fields)


def _collided_before(one: pd.DataFrame, other: pd.DataFrame, table: int, tables: int) -> np.ndarray:
    """Pairs whose signatures collide in a table before ``table`` (of the ``tables`` SimHash tables)."""
    earlier = min(table, tables)
    before = np.zeros((len(one), len(other)), dtype=bool)
    if earlier:
        mine, theirs = np.stack(list(one["keys"])), np.stack(list(other["keys"]))
        for t in range(earlier):
            before |= mine[:, t][:, None] == theirs[:, t][None, :]
    return before


def _pairs_of_buckets(threshold: float, most: int, block_rows: int, tables: int):
    def find(frame: pd.DataFrame) -> pd.DataFrame:
        table = int(frame["table"].iloc[0])
        frame = frame.sort_values(["output", "path"], kind="mergesort")  # ties: the same order as the window's
        mine = _chunks(frame[frame["side"] == "this"], block_rows)
        earlier = _chunks(frame[frame["side"] == "earlier"], block_rows)
        out = []
        for a, block in enumerate(mine):
            others = [(b, mine[b], "this") for b in range(a, len(mine))]
            others += [(b, other, "earlier") for b, other in enumerate(earlier)]
            for b, other, side in others:
                row = _block_pair(block, a, other, b, side)
                pairs = _pairs_of_one(row, threshold, most, _collided_before(block, other, table, tables))
                if len(pairs):
                    out.append(pairs)
        if not out:
            return pd.DataFrame({c: pd.Series([], dtype=object) for c in CANDIDATE_SCHEMA.names})
        return pd.concat(out, ignore_index=True)

    return find


def lsh_candidate_pairs(
    items: DataFrame, rows: int, threshold: float, block_rows: int = BLOCK_ROWS, most: int = MAX_PAIRS_PER_IMAGE
) -> DataFrame:
    """:func:`candidate_pairs` by the LSH: the same CANDIDATE_SCHEMA rows, for the pairs that collide in a table."""
    bits, tables = lsh_shape(rows, threshold, block_rows)
    signed = items.select(*ITEM_COLUMNS).mapInPandas(_signed(bits, tables), SIGNED_SCHEMA)
    hashed = signed.select("*", F.posexplode("keys").alias("table", "bucket"))
    copies = signed.where(F.coalesce(F.col("sha256"), F.lit("")) != "").select(
        "*", F.lit(tables).alias("table"), F.xxhash64("sha256").alias("bucket")
    )
    buckets = hashed.unionByName(copies).groupBy("table", "bucket")
    return buckets.applyInPandas(_pairs_of_buckets(threshold, most, block_rows, tables), CANDIDATE_SCHEMA)


def candidate_pairs(
    items: DataFrame,
    rows: int,
    threshold: float,
    block_rows: int = BLOCK_ROWS,
    most: int = MAX_PAIRS_PER_IMAGE,
    method: str = METHOD,
) -> DataFrame:
    """CANDIDATE_SCHEMA rows of ``items`` (ITEM_COLUMNS; ``rows`` of them in all) with cosine >= ``threshold``, each
    among the ``most`` most similar of one of its images in its pair of blocks: pairs within this output once, and this
    output against the earlier ones. ``found``, summed: the pairs above the threshold before any cap. ``method``:
    METHOD (exact) or METHOD_LSH (:func:`lsh_candidate_pairs`)."""
    if method == METHOD_LSH:
        return lsh_candidate_pairs(items, rows, threshold, block_rows, most)
    blocks = _blocks(items.select(*ITEM_COLUMNS), block_count(rows, block_rows))
    mine = blocks.where(F.col("side") == "this")
    others = blocks.select(*[F.col(c).alias("o_" + c) for c in blocks.columns])
    joined = mine.crossJoin(others).where((F.col("o_side") == "earlier") | (F.col("block") <= F.col("o_block")))
    return joined.mapInPandas(_pairs_of_blocks(threshold, most), CANDIDATE_SCHEMA)


def capped(
    candidates: DataFrame,
    rows: int,
    with_earlier: bool,
    block_rows: int = BLOCK_ROWS,
    most: int = MAX_PAIRS_PER_IMAGE,
    method: str = METHOD,
) -> DataFrame:
    """The pair cap over all the blocks (``with_earlier``: whether the items held earlier outputs' rows), as
    PAIR_COLUMNS; with one pair of blocks of the exact search its own cap was the cap over all."""
    if method == METHOD and block_count(rows, block_rows) == 1 and not with_earlier:
        return candidates.select(*PAIR_COLUMNS)
    return keep_top_pairs(candidates, most)


def similar_pairs(
    items: DataFrame,
    rows: int,
    threshold: float,
    block_rows: int = BLOCK_ROWS,
    most: int = MAX_PAIRS_PER_IMAGE,
    with_earlier: bool = True,
    method: str = METHOD,
) -> DataFrame:
    """The pairs of ``items`` at or above ``threshold``, at most ``most`` per image (:func:`candidate_pairs`, then
    :func:`capped`)."""
    candidates = candidate_pairs(items, rows, threshold, block_rows, most, method)
    return capped(candidates, rows, with_earlier, block_rows, most, method)


__all__ = [
    "BLOCK_ROWS",
    "CANDIDATE_SCHEMA",
    "EXACT_BELOW_ROWS",
    "FOUND",
    "ITEM_COLUMNS",
    "METHOD",
    "METHOD_LSH",
    "PAIR_COLUMNS",
    "PAIR_SCHEMA",
    "block_count",
    "candidate_pairs",
    "capped",
    "hyperplanes",
    "keep_top_pairs",
    "lsh_candidate_pairs",
    "lsh_shape",
    "search_method",
    "signatures",
    "similar_pairs",
    "top_of_rows",
    "unit_rows",
]
