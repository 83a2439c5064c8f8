"""Every output holds the PCA model its pca/ rows are in (issue 19, cases 2 and 3): weekly chains of --pca-model,
outputs moved or copied, --overwrite --pca-model into the same output, and a missing model said in one line."""

from __future__ import annotations

import json
import shutil

import numpy as np
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


def _add_image(images, name: str, seed: int) -> None:
    draw_fruit(__import__("random").Random(seed), (200, 60, 40), 48).save(images / "Banana" / name)


def _assert_self_contained(output, model_id: str) -> None:
    """The output's own pca_model/ is the model its rows are in, named relative to the output."""
    space = json.loads((output / "space.json").read_text())
    assert space["pca_model"] == "pca_model" and space["pca_model_id"] == model_id
    assert (output / "pca_model" / "pca_model.npz").exists()
    assert json.loads((output / "pca_model" / "identity.json").read_text())["pca_model_id"] == model_id
    assert metrics(output)["pca_model"] == str(output / "pca_model")
    assert set(read_parquet(output, "pca")["pca_model_id"]) == {model_id}
    verify_output(str(output), fs.LocalFileSystem())


@pytest.fixture
def images(tmp_path):
    return make_sample_images(tmp_path / "images", per_class=2, size=48)


@pytest.mark.slow
def test_the_weekly_chain_holds_in_week_3(spark, images, tmp_path):
    """Week 2 is made with --pca-model week 1; week 3 with --pca-model week 2: all in week 1's space."""
    week1, week2, week3 = (tmp_path / f"w{n}" for n in (1, 2, 3))
    first = _run(spark, images, week1, "--pca-components", "3")
    _assert_self_contained(week1, first.pca_model_id)
    _add_image(images, "week2.jpg", 2)
    _run(spark, images, week2, "--pca-model", str(week1))
    _assert_self_contained(week2, first.pca_model_id)
    _add_image(images, "week3.jpg", 3)
    third = _run(spark, images, week3, "--pca-model", str(week2))
    _assert_self_contained(week3, first.pca_model_id)
    assert third.pca_refit is False
    assert json.loads((week3 / "space.json").read_text())["pca_model_origin"] == str(week2 / "pca_model")
    np.testing.assert_array_equal(
        np.load(week3 / "pca_model" / "pca_model.npz")["components"],
        np.load(week1 / "pca_model" / "pca_model.npz")["components"],
    )


@pytest.mark.slow
def test_a_moved_or_copied_output_stays_usable(spark, images, tmp_path):
    week1, week2 = tmp_path / "w1", tmp_path / "w2"
    first = _run(spark, images, week1, "--pca-components", "3")
    _run(spark, images, week2, "--pca-model", str(week1))
    shutil.rmtree(week1)  # the model week 2 came from is gone: week 2 holds its own
    moved = tmp_path / "archive" / "w2"
    moved.parent.mkdir()
    shutil.move(str(week2), str(moved))
    copied = tmp_path / "copy-of-w2"
    shutil.copytree(moved, copied)

    _add_image(images, "later.jpg", 5)
    for output in (moved, copied):
        m = _run(spark, images, output, "--incremental")
        assert (m.images_ok, m.pca_refit) == (1, False)
        _assert_self_contained(output, first.pca_model_id)
    chained = _run(spark, images, tmp_path / "w3", "--pca-model", str(copied))
    assert chained.pca_model_id == first.pca_model_id


@pytest.mark.slow
def test_overwrite_with_the_pca_model_of_the_same_output_keeps_it(spark, images, tmp_path):
    """Case 2: the model is loaded before the output is cleared, and saved into the new output."""
    output = tmp_path / "out"
    first = _run(spark, images, output, "--pca-components", "3")
    again = _run(spark, images, output, "--overwrite", "--pca-model", str(output))
    assert (again.pca_refit, again.pca_model_id) == (False, first.pca_model_id)
    _assert_self_contained(output, first.pca_model_id)
    _add_image(images, "new.jpg", 7)
    later = _run(spark, images, output, "--incremental")
    assert (later.images_ok, later.pca_model_id) == (1, first.pca_model_id)
    _assert_self_contained(output, first.pca_model_id)


@pytest.fixture(scope="module")
def finished_once(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("finished")
    images = make_sample_images(root / "images", per_class=2, size=48)
    _run(spark, images, root / "output", "--pca-components", "3")
    return root


@pytest.fixture
def finished(finished_once, tmp_path):
    """A copy of one finished run (its images beside it), for a test to damage."""
    shutil.copytree(finished_once, tmp_path / "run")
    return tmp_path / "run" / "output"


def _no_model(model):
    shutil.rmtree(model)


def _a_stage_without_data(model):
    shutil.rmtree(sorted((model / "stages").iterdir())[0] / "data")


def _no_identity(model):
    (model / "identity.json").unlink()


@pytest.mark.parametrize(
    "how, damage, missing",
    [
        ("--pca-model", _no_model, "pca_model/ is missing"),
        ("--pca-model", _a_stage_without_data, "stages/0_stdScal"),
        ("--incremental", _a_stage_without_data, "stages/0_stdScal"),
        ("--incremental", _no_identity, "identity.json"),
    ],
    ids=["pca-model-without-model", "pca-model-stage-without-data", "incremental-stage-without-data", "no-identity"],
)
def test_a_missing_or_incomplete_model_is_one_line_that_says_so(spark, finished, tmp_path, damage, missing, how):
    from fruitjob.job import JobError

    images = finished.parent / "images"
    damage(finished / "pca_model")
    if how == "--pca-model":
        output, extra = tmp_path / "next", ["--pca-model", str(finished)]
    else:
        output, extra = finished, ["--incremental"]
    with pytest.raises(JobError) as raised:
        _run(spark, images, output, *extra)
    message = str(raised.value)
    assert "\n" not in message and str(finished) in message and missing in message, message
    assert "--overwrite" in message or "--pca-model" in message, message


@pytest.mark.slow
def test_an_older_output_naming_its_model_by_absolute_path_still_loads(spark, images, tmp_path):
    """Outputs written before this change hold no copy: their space.json names the other output's model."""
    week1, week2 = tmp_path / "w1", tmp_path / "w2"
    first = _run(spark, images, week1, "--pca-components", "3")
    _run(spark, images, week2, "--pca-model", str(week1))
    shutil.rmtree(week2 / "pca_model")
    space = json.loads((week2 / "space.json").read_text())
    space["pca_model"] = str(week1 / "pca_model")
    space.pop("pca_model_origin", None)
    (week2 / "space.json").write_text(json.dumps(space))

    assert _run(spark, images, tmp_path / "w3", "--pca-model", str(week2)).pca_model_id == first.pca_model_id
    _add_image(images, "later.jpg", 9)
    m = _run(spark, images, week2, "--incremental")
    assert (m.images_ok, m.pca_model_id) == (1, first.pca_model_id)
    _assert_self_contained(week2, first.pca_model_id)  # the resumed output now holds its own copy
