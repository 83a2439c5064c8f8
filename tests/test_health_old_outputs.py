"""An output written before ``sha256`` existed keeps working: an --incremental run adds hashed rows to it and
the health stage treats the old rows' hash as unknown (never an exact duplicate), still pairing them by features."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import pytest

from tests.conftest import JOB_DEFAULTS
from tests.helpers import metrics, read_parquet


def _as_before_the_hash(output) -> None:
    """features/ rewritten without the sha256 column, its footers (the space's identity) kept."""
    folder = output / "features"
    table = pq.read_table(folder)
    table = table.drop_columns(["sha256"])
    for part in folder.glob("part-*"):
        part.unlink()
    pq.write_table(table, folder / "part-00000-old.parquet")


@pytest.mark.slow  # two job runs
def test_incremental_run_on_an_output_without_hashes(run_job, spark, tmp_path):
    from fruitjob.job import run
    from fruitjob.options import parse_options
    from tasks.local.sample_images import make_sample_images

    images = make_sample_images(tmp_path / "images", per_class=2, size=48)
    output = run_job(images)
    _as_before_the_hash(output)
    original = sorted((images / "Banana").iterdir())[0]
    shutil.copyfile(original, images / "Banana" / "zz_copy.jpg")
    run(spark, parse_options(["--images", str(images), "--output", str(output), *JOB_DEFAULTS, "--incremental"]))

    features = read_parquet(output, "features")
    hashed = features.set_index(features["path"].str.rsplit("/", n=1).str[-1])["sha256"]
    assert hashed["zz_copy.jpg"] and hashed.drop("zz_copy.jpg").isna().all()
    pairs = read_parquet(output, "health/pairs")
    row = pairs[
        (pairs["path"] == original.as_uri().replace("file:///", "file:/"))
        & pairs["other_path"].str.endswith("/Banana/zz_copy.jpg")
    ]
    row = row.iloc[0]
    assert not row["exact"] and row["leak"] and row["similarity"] > 0.999  # same bytes, but the old hash is unknown
    assert metrics(output)["health"]["exact_duplicate_pairs"] == 0
