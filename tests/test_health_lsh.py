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
    from fruitjob.simhash import base_bits, tables_for

    assert base_bits(300, BLOCK_ROWS) == 4 and tables_for(4, THRESHOLD) > 1  # 16 buckets a table, a few tables
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
    from fruitjob.block_search import unit_rows
    from fruitjob.simhash import MAX_EXTRA_BITS, codes

    unit = unit_rows(list(np.random.default_rng(3).normal(size=(50, 16))))
    centre = unit.mean(axis=0)
    first, again = codes(unit, centre, 5, 3), codes(unit, centre, 5, 3)
    assert first.shape == (50, 3) and (first == again).all() and first.max() < 2 ** (5 + MAX_EXTRA_BITS)
    assert len(np.unique(first & 31)) > 10
    assert (codes(unit, centre, 5, 2) == first[:, :2]).all()  # a table's hyperplanes do not depend on the others


def test_concentrated_features_fill_the_buckets_evenly_once_centred():
    """Features of one model point one way (nonnegative, a dominant direction): hyperplanes through the origin put
    most rows in a few buckets, hyperplanes through the mean spread them."""
    from fruitjob.block_search import unit_rows
    from fruitjob.simhash import buckets, codes

    rng = np.random.default_rng(5)
    unit = unit_rows(list(np.abs(rng.normal(size=(4096, 64))) + 3.0))
    largest = {}
    for name, centre in (("origin", np.zeros(64)), ("mean", unit.mean(axis=0))):
        base = buckets(codes(unit, centre, 5, 1), 5)[:, 0]
        largest[name] = np.bincount(base, minlength=32).max()
    assert largest["origin"] > 4 * largest["mean"] and largest["mean"] < 4096 / 32 * 2.5


def test_a_crowded_bucket_is_cut_by_extra_bits_into_leaves_of_about_a_block():
    from fruitjob.simhash import MAX_EXTRA_BITS, extra_bits, leaves

    counts = np.array([[1024, 1025, 4096, 10**9, 0, 3, 2048, 2049]])
    assert extra_bits(counts, 1024).tolist() == [[0, 1, 2, MAX_EXTRA_BITS, 0, 0, 1, 2]]
    # rows of bucket 2 (two extra bits) meet only when their first two extra bits agree; bucket 0 takes no extra bit
    bits = 3
    rows = np.array([[2 | (0b00 << bits)], [2 | (0b01 << bits)], [2 | (0b101 << bits)], [0 | (0b11 << bits)], [0]])
    keys = leaves(rows, bits, extra_bits(counts, 1024))[:, 0]
    assert keys[0] != keys[1] and keys[1] == keys[2] and keys[3] == keys[4]
    assert len({keys[0], keys[1], keys[3]}) == 3


def test_the_byte_copy_table_groups_rows_in_buckets_of_about_a_block_not_one_a_hash(spark):
    """Every image has a sha256: one group per hash made one Python call per image (~2 ms each: 8 of the stage's 9 s
    on 4,230 images). Rows of one hash still share a bucket."""

    from fruitjob.simhash import byte_copy_rows

    rows = [("p%03d" % k, "same" if k in (7, 250) else "h%03d" % k) for k in range(300)] + [("none", "")]
    signed = spark.createDataFrame(rows, ["path", "sha256"])
    table = byte_copy_rows(signed, 4, 10).toPandas()
    assert len(table) == 300 and set(table["table"]) == {4} and table["bucket"].nunique() <= 10
    same = table[table["sha256"] == "same"]["bucket"]
    assert len(same) == 2 and same.nunique() == 1


def test_only_rows_whose_bytes_another_row_has_go_to_the_byte_copy_table(spark):
    """Keying every row's features again for the byte-copy table cost a pass over all of them; only rows of a repeated
    hash can be byte copies (across the earlier outputs too), and rows without a hash never are."""
    from fruitjob.simhash import with_repeated_hash

    rows = [("a", "h1", "this"), ("b", "h2", "this"), ("c", "h1", "this"), ("d", "h2", "earlier")]
    rows += [("e", "h3", "this"), ("f", "", "this"), ("g", "", "this"), ("h", None, "this")]
    items = spark.createDataFrame(rows, "path string, sha256 string, side string")
    assert sorted(row["path"] for row in with_repeated_hash(items).collect()) == ["a", "b", "c", "d"]


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


@pytest.mark.slow
def test_the_lsh_finds_every_leak_against_an_earlier_output(spark, job_output, tmp_path, monkeypatch):
    """The earlier output's rows go through the LSH's count, leaves and byte-copy table too: a copy of an output,
    compared with it, leaks every image by its bytes, as the exact search says (its near pairs, on random weights, are
    the LSH's sample of an all-alike set and are not compared)."""
    import json

    import fruitjob.similarity
    from fruitjob.health import write_health

    output = tmp_path / "again"
    shutil.copytree(job_output, output)
    identity = json.loads((job_output / "space.json").read_text())["identity"]
    threshold = metrics(job_output)["health"]["near_duplicate_threshold"]
    found = {}
    for method, below in (("exact-blocked", 10**6), ("simhash-lsh", 10)):
        monkeypatch.setattr(fruitjob.similarity, "EXACT_BELOW_ROWS", below)
        counts = write_health(spark, str(output), [str(job_output)], threshold, identity)
        assert counts.method == method and counts.compared_with == [str(job_output)]
        pairs = read_parquet(output, "health/pairs")
        byte_leaks = pairs[pairs.exact & pairs.leak]
        found[method] = set(zip(byte_leaks.path, byte_leaks.other_path, strict=True))
        assert counts.leaks == int(pairs.leak.sum()) >= len(found[method])
    images = read_parquet(job_output, "features")
    assert found["simhash-lsh"] == found["exact-blocked"] and {p for p, _ in found["simhash-lsh"]} == set(images.path)


def test_the_tables_are_the_fewest_for_the_recall_over_the_deepest_path():
    import math

    from fruitjob.simhash import LSH_RECALL, MAX_EXTRA_BITS, base_bits, tables_for, tables_needed

    for rows, threshold in ((24000, 0.98), (100000, 0.98), (100000, 0.9), (5000, 0.95)):
        bits = base_bits(rows)
        assert 2 ** (bits - 1) < rows / 1024 <= 2**bits
        tables = tables_for(bits, threshold)
        together = (1 - math.acos(threshold) / math.pi) ** bits
        assert 1 - (1 - together) ** tables >= LSH_RECALL > 1 - (1 - together) ** (tables - 1)
    assert (base_bits(24000), tables_for(5, 0.98)) == (5, 4) and (base_bits(100000), tables_for(7, 0.98)) == (7, 5)
    # a table whose buckets took 2 extra bits: the tables are counted over 7 + 2 bits
    extra = np.zeros((tables_for(7 + MAX_EXTRA_BITS, 0.98), 128), dtype=np.int64)
    assert tables_needed(extra, 7, 0.98) == 5
    extra[1, 17] = 2
    assert tables_needed(extra, 7, 0.98) == tables_for(9, 0.98) == 6
