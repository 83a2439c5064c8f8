"""The health stage's LSH search (issue 22): the same pairs as the exact search where the pairs are well above the
threshold, each pair once, and the job's choice of search by the number of rows. Its recall at the threshold is
measured in bench/health_scale.py, not here."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from tests.helpers import metrics, read_parquet


def _planted_items(spark):
    """300 rows of 64-d vectors: 30 near copies (cosine ~0.9995) within this output, 10 of them also in an earlier
    output, and one byte copy (the same sha256) whose features differ."""
    from fruitjob.similarity import ITEM_COLUMNS

    rng = np.random.default_rng(7)
    base = rng.normal(size=(260, 64)) + 0.5  # a shared direction, as real features have
    copies = base[:30] + rng.normal(0, 0.01, (30, 64))
    earlier = base[30:40] + rng.normal(0, 0.01, (10, 64))
    rows = []
    for k, vector in enumerate(np.concatenate([base, copies])):
        sha = "same" if k in (100, 200) else ""
        rows.append(("p%03d" % k, "L%d" % (k % 4), "new", "r", sha, "this", [float(v) for v in vector]))
    for k, vector in enumerate(earlier):
        rows.append(("q%03d" % k, "L0", "old", "r0", "", "earlier", [float(v) for v in vector]))
    return spark.createDataFrame(rows, ITEM_COLUMNS), len(rows)


@pytest.mark.slow
def test_the_lsh_finds_the_planted_pairs_the_exact_search_finds_each_once(spark):
    from fruitjob.similarity import METHOD, METHOD_LSH, candidate_pairs, lsh_shape, similar_pairs

    items, rows = _planted_items(spark)
    bits, tables = lsh_shape(rows, 0.95, block_rows=32)
    assert bits == 4 and tables > 1  # 16 buckets a table, a few tables: the LSH, not one bucket
    exact = similar_pairs(items, rows, 0.95, block_rows=32, method=METHOD).toPandas()
    lsh = similar_pairs(items, rows, 0.95, block_rows=32, method=METHOD_LSH).toPandas()
    key = ["path", "other_path", "other_output"]
    assert len(exact) == 30 + 10 + 1
    pd.testing.assert_frame_equal(
        lsh.sort_values(key).reset_index(drop=True), exact.sort_values(key).reset_index(drop=True), check_dtype=False
    )
    byte_copy = lsh[lsh.path == "p100"].iloc[0]
    assert byte_copy.other_path == "p200" and byte_copy.exact and byte_copy.similarity == 1.0
    found = candidate_pairs(items, rows, 0.95, block_rows=32, method=METHOD_LSH).agg({"found": "sum"}).first()[0]
    assert found == len(exact)  # a pair that collides in several tables is found once


def test_the_lsh_is_deterministic():
    from fruitjob.similarity import signatures, unit_rows

    unit = unit_rows(list(np.random.default_rng(3).normal(size=(50, 16))))
    first, again = signatures(unit, 5, 3), signatures(unit, 5, 3)
    assert first.shape == (50, 3) and (first == again).all() and first.max() < 32 and len(np.unique(first)) > 10


def test_the_stage_uses_the_lsh_above_the_crossover(spark, job_output, tmp_path, monkeypatch):
    """With the crossover set below the output's 24 rows the stage runs the LSH and says so in its counts; its pairs
    are among the exact search's (the job's own run, below the crossover)."""
    import fruitjob.similarity
    from fruitjob.health import write_health

    output = tmp_path / "copy"
    shutil.copytree(job_output, output)
    monkeypatch.setattr(fruitjob.similarity, "EXACT_BELOW_ROWS", 10)
    threshold = metrics(job_output)["health"]["near_duplicate_threshold"]
    counts = write_health(spark, str(output), [], threshold, {})
    assert metrics(job_output)["health"]["method"] == "exact-blocked" and counts.method == "simhash-lsh"
    exact, lsh = read_parquet(job_output, "health/pairs"), read_parquet(output, "health/pairs")
    pairs = set(zip(lsh.path, lsh.other_path, strict=True))
    assert pairs <= set(zip(exact.path, exact.other_path, strict=True)) and len(pairs) == len(lsh) > 0


def test_the_tables_are_the_fewest_for_the_recall_and_the_buckets_about_a_block():
    import math

    from fruitjob.similarity import LSH_RECALL, lsh_shape

    for rows, threshold in ((24000, 0.98), (100000, 0.98), (100000, 0.9), (5000, 0.95)):
        bits, tables = lsh_shape(rows, threshold)
        assert 2 ** (bits - 1) < rows / 1024 <= 2**bits
        together = (1 - math.acos(threshold) / math.pi) ** bits
        assert 1 - (1 - together) ** tables >= LSH_RECALL > 1 - (1 - together) ** (tables - 1)
    assert lsh_shape(24000, 0.98) == (5, 4) and lsh_shape(100000, 0.98) == (7, 5)
