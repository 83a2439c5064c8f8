"""Reruns on new image sets: project with an existing PCA, or featurize only what is new."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from pyarrow import fs

from tasks.local.sample_images import draw_fruit
from tasks.validation import ClassCounts, verify_output
from tests.helpers import metrics, read_parquet, vectors


@pytest.mark.slow
def test_pca_model_projects_into_the_first_batch_space(run_job, fruit_images, job_output):
    again = run_job(fruit_images, "--pca-model", str(job_output))
    m = metrics(again)
    assert m["pca_refit"] is False and m["pca_model"] == str(again / "pca_model")  # its own copy of the model
    assert m["pca_model_id"] == metrics(job_output)["pca_model_id"]
    assert m["explained_variance"] == metrics(job_output)["explained_variance"]
    first, second = read_parquet(job_output, "pca"), read_parquet(again, "pca")
    assert list(first["path"]) == list(second["path"])
    np.testing.assert_allclose(vectors(second, "pca"), vectors(first, "pca"), rtol=0, atol=1e-5)
    verify_output(str(again), fs.LocalFileSystem())


def test_pca_model_from_another_feature_space_is_refused(spark, fruit_images, job_output, tmp_path):
    from fruitjob.identity import SpaceMismatch
    from fruitjob.job import run
    from fruitjob.options import parse_options

    argv = ["--images", str(fruit_images), "--output", str(tmp_path / "out"), "--weights", "random"]
    argv += ["--alpha", "0.5", "--pca-model", str(job_output / "pca_model")]
    with pytest.raises(SpaceMismatch, match="alpha: PCA model .* has 0.35, this run 0.5"):
        run(spark, parse_options(argv))
    assert not (tmp_path / "out" / "features").exists()


@pytest.fixture
def growing_folder(fruit_images, tmp_path):
    folder = tmp_path / "batch"
    shutil.copytree(fruit_images, folder)
    return folder


@pytest.mark.slow
def test_incremental_featurizes_only_new_images(run_job, growing_folder, spark):
    from fruitjob.job import run
    from fruitjob.options import parse_options

    output = run_job(growing_folder, "--pca-components", "5")
    before = read_parquet(output, "features")
    new_class = growing_folder / "Kiwi Gold"
    new_class.mkdir()
    rng = np.random.default_rng(3)
    for index in range(3):
        draw_fruit(__import__("random").Random(index), (150, 140, 40), 64).save(new_class / f"k{index}.jpg")
    changed = sorted((growing_folder / "Banana").glob("*.jpg"))[0]
    changed.write_bytes(changed.read_bytes() + bytes(rng.integers(0, 255, 10, dtype=np.uint8)))  # new size

    argv = ["--images", str(growing_folder), "--output", str(output), "--weights", "random", "--alpha", "0.35"]
    m = run(spark, parse_options([*argv, "--incremental", "--batch-size", "8"]))
    # 3 new, 1 changed, and the broken image of the first run retried (it may have been fixed since).
    assert (m.images_total, m.images_ok, m.images_already_done, m.images_changed) == (5, 4, 23, 1)
    assert m.features_total == 27 and m.pca_refit is False
    after = read_parquet(output, "features")
    assert not after["path"].duplicated().any()
    assert set(after["path"]) - set(before["path"]) == {f"file:{new_class}/k{i}.jpg" for i in range(3)}
    kept = after[after["path"].isin(before["path"]) & (after["path"] != f"file:{changed}")]
    expected = before.set_index("path").loc[kept["path"]]
    np.testing.assert_array_equal(vectors(kept, "features"), vectors(expected.reset_index(), "features"))
    report = verify_output(str(output), fs.LocalFileSystem())
    assert report.per_class["Kiwi Gold"] == ClassCounts(ok=3, failed=0)
    assert len(read_parquet(output, "pca")) == 27

    # Nothing new: a third run featurizes nothing (the broken image is retried) and still reconciles.
    m = run(spark, parse_options([*argv, "--incremental"]))
    assert (m.images_total, m.images_ok, m.images_already_done, m.features_total) == (1, 0, 27, 27)
    verify_output(str(output), fs.LocalFileSystem())


def test_a_refused_rerun_leaves_the_finished_run_finished(spark, job_output, fruit_images, tmp_path):
    from fruitjob.identity import SpaceMismatch
    from fruitjob.job import run
    from fruitjob.options import parse_options

    output = tmp_path / "finished"
    shutil.copytree(job_output, output)
    argv = ["--images", str(fruit_images), "--output", str(output), "--weights", "random", "--alpha", "0.5"]
    with pytest.raises(SpaceMismatch, match="alpha"):
        run(spark, parse_options([*argv, "--incremental"]))
    assert (output / "metrics.json").exists()
    verify_output(str(output), fs.LocalFileSystem())


@pytest.mark.slow
def test_incremental_after_pca_model_stays_in_that_space(run_job, growing_folder, job_output, spark):
    from fruitjob.job import run
    from fruitjob.options import parse_options

    output = run_job(growing_folder, "--pca-model", str(job_output))
    new_class = growing_folder / "Kiwi Gold"
    new_class.mkdir()
    for index in range(2):
        draw_fruit(__import__("random").Random(index), (150, 140, 40), 64).save(new_class / f"k{index}.jpg")
    argv = ["--images", str(growing_folder), "--output", str(output), "--weights", "random", "--alpha", "0.35"]
    m = run(spark, parse_options([*argv, "--incremental"]))
    assert m.pca_refit is False and m.pca_model == str(output / "pca_model")
    assert m.pca_model_id == metrics(job_output)["pca_model_id"]
    assert len(read_parquet(output, "pca")) == 26
    verify_output(str(output), fs.LocalFileSystem())
