"""The health stage's LSH search (issue 22): the same pairs as the exact search where the pairs are well above the
threshold, each pair once, and the job's choice of search by the number of rows. Its recall at the threshold is
measured in bench/health_scale.py, not here."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from tests.helpers import metrics, read_parquet
from tests.lsh_cases import BLOCK_ROWS, THRESHOLD, both_searches
from tests.parity_env import REPO


@pytest.mark.slow
def test_the_lsh_finds_the_planted_pairs_the_exact_search_finds_each_once(spark):
    from fruitjob.similarity import lsh_shape

    bits, tables = lsh_shape(300, THRESHOLD, block_rows=BLOCK_ROWS)
    assert bits == 4 and tables > 1  # 16 buckets a table, a few tables: the LSH, not one bucket
    exact, lsh, found = both_searches(spark)
    assert len(exact) == 30 + 10 + 1
    pd.testing.assert_frame_equal(lsh, exact, check_dtype=False)
    byte_copy = lsh[lsh.path == "p100"].iloc[0]
    assert byte_copy.other_path == "p200" and byte_copy.exact and byte_copy.similarity == 1.0
    assert found == len(exact)  # a pair that collides in several tables is found once


@pytest.mark.slow
def test_the_lsh_finds_the_same_pairs_on_the_cluster_spark(parity):
    """The LSH under Python 3.9 and Spark 3.5 (tests/parity_env.py), as EMR runs it: the exact search's pairs."""
    result = parity.run_script(REPO / "tests" / "lsh_cases.py")
    assert result["spark"].startswith("3.5.") and len(result["exact"]) == 41
    assert result["lsh"] == result["exact"] and result["found"] == 41


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
