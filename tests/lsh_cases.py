"""Planted pairs for the health stage's LSH search, and the pairs the exact search and the LSH find in them.

Imported by tests/test_health_lsh.py on this Spark, and run as a script by the EMR parity environment's Python 3.9
and Spark 3.5 (``python tests/lsh_cases.py`` with ``spark_jobs`` on ``PYTHONPATH``: it prints both searches' pairs
as JSON). So it stays Python 3.9 code.
"""

from __future__ import annotations

import json

BLOCK_ROWS = 32  # 300 rows: 10 blocks, 16 buckets a table
THRESHOLD = 0.95
PAIR_KEY = ["path", "other_path", "other_output"]


def planted_items(spark):
    """300 rows of 64-d vectors: 30 near copies (cosine ~0.9995) within this output, 10 of them also in an earlier
    output, and one byte copy (the same sha256) whose features differ."""
    import numpy as np

    from fruitjob.block_search import ITEM_COLUMNS

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


def both_searches(spark):
    """(exact pairs, LSH pairs, LSH pairs found in all tables together) as pandas frames sorted by pair, and a count."""
    from fruitjob.similarity import METHOD, METHOD_LSH, candidate_pairs, similar_pairs

    items, rows = planted_items(spark)
    found = {}
    for method in (METHOD, METHOD_LSH):
        pairs = similar_pairs(items, rows, THRESHOLD, block_rows=BLOCK_ROWS, method=method).toPandas()
        found[method] = pairs.sort_values(PAIR_KEY).reset_index(drop=True)
    candidates = candidate_pairs(items, rows, THRESHOLD, block_rows=BLOCK_ROWS, method=METHOD_LSH)
    return found[METHOD], found[METHOD_LSH], int(candidates.agg({"found": "sum"}).first()[0])


def main() -> None:
    import pyspark
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    exact, lsh, found = both_searches(spark)
    as_rows = {
        name: frame[PAIR_KEY + ["exact"]].astype(str).values.tolist()
        for name, frame in (("exact", exact), ("lsh", lsh))
    }
    print(json.dumps(dict(as_rows, found=found, spark=pyspark.__version__)))
    spark.stop()


if __name__ == "__main__":
    main()
