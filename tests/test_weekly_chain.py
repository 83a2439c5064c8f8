"""The weekly recipe of docs/weekly.md, four weeks in a row (issue 19): week 1 fresh, weeks 2-4 projected with
``--pca-model {previous}``; between weeks the whole output tree is moved to another disk, one week is rerun with
``--incremental`` after photos were moved between labels and deleted, and one week is SIGKILLed inside its
``features/`` write and resumed. Every week validates against its input and is in week 1's PCA space."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pyarrow import fs

from flows.weekly import fill, health_against
from tasks.local.sample_images import make_sample_images
from tasks.validation import verify_output
from tests.conftest import JOB_DEFAULTS
from tests.helpers import metrics, read_parquet
from tests.test_crash_recovery import _killed_run

MONDAYS = [datetime(2026, 11, 30, 6, tzinfo=UTC) + timedelta(weeks=week) for week in range(4)]


def _templates(root: Path) -> tuple[str, str, str]:
    """images, output and pca_model templates as docs/weekly.md writes them, under ``root``."""
    return (
        f"{root}/fruits/{{date:%G-w%V}}",
        f"{root}/fruitflow/{{date:%G-w%V}}",
        f"{root}/fruitflow/{{previous:%G-w%V}}",
    )


def _week(spark, root: Path, monday: datetime, *extra: str, first: bool = False):
    from fruitjob.job import run
    from fruitjob.options import parse_options

    images, output, previous = (fill(template, monday) for template in _templates(root))
    argv = ["--images", images, "--output", output, *JOB_DEFAULTS, "--pca-components", "3", *extra]
    if not first:  # as the weekly flow passes them: last week's model, and last week's output to look for leaks in
        argv += ["--pca-model", previous, "--health-against", *health_against(_templates(root)[2], None, monday)]
    return run(spark, parse_options(argv))


def _photos(root: Path, monday: datetime, seed: int) -> Path:
    images = Path(fill(_templates(root)[0], monday))
    return make_sample_images(images, per_class=2, size=48, seed=seed)


def _valid_in_space(root: Path, monday: datetime, space: str) -> dict:
    images, output = (fill(template, monday) for template in _templates(root)[:2])
    verify_output(output, fs.LocalFileSystem(), images)
    pca = read_parquet(Path(output), "pca")
    assert set(pca["pca_model_id"]) == {space}, f"week of {monday:%G-w%V} is not in week 1's space"
    return metrics(Path(output))


@pytest.mark.slow
def test_four_weeks_chained_moved_incremental_and_killed_stay_valid_in_week_ones_space(spark, tmp_path):
    root = tmp_path / "disk1"
    week1, week2, week3, week4 = MONDAYS
    for seed, monday in enumerate(MONDAYS):
        _photos(root, monday, seed)

    # Week 1: fresh; its PCA space is the one every later week is projected into.
    space = _week(spark, root, week1, first=True).pca_model_id
    _valid_in_space(root, week1, space)

    # The team moves its data to a new disk: outputs are self-contained, the chain goes on from there.
    moved = tmp_path / "disk2"
    shutil.move(root, moved)
    root = moved

    # Week 2: projected with week 1's model; week 3 with week 2's (an output that was itself projected). A photo of
    # week 1 comes again in week 2: a leak between the weeks.
    again = Path(fill(_templates(root)[0], week2)) / "Banana" / "again.jpg"
    shutil.copyfile(Path(fill(_templates(root)[0], week1)) / "Banana" / "000.jpg", again)
    _week(spark, root, week2)
    health = _valid_in_space(root, week2, space)["health"]
    assert health["compared_with"] == [fill(_templates(root)[1], week1)] and health["leaks"] >= 1
    leaks = read_parquet(Path(fill(_templates(root)[1], week2)), "health/pairs").query("leak and exact")
    assert [p.rsplit("/", 1)[-1] for p in leaks["path"]] == ["again.jpg"]
    _week(spark, root, week3)
    _valid_in_space(root, week3, space)

    # Week 3 again, --incremental, after a photo moved to another label and one was deleted.
    images3 = Path(fill(_templates(root)[0], week3))
    (images3 / "Apple Red 1" / "000.jpg").rename(images3 / "Banana" / "moved.jpg")
    (images3 / "Plum Dark" / "001.jpg").unlink()
    rerun = _week(spark, root, week3, "--incremental")
    assert rerun.images_removed == 2 and rerun.images_ok == 1
    after = _valid_in_space(root, week3, space)
    features = read_parquet(Path(fill(_templates(root)[1], week3)), "features")
    assert len(features) == after["features_total"] == 11
    assert list(features.loc[features["path"].str.endswith("moved.jpg"), "label"]) == ["Banana"]

    # Week 4: SIGKILLed inside its features/ write, then the deployment is run again with incremental=true.
    images4, output4, previous4 = (Path(fill(template, week4)) for template in _templates(root))
    _killed_run(images4, output4, "features/_temporary", tmp_path, "--pca-model", str(previous4))
    _week(spark, root, week4, "--incremental")
    finished = _valid_in_space(root, week4, space)
    assert finished["images_ok"] + finished["images_already_done"] == 12
