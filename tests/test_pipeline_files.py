"""pca_model/ as ``fruitjob.pipeline_files`` writes it is what Spark ML's own ``save`` writes, field by field: the
metadata JSON of the pipeline and its stages, and each stage's Parquet data (footer key-value metadata, column
schema, rows), on this Spark (4.x) and on the EMR cluster's (Python 3.9, Spark 3.5: tests/parity_env.py)."""

from __future__ import annotations

import pytest

from tests.parity_env import REPO
from tests.spark_ml_files import differences, save_both


def test_our_pipeline_files_are_spark_mls_own(spark, tmp_path):
    assert differences(*save_both(spark, tmp_path)) == []


@pytest.mark.slow
def test_our_pipeline_files_are_spark_mls_own_on_the_cluster_spark(parity, tmp_path):
    result = parity.run_script(REPO / "tests" / "spark_ml_files.py", str(tmp_path))
    assert result["spark"].startswith("3.5.")
    assert result["differences"] == []
