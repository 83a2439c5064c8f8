"""--incremental makes the output mirror the input: a moved photo has one row under its new label, a deleted one none,
and validation fails an output holding rows of files the input no longer has (issue 19, case 1)."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from pyarrow import fs

from tasks.contract import RunResult
from tasks.local.sample_images import make_sample_images
from tasks.summary import class_rows, summary_markdown
from tasks.validation import OutputInvalid, verify_output
from tests.conftest import JOB_DEFAULTS
from tests.helpers import read_parquet


def _run(spark, images, output, *extra):
    from fruitjob.job import run
    from fruitjob.options import parse_options

    argv = ["--images", str(images), "--output", str(output), *JOB_DEFAULTS, "--pca-components", "2", *extra]
    return run(spark, parse_options(argv))


pytestmark = pytest.mark.slow  # every test runs the job two or three times: 10-25 s each


@pytest.fixture
def week_1(spark, tmp_path):
    """Week 1: 12 photos in 6 labels and a broken one, featurized into a fresh output."""
    images = make_sample_images(tmp_path / "photos", per_class=2, size=48)
    (images / "Banana" / "broken.jpg").write_bytes(b"not a jpeg")
    output = tmp_path / "out"
    _run(spark, images, output)
    return images, output


def _files(images) -> set[str]:
    return {f"file:{path}" for path in images.rglob("*.jpg")}


def test_a_moved_and_a_deleted_photo_leave_exactly_the_input(spark, week_1):
    images, output = week_1
    apple, lime = sorted((images / "Apple Red 1").glob("*.jpg"))[0], sorted((images / "Lime Verde").glob("*.jpg"))[0]
    moved = images / "Banana" / "moved.jpg"
    apple.rename(moved)  # a label fixed by moving the photo
    lime.unlink()
    (images / "Banana" / "broken.jpg").unlink()  # an image that failed before, deleted: no errors/ row either
    before = read_parquet(output, "features").set_index("path")

    m = _run(spark, images, output, "--incremental")

    features, pca, errors = (read_parquet(output, name) for name in ("features", "pca", "errors"))
    assert set(features["path"]) == set(pca["path"]) == _files(images) and len(features) == len(pca) == 11
    assert errors.empty
    row = features.set_index("path").loc[f"file:{moved}"]
    assert row["label"] == "Banana"
    assert (m.images_removed, m.images_ok, m.images_already_done, m.features_total) == (2, 1, 10, 11)
    assert m.images_removed_per_class == {"Apple Red 1": 1, "Lime Verde": 1}
    unchanged = features.set_index("path").drop(index=f"file:{moved}")
    assert (unchanged["run_id"] == before.loc[unchanged.index, "run_id"]).all(), "unchanged images featurized again"
    report = verify_output(str(output), fs.LocalFileSystem())
    assert sum(counts.ok for counts in report.per_class.values()) == 11
    rows = {row["label"]: row for row in class_rows(report)}
    assert (rows["Apple Red 1"]["ok"], rows["Apple Red 1"]["removed"], rows["Banana"]["ok"]) == (1, 1, 3)
    markdown = summary_markdown(report, RunResult("local", str(output)))
    assert "| already done / removed (incremental) | 10 / 2 |" in markdown


def test_validation_fails_rows_of_files_the_input_no_longer_has(spark, week_1, tmp_path):
    """The output of week 1 against the input of week 2: rows of earlier runs are no longer tolerated."""
    images, output = week_1
    copy = tmp_path / "copy"
    shutil.copytree(output, copy)
    gone = sorted((images / "Apple Red 1").glob("*.jpg"))[0]
    gone.unlink()
    with pytest.raises(OutputInvalid, match=r"features/ has 1 rows for files not in the input \(.*Apple"):
        verify_output(str(copy), fs.LocalFileSystem())


def test_an_unchanged_input_featurizes_nothing_and_removes_nothing(spark, week_1):
    images, output = week_1
    before = read_parquet(output, "features")
    m = _run(spark, images, output, "--incremental")
    assert (m.images_removed, m.images_ok, m.images_already_done) == (0, 0, 12)
    after = read_parquet(output, "features")
    pd.testing.assert_series_equal(after["run_id"], before["run_id"])
    verify_output(str(output), fs.LocalFileSystem())


def test_the_previous_run_is_this_outputs_own(spark, week_1, tmp_path, monkeypatch):
    """Issue 19: the summary named the server's last flow run, whatever output it wrote; now the output's own."""
    from tests.helpers import metrics

    images, output = week_1
    first = metrics(output)
    _run(spark, make_sample_images(tmp_path / "other", per_class=1, size=48), tmp_path / "elsewhere")  # ran last
    second = _run(spark, images, output, "--incremental", "--flow-run-id", "0f1e-second")
    before = second.previous_run
    assert (before.run_id, before.finished_at, before.images) == (first["run_id"], first["finished_at"], str(images))
    assert (before.features_total, before.replaced, second.flow_run_id) == (12, False, "0f1e-second")
    report = verify_output(str(output), fs.LocalFileSystem())
    (row,) = [
        r.replace("<br>", " ")  # a long cell is broken into lines to fit the page
        for r in summary_markdown(report, RunResult("local", str(output))).splitlines()
        if r.startswith("| previous run")
    ]
    assert row.startswith(f"| previous run of this output | finished {first['finished_at']} (input `{images}`")
    assert "elsewhere" not in row

    third = _run(spark, images, output, "--overwrite")
    assert (third.previous_run.run_id, third.previous_run.flow_run_id, third.previous_run.replaced) == (
        second.run_id,
        "0f1e-second",
        True,
    )
    fresh = _run(spark, images, tmp_path / "fresh")
    assert fresh.previous_run is None
