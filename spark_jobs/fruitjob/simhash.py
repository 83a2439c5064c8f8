"""The LSH search for similar pairs, from ``EXACT_BELOW_ROWS`` rows (fruitjob/similarity.py): random hyperplanes
(SimHash) over the centred unit features, each bucket searched by fruitjob/block_search.py's exact products.

- **Signatures.** Each row gets, in each table, the signs of its unit features minus ``centre`` (the mean unit
  feature) against seeded Gaussian hyperplanes: the same in every worker and every run, so a rerun finds the same
  pairs. Features of one model are concentrated (nonnegative, one dominant direction); hyperplanes through the origin
  cut them unevenly, hyperplanes through their mean about evenly (docs/performance.md measures both).
- **Buckets of about a block.** ``bits`` = log2(rows / block) base bits make a bucket of about one block. A bucket
  that is still crowded (counted by one Spark job over every table's base buckets) is cut by up to
  ``MAX_EXTRA_BITS`` further hyperplanes of its table, as many as bring it to about a block: a row's *leaf* in a
  table is its base bucket and that bucket's extra bits. Every row of a bucket gets the same number of extra bits, so
  a leaf is a function of the row and the counts, and two rows meet in a table exactly when their leaves are equal.
- **Tables.** One bit separates a pair at angle theta with probability theta / pi; ``tables`` is the fewest for which a
  pair at the threshold shares a leaf in some table with probability >= ``LSH_RECALL``, counted over the base bits
  plus the most extra bits any of those tables gives a bucket. (Centring changes a pair's angle: pairs near the mean
  separate more easily, pairs far from it less; bench/health_scale.py measures the recall at the threshold.)
- **Search.** Rows are grouped by (table, leaf) and each leaf is searched in blocks (a leaf over a block is cut into
  blocks and every pair of them multiplied). A pair is emitted only in the first table where the two rows share a
  leaf, so once; a last table puts the rows of one ``sha256`` in one bucket (of about a block), where only rows of the
  same hash are paired, so that byte copies are pairs whatever their features.
"""

from __future__ import annotations

import math
from typing import Iterator, List, Optional

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DoubleType, LongType, StructField, StructType

from fruitjob.block_search import (
    BLOCK_ROWS,
    CANDIDATE_SCHEMA,
    ITEM_COLUMNS,
    ITEM_SCHEMA,
    block_count,
    block_pair,
    chunks,
    no_candidates,
    pairs_of_one,
)
from fruitjob.gram_pca import rows_of
from fruitjob.rules import MAX_PAIRS_PER_IMAGE

LSH_RECALL = 0.99  # the least probability that a pair at the threshold shares a leaf in some table
LSH_SEED = 22
MAX_EXTRA_BITS = 4  # the most further hyperplanes that cut a crowded bucket (16 leaves)
_DEPTH_BITS = 3  # a leaf's key holds its number of extra bits in its low bits (up to 7)


SIGNED_SCHEMA = StructType(ITEM_SCHEMA.fields + [StructField("keys", ArrayType(LongType()), False)])  # + each leaf
_SUM_SCHEMA = StructType([StructField("n", LongType(), False), StructField("total", ArrayType(DoubleType()), False)])
_FEATURES = pa.list_(pa.float32())  # SIGNED_SCHEMA's: items made in Python may hold doubles
_COUNT_SCHEMA = StructType([StructField(c, LongType(), False) for c in ("table", "bucket", "rows")])


def base_bits(rows: int, block_rows: int = BLOCK_ROWS) -> int:
    """The base bits of a table: about one block of rows to a bucket."""
    return max(1, int(math.ceil(math.log2(max(2.0, rows / float(block_rows))))))


def tables_for(bits: int, threshold: float, recall: float = LSH_RECALL) -> int:
    """The fewest tables of ``bits`` bits in which a pair at ``threshold`` meets in some table with probability >=
    ``recall``."""
    angle = math.acos(max(-1.0, min(1.0, threshold)))
    together = (1.0 - angle / math.pi) ** bits  # the pair's probability of sharing a bucket in one table
    if together >= 1.0:
        return 1
    if together <= 0.0:
        raise ValueError("no LSH reaches a threshold of %s" % threshold)
    return max(1, int(math.ceil(math.log(1.0 - recall) / math.log(1.0 - together))))


def hyperplanes(dimension: int, bits: int, table: int, seed: int = LSH_SEED) -> np.ndarray:
    """The seeded Gaussian hyperplanes of one table, one column per bit (its base bits, then the extra ones)."""
    return np.random.default_rng([seed, table]).standard_normal((dimension, bits)).astype(np.float32)


def codes(unit: np.ndarray, centre: np.ndarray, bits: int, tables: int, seed: int = LSH_SEED) -> np.ndarray:
    """rows x tables int64: bit k of a row's code in a table is its sign against the table's k-th hyperplane, the
    ``bits`` base bits first, then MAX_EXTRA_BITS more."""
    width = bits + MAX_EXTRA_BITS
    if not len(unit):
        return np.zeros((0, tables), dtype=np.int64)
    centred = unit - np.asarray(centre, dtype=np.float32)[None, :]
    weights = np.left_shift(np.int64(1), np.arange(width, dtype=np.int64))
    signs = [(centred @ hyperplanes(unit.shape[1], width, t, seed)) >= 0 for t in range(tables)]
    return np.stack([(s.astype(np.int64) * weights).sum(axis=1) for s in signs], axis=1)


def buckets(row_codes: np.ndarray, bits: int) -> np.ndarray:
    """The base buckets of ``codes``."""
    return row_codes & ((1 << bits) - 1)


def extra_bits(counts: np.ndarray, block_rows: int = BLOCK_ROWS) -> np.ndarray:
    """For each table's base buckets (``counts``: tables x 2**bits rows), the extra bits that bring it to about a
    block: none for a bucket of a block or less."""
    needed = np.ceil(np.log2(np.maximum(counts, 1) / float(block_rows)))
    return np.clip(needed, 0, MAX_EXTRA_BITS).astype(np.int64)


def tables_needed(extra: np.ndarray, bits: int, threshold: float, recall: float = LSH_RECALL) -> int:
    """The fewest tables t for which t tables reach ``recall`` with their paths (``bits`` + the most extra bits in
    the first t rows of ``extra``); ``extra`` has rows enough for bits + MAX_EXTRA_BITS."""
    for tables in range(1, len(extra) + 1):
        if tables >= tables_for(bits + int(extra[:tables].max()), threshold, recall):
            return tables
    return len(extra)


def leaves(row_codes: np.ndarray, bits: int, extra: np.ndarray) -> np.ndarray:
    """rows x tables: each row's leaf key in each table (its base bucket, then as many extra bits as ``extra``,
    tables x 2**bits, gives that bucket; the count of extra bits in the low bits keeps the keys apart)."""
    base = buckets(row_codes, bits)
    depth = np.take_along_axis(extra.T, base, axis=0) if len(row_codes) else np.zeros_like(base)
    further = (row_codes >> bits) & ((np.int64(1) << depth) - 1)
    return (((further << bits) | base) << _DEPTH_BITS) | depth


def unit_matrix(column: pa.Array) -> np.ndarray:
    """An Arrow list<float> column of features as a (rows, dim) float32 matrix of unit rows (zero rows stay 0)."""
    if not len(column):
        return np.zeros((0, 0), dtype=np.float32)
    matrix = rows_of(column, len(column.flatten()) // len(column)).astype(np.float32)
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


def _bucket_counts(centre: np.ndarray, bits: int, tables: int):
    def count(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            base = buckets(codes(unit_matrix(batch.column("features")), centre, bits, tables), bits)
            counts = np.stack([np.bincount(base[:, t], minlength=1 << bits) for t in range(tables)])
            table, bucket = np.nonzero(counts)
            sizes = counts[table, bucket]
            yield pa.RecordBatch.from_arrays(
                [pa.array(table, pa.int64()), pa.array(bucket, pa.int64()), pa.array(sizes, pa.int64())],
                names=_COUNT_SCHEMA.names,
            )

    return count


def _keyed(centre: np.ndarray, bits: int, extra: np.ndarray):
    def key(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            unit = unit_matrix(batch.column("features"))
            keys = leaves(codes(unit, centre, bits, len(extra)), bits, extra)
            offsets = np.arange(0, (batch.num_rows + 1) * len(extra), len(extra), dtype=np.int32)
            column = pa.ListArray.from_arrays(pa.array(offsets), pa.array(keys.ravel(), pa.int64()))
            columns = [
                c.cast(_FEATURES) if name == "features" else c for name, c in zip(batch.schema.names, batch.columns)
            ]
            yield pa.RecordBatch.from_arrays(columns + [column], names=batch.schema.names + ["keys"])

    return key


def _sums(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    total, n = None, 0
    for batch in batches:
        units = unit_matrix(batch.column("features")).astype(np.float64)
        if len(units):
            total = units.sum(axis=0) + (0.0 if total is None else total)
            n += len(units)
    if n:
        yield pa.RecordBatch.from_arrays([pa.array([n]), pa.array([total.tolist()])], names=["n", "total"])


def mean_unit(items: DataFrame) -> Optional[np.ndarray]:
    """The mean of the rows' unit features (one Spark job; partial sums per partition), None without rows."""
    parts = items.select("features").mapInArrow(_sums, _SUM_SCHEMA).collect()
    n = sum(row["n"] for row in parts)
    return sum(np.asarray(row["total"]) for row in parts) / n if n else None


def plan(items: DataFrame, centre: np.ndarray, bits: int, threshold: float, block_rows: int) -> np.ndarray:
    """The extra bits of each bucket of each table the search uses (tables x 2**bits): the base buckets of every
    table that could be needed counted in one Spark job, then :func:`extra_bits` and :func:`tables_needed`."""
    most_tables = tables_for(bits + MAX_EXTRA_BITS, threshold)
    partial = items.select("features").mapInArrow(_bucket_counts(centre, bits, most_tables), _COUNT_SCHEMA)
    counts = np.zeros((most_tables, 1 << bits), dtype=np.int64)
    for row in partial.groupBy("table", "bucket").agg(F.sum("rows").alias("rows")).collect():
        counts[row["table"], row["bucket"]] = row["rows"]
    extra = extra_bits(counts, block_rows)
    return extra[: tables_needed(extra, bits, threshold)]


def _not_searched_here(one: pd.DataFrame, other: pd.DataFrame, table: int, tables: int) -> np.ndarray:
    """Pairs this table does not emit: those whose leaves are the same in a table before ``table`` (of the ``tables``
    SimHash tables), and in the byte-copy table (``table`` == ``tables``) those of different ``sha256``."""
    earlier = min(table, tables)
    skipped = np.zeros((len(one), len(other)), dtype=bool)
    if earlier:
        mine, theirs = np.stack(list(one["keys"])), np.stack(list(other["keys"]))
        for t in range(earlier):
            skipped |= mine[:, t][:, None] == theirs[:, t][None, :]
    if table == tables:
        skipped |= one["sha256"].to_numpy()[:, None] != other["sha256"].to_numpy()[None, :]
    return skipped


def _pairs_of_leaves(threshold: float, most: int, block_rows: int, tables: int):
    def find(frame: pd.DataFrame) -> pd.DataFrame:
        table = int(frame["table"].iloc[0])
        frame = frame.sort_values(["output", "path"], kind="mergesort")  # ties: the same order as the window's
        mine = chunks(frame[frame["side"] == "this"], block_rows)
        earlier = chunks(frame[frame["side"] == "earlier"], block_rows)
        out: List[pd.DataFrame] = []
        for a, block in enumerate(mine):
            others = [(b, mine[b], "this") for b in range(a, len(mine))]
            others += [(b, other, "earlier") for b, other in enumerate(earlier)]
            for b, other, side in others:
                row = block_pair(block, a, other, b, side)
                pairs = pairs_of_one(row, threshold, most, _not_searched_here(block, other, table, tables))
                if len(pairs):
                    out.append(pairs)
        return pd.concat(out, ignore_index=True) if out else no_candidates()

    return find


def with_repeated_hash(items: DataFrame) -> DataFrame:
    """The rows of ``items`` whose ``sha256`` another row has too: the only ones a byte copy can pair. Counting the
    hashes reads that one column; keying and shuffling every row's features for the byte-copy table cost a second pass
    over all of them (0.6-1 s of the stage's CPU at 4,230 rows), for the few that have a copy."""
    hashed = items.where(F.coalesce(F.col("sha256"), F.lit("")) != "")
    repeated = hashed.groupBy("sha256").count().where(F.col("count") > 1).select("sha256")
    return hashed.join(repeated, on="sha256", how="left_semi")


def byte_copy_rows(signed: DataFrame, table: int, buckets: int) -> DataFrame:
    """The rows of the byte-copy table (``table``, after the SimHash ones): every row with a ``sha256``, in one of
    ``buckets`` buckets by its hash, so that rows of one hash meet. About a block a bucket: a group per hash would cost
    Spark's per-group overhead (~2 ms) for every image."""
    bucket = F.pmod(F.xxhash64("sha256"), F.lit(buckets))
    with_hash = signed.where(F.coalesce(F.col("sha256"), F.lit("")) != "")
    return with_hash.select("*", F.lit(table).alias("table"), bucket.alias("bucket"))


def lsh_candidate_pairs(
    items: DataFrame,
    rows: int,
    threshold: float,
    block_rows: int = BLOCK_ROWS,
    most: int = MAX_PAIRS_PER_IMAGE,
    centre: Optional[np.ndarray] = None,
) -> DataFrame:
    """fruitjob/block_search.py's CANDIDATE_SCHEMA rows for the pairs that share a leaf in some table; ``centre``:
    the mean unit feature of ``items`` where the caller has it (else one Spark job computes it)."""
    if centre is None:
        centre = mean_unit(items)
    if centre is None:
        return items.sparkSession.createDataFrame([], CANDIDATE_SCHEMA)
    bits = base_bits(rows, block_rows)
    extra = plan(items, centre, bits, threshold, block_rows)
    tables = len(extra)
    keyed = _keyed(centre, bits, extra)
    signed = items.select(*ITEM_COLUMNS).mapInArrow(keyed, SIGNED_SCHEMA)
    hashed = signed.select("*", F.posexplode("keys").alias("table", "bucket"))
    may_copy = with_repeated_hash(items).select(*ITEM_COLUMNS).mapInArrow(keyed, SIGNED_SCHEMA)
    copies = byte_copy_rows(may_copy, tables, block_count(rows, block_rows))
    grouped = hashed.unionByName(copies).groupBy("table", "bucket")
    return grouped.applyInPandas(_pairs_of_leaves(threshold, most, block_rows, tables), CANDIDATE_SCHEMA)


__all__ = [
    "LSH_RECALL",
    "MAX_EXTRA_BITS",
    "base_bits",
    "buckets",
    "byte_copy_rows",
    "codes",
    "extra_bits",
    "hyperplanes",
    "leaves",
    "lsh_candidate_pairs",
    "mean_unit",
    "plan",
    "tables_for",
    "tables_needed",
    "unit_matrix",
    "with_repeated_hash",
]
