"""Reruns never mix spaces or lose rows: --overwrite with another model, changed and fixed files, two
writers, relative paths, an output inside its input."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
from pyarrow import fs

from tasks.local.sample_images import draw_fruit, make_sample_images
from tasks.validation import verify_output
from tests.conftest import JOB_DEFAULTS
from tests.helpers import metrics, read_parquet


def _run(spark, images, output, *extra):
    from fruitjob.job import run
    from fruitjob.options import parse_options

    return run(spark, parse_options(["--images", str(images), "--output", str(output), *JOB_DEFAULTS, *extra]))


@pytest.fixture
def images(tmp_path):
    root = make_sample_images(tmp_path / "images", per_class=2, size=48)
    (root / "Banana" / "broken.jpg").write_bytes(b"not a jpeg")
    return root


@pytest.mark.slow
def test_overwrite_with_a_pca_model_leaves_no_old_model_for_incremental(spark, images, job_output, tmp_path):
    output = tmp_path / "out"
    own = _run(spark, images, output, "--pca-components", "3")  # its own pca_model/
    m = _run(spark, images, output, "--overwrite", "--pca-model", str(job_output))
    assert m.pca_model_id == metrics(job_output)["pca_model_id"] != own.pca_model_id, "the replaced run's model goes"
    (images / "Banana" / "new.jpg").write_bytes((images / "Banana" / "000.jpg").read_bytes())
    later = _run(spark, images, output, "--incremental")
    assert later.pca_model == m.pca_model == str(output / "pca_model")  # the copy the output holds
    assert later.pca_model_id == metrics(job_output)["pca_model_id"]
    verify_output(str(output), fs.LocalFileSystem())


# A run killed at any point, resumed by --incremental: tests/test_crash_recovery.py (real kills).


@pytest.mark.slow
def test_a_file_changed_with_the_same_size_is_featurized_again(spark, images, tmp_path):
    output = tmp_path / "out"
    _run(spark, images, output, "--pca-components", "3")
    target = images / "Banana" / "001.jpg"
    other = draw_fruit(__import__("random").Random(99), (10, 200, 10), 48)
    other.save(target)
    data = target.read_bytes()
    before = read_parquet(output, "features").set_index("path").loc[f"file:{target}", "size"]
    data = (data + b"\0" * before)[:before] if len(data) < before else data[:before]  # same size, other bytes
    target.write_bytes(data)
    os.utime(target, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    m = _run(spark, images, output, "--incremental")
    assert m.images_changed == 1 and f"file:{target}" in set(read_parquet(output, "features")["path"]) | set(
        read_parquet(output, "errors")["path"]
    )
    verify_output(str(output), fs.LocalFileSystem())


@pytest.mark.slow
def test_images_that_failed_before_are_retried(spark, images, tmp_path):
    output = tmp_path / "out"
    _run(spark, images, output, "--pca-components", "3")
    assert list(read_parquet(output, "errors")["path"]) == [f"file:{images}/Banana/broken.jpg"]
    shutil.copyfile(images / "Banana" / "000.jpg", images / "Banana" / "broken.jpg")  # fixed since
    m = _run(spark, images, output, "--incremental")
    assert (m.images_total, m.images_ok, m.images_failed) == (1, 1, 0)
    assert f"file:{images}/Banana/broken.jpg" in set(read_parquet(output, "features")["path"])
    assert read_parquet(output, "errors").empty
    verify_output(str(output), fs.LocalFileSystem())


def test_a_second_writer_is_refused_while_the_lease_is_fresh(spark, images, tmp_path):
    from fruitjob.job import JobError

    output = tmp_path / "out"
    output.mkdir()
    holder = {"flow_run_id": "first-run", "host": "elsewhere", "pid": 1, "token": "t", "renewed_at": time.time()}
    (output / "_fruitflow.lock").write_text(json.dumps(holder))
    with pytest.raises(JobError, match="being written by another run \\(flow run first-run"):
        _run(spark, images, output)
    assert not (output / "features").exists()


@pytest.mark.slow
def test_a_lease_whose_process_died_is_taken_over(spark, images, tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    holder = {"flow_run_id": "crashed", "host": socket.gethostname(), "pid": dead.pid, "renewed_at": time.time()}
    (output / "_fruitflow.lock").write_text(json.dumps(holder))
    _run(spark, images, output, "--pca-components", "3")
    assert not (output / "_fruitflow.lock").exists(), "released at the end"
    verify_output(str(output), fs.LocalFileSystem())


def test_an_output_inside_the_input_is_refused(spark, images):
    from fruitjob.job import JobError

    with pytest.raises(JobError, match="lies inside --images"):
        _run(spark, images, images / "features-run")
    assert not (images / "features-run").exists()


def test_relative_weights_and_pca_model_resolve_against_the_working_directory(tmp_path, monkeypatch):
    from fruitjob.options import parse_options

    monkeypatch.chdir(tmp_path)
    opts = parse_options(
        ["--images", "in", "--output", "out", "--weights", "w/x_0.35_224_no_top.h5", "--pca-model", "runs/1"]
    )
    assert (opts.images, opts.output) == (str(tmp_path / "in"), str(tmp_path / "out"))
    assert (opts.weights, opts.pca_model) == (str(tmp_path / "w/x_0.35_224_no_top.h5"), str(tmp_path / "runs/1"))
    assert parse_options(["--images", "s3://b/in", "--output", "s3://b/out", "--weights", "random"]).weights == "random"
