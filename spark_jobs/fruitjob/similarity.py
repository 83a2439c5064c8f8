"""Similar pairs of images: cosine of the L2-normalised features >= a threshold, at most ``most`` pairs per image.

Two searches find them: below ``EXACT_BELOW_ROWS`` rows the blocked exact search (fruitjob/block_search.py: every
pair compared, recall 1), from there a SimHash LSH whose buckets are searched the same way (fruitjob/simhash.py: each
pair at the threshold found with probability about ``LSH_RECALL``, as bench/health_scale.py measures).
docs/performance.md (Dataset health) measures both and the crossover.

The pair cap: an image keeps its ``most`` most similar pairs (similarity, then the other image's output and path), and
a pair stays when it is among the kept ones of either of its two images, so that features that are all alike (random
weights) make rows linear in the images, not n^2. The searches already drop, in each pair of blocks, the pairs that
are in neither image's top ``most`` there; a window over the rest applies the cap over all the blocks, unless there
was only one pair of blocks (then it is done).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from fruitjob.block_search import BLOCK_ROWS, PAIR_COLUMNS, block_count, exact_candidate_pairs
from fruitjob.rules import MAX_PAIRS_PER_IMAGE
from fruitjob.simhash import lsh_candidate_pairs

METHOD = "exact-blocked"
METHOD_LSH = "simhash-lsh"
# Below this many rows (this output's and the earlier ones') the exact search (recall 1) runs: while all the rows are
# one block it is one product and no window, and cheaper (0.8-1.0 s against the LSH's 1.1-1.3 s at 1,000 rows); from
# two blocks on the LSH is (1.0 s against 2.9-3.6 s at 2,000 rows, 1.3 s against 3.0-3.4 s at 4,000:
# docs/performance.md, "The similarity search at scale"). Tests set it lower to run the LSH on a few rows.
EXACT_BELOW_ROWS = BLOCK_ROWS + 1


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


def candidate_pairs(
    items: DataFrame,
    rows: int,
    threshold: float,
    block_rows: int = BLOCK_ROWS,
    most: int = MAX_PAIRS_PER_IMAGE,
    method: str = METHOD,
    centre: Optional[np.ndarray] = None,
) -> DataFrame:
    """CANDIDATE_SCHEMA rows of ``items`` (ITEM_COLUMNS; ``rows`` of them in all) with cosine >= ``threshold``, each
    among the ``most`` most similar of one of its images in its pair of blocks: pairs within this output once, and this
    output against the earlier ones. ``found``, summed: the pairs above the threshold before any cap. ``method``:
    METHOD (exact) or METHOD_LSH (``centre``: the mean unit feature, where the caller has it)."""
    if method == METHOD_LSH:
        return lsh_candidate_pairs(items, rows, threshold, block_rows, most, centre)
    return exact_candidate_pairs(items, rows, threshold, block_rows, most)


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
    centre: Optional[np.ndarray] = None,
) -> DataFrame:
    """The pairs of ``items`` at or above ``threshold``, at most ``most`` per image (:func:`candidate_pairs`, then
    :func:`capped`)."""
    candidates = candidate_pairs(items, rows, threshold, block_rows, most, method, centre)
    return capped(candidates, rows, with_earlier, block_rows, most, method)


__all__ = [
    "EXACT_BELOW_ROWS",
    "METHOD",
    "METHOD_LSH",
    "candidate_pairs",
    "capped",
    "keep_top_pairs",
    "search_method",
    "similar_pairs",
]
