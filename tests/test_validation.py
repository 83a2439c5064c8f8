"""Validation catches outputs that do not reconcile, and says what is wrong."""

from __future__ import annotations

import json
import shutil

import pytest
from pyarrow import fs

from tasks.validation import ClassCounts, OutputInvalid, verify_output


@pytest.fixture
def output_copy(job_output, tmp_path):
    target = tmp_path / "out"
    shutil.copytree(job_output, target)
    return target


def _edit_metrics(output, **changes):
    path = output / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics.update(changes)
    path.write_text(json.dumps(metrics))


def test_valid_output_passes(job_output):
    report = verify_output(str(job_output), fs.LocalFileSystem())
    assert report.per_class["Banana"] == ClassCounts(ok=4, failed=1)
    assert report.error_samples[0].path.endswith("broken.jpg")


def test_counts_that_do_not_reconcile_are_named(output_copy):
    _edit_metrics(output_copy, images_ok=30, features_total=30)
    with pytest.raises(OutputInvalid) as caught:
        verify_output(str(output_copy), fs.LocalFileSystem())
    assert "images_ok 30 + images_failed 1 != images_total 25" in str(caught.value)
    assert "features/ has 24 rows of this run, metrics say images_ok 30" in str(caught.value)


def test_increasing_explained_variance_is_refused(output_copy):
    _edit_metrics(output_copy, explained_variance=[0.1, 0.2, 0.3, 0.2, 0.1])
    with pytest.raises(OutputInvalid, match="not non-increasing"):
        verify_output(str(output_copy), fs.LocalFileSystem())


def test_unfinished_run_is_refused(output_copy):
    (output_copy / "metrics.json").unlink()
    with pytest.raises(OutputInvalid, match="metrics.json is missing"):
        verify_output(str(output_copy), fs.LocalFileSystem())


def test_job_refuses_finished_output_without_overwrite(spark, job_output, fruit_images):
    from fruitjob.job import JobError, run
    from fruitjob.options import parse_options

    argv = ["--images", str(fruit_images), "--output", str(job_output), "--weights", "random"]
    with pytest.raises(JobError, match="already holds a finished run"):
        run(spark, parse_options(argv))
