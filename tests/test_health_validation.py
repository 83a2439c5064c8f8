"""Validation checks health/ against features/ with pandas alone: each check fails on tables broken to break it."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pyarrow.parquet as pq
import pytest
from pyarrow import fs

from tasks.health_checks import check_health
from tasks.validation import OutputInvalid, read_metrics, verify_output
from tests.health_fixtures import planted_output, write_dataset

LOCAL = fs.LocalFileSystem()


def _problems(output) -> list[str]:
    problems: list[str] = []
    features = pd.read_parquet(output / "features", columns=["path", "label"])
    check_health(LOCAL, str(output), read_metrics(LOCAL, str(output)), features, problems)
    return problems


def _edit(output, name: str, change) -> None:
    table = change(pq.read_table(output / "health" / name).to_pandas())
    shutil.rmtree(output / "health" / name)
    write_dataset(output / "health" / name, {c: table[c].tolist() for c in table.columns})


def _edit_health(output, **changes) -> None:
    metrics = json.loads((output / "metrics.json").read_text())
    metrics["health"].update(changes)
    (output / "metrics.json").write_text(json.dumps(metrics))


@pytest.fixture
def planted(tmp_path):
    return planted_output(tmp_path)


def test_a_consistent_health_folder_passes(planted):
    assert _problems(planted[0]) == []


def test_an_image_not_in_features_is_named(planted):
    output, images, _ = planted
    _edit(output, "outliers", lambda t: t.assign(path=t["path"].replace(images["Apple/3"], "file:/elsewhere/x.jpg")))
    assert _problems(output) == ["health/outliers names 1 images not in features/ ('file:/elsewhere/x.jpg')"]


def test_an_other_image_must_be_in_the_output_the_row_names(planted):
    output, images, earlier = planted
    _edit(output, "pairs", lambda t: t.assign(other_path=t["other_path"].str.replace("old.jpg", "new.jpg")))
    (problem,) = _problems(output)
    assert "names 1 other images not in file:" + str(earlier) + "/features/" in problem and "new.jpg" in problem


def test_an_other_output_the_run_did_not_compare_with_is_refused(planted):
    output, _, _ = planted
    _edit_health(output, compared_with=[])
    (problem,) = _problems(output)
    assert problem.startswith("health/pairs names other outputs the run did not compare with ('file:")


def test_counts_must_be_the_tables_counts(planted):
    output, _, _ = planted
    _edit_health(output, leaks=3, near_duplicate_pairs=2)
    _edit(output, "mislabels", lambda t: t.assign(flagged=True))
    assert _problems(output) == [
        "metrics.json health.near_duplicate_pairs is 2, health/ has 3",
        "metrics.json health.leaks is 3, health/ has 1",
        "metrics.json health.suspected_mislabels is 1, health/ has 2",
        "metrics.json health.per_class suspected_mislabels {'Cherry': 1} disagree with health/: "
        "{'Cherry': 1, 'Banana': 1}",
    ]


def test_a_conflict_flag_must_agree_with_the_labels_and_tables_must_be_there(planted):
    output, _, _ = planted
    _edit(output, "pairs", lambda t: t.assign(conflict=False))
    shutil.rmtree(output / "health" / "mislabels")
    problems = _problems(output)
    assert problems[0] == "metrics.json counts dataset health, but health/ lacks mislabels"
    assert "health/pairs: 1 rows whose conflict flag disagrees with their labels" in problems[1]


def test_a_run_without_health_has_nothing_to_check(planted):
    output, _, _ = planted
    shutil.rmtree(output / "health")
    _edit_health(output)
    metrics = json.loads((output / "metrics.json").read_text())
    (output / "metrics.json").write_text(json.dumps({**metrics, "health": None}))
    assert _problems(output) == []


def test_validation_of_a_whole_output_fails_on_health_with_a_clear_line(job_output, tmp_path):
    """On the session's real run, health/ added with a row naming an image the run never saw."""
    output = tmp_path / "out"
    shutil.copytree(job_output, output)
    planted, _, _ = planted_output(tmp_path / "planted")
    shutil.rmtree(output / "health", ignore_errors=True)  # the job's own (with the health stage), replaced
    shutil.copytree(planted / "health", output / "health")
    metrics = json.loads((output / "metrics.json").read_text())
    metrics["health"] = json.loads((planted / "metrics.json").read_text())["health"]
    (output / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(OutputInvalid) as caught:
        verify_output(str(output), LOCAL)
    assert "\n- health/pairs names 4 images not in features/ ('file:" in str(caught.value)
