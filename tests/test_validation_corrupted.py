"""Validation checks the output against independent facts: each check fails on an output corrupted to break it.

Every test copies the session's finished run, corrupts one thing (a row dropped, a label, a model id, a count)
and expects ``verify_output`` to name it. The first test is the case the last review found: images lost with
counts edited to agree, which only a listing of the input itself can catch.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from pyarrow import fs

from tasks.validation import OutputInvalid, verify_output


@pytest.fixture
def output(job_output, tmp_path) -> Path:
    target = tmp_path / "out"
    shutil.copytree(job_output, target)
    return target


def _rewrite(output: Path, name: str, change) -> None:
    """Replace dataset ``name`` by ``change(table)``, as one file."""
    table = pq.read_table(output / name)
    shutil.rmtree(output / name)
    (output / name).mkdir()
    pq.write_table(change(table), output / name / "part-0.parquet")


def _edit_metrics(output: Path, **changes) -> None:
    path = output / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics.update(changes)
    path.write_text(json.dumps(metrics))


def _problems(output: Path) -> str:
    with pytest.raises(OutputInvalid) as caught:
        verify_output(str(output), fs.LocalFileSystem())
    return str(caught.value)


def _set_first(column: str, value: str):
    """A change for :func:`_rewrite`: the first row's ``column`` becomes ``value``."""

    def change(table: pa.Table) -> pa.Table:
        values = table[column].to_pylist()
        values[0] = value
        return table.set_column(table.schema.get_field_index(column), column, pa.array(values))

    return change


def _without(table: pa.Table, path_part: str) -> pa.Table:
    return table.filter(pc.invert(pc.match_substring(table["path"], path_part)))


def test_the_untouched_copy_is_valid(output):
    verify_output(str(output), fs.LocalFileSystem())


def test_lost_images_are_found_even_when_every_count_agrees(output):
    """A whole label folder dropped from features/ and pca/, with metrics edited to match: the listing catches it."""
    for name in ("features", "pca"):
        _rewrite(output, name, lambda table: _without(table, "/Lime Verde/"))
    metrics = json.loads((output / "metrics.json").read_text())
    _edit_metrics(
        output,
        images_ok=metrics["images_ok"] - 4,
        images_total=metrics["images_total"] - 4,
        files_seen=metrics["files_seen"] - 4,
        features_total=metrics["features_total"] - 4,
    )
    message = _problems(output)
    assert "4 images of the input are in neither features/ nor errors/" in message
    assert "Lime Verde" in message


def test_a_path_in_both_features_and_errors_is_refused(output):
    first = pq.read_table(output / "features").slice(0, 1)

    def add_first(errors: pa.Table) -> pa.Table:
        columns = {
            name: first[name] if name in first.column_names else pa.nulls(1, errors.schema.field(name).type)
            for name in errors.column_names
        }
        return pa.concat_tables([errors, pa.table(columns, schema=errors.schema)])

    _rewrite(output, "errors", add_first)
    assert "paths are in both features/ and errors/" in _problems(output)


def test_a_label_other_than_the_first_folder_is_refused(output):
    _rewrite(output, "features", _set_first("label", "2026"))  # e.g. the direct parent instead of the label folder
    assert "rows do not carry their label" in _problems(output)


def test_images_ok_must_be_this_runs_rows(output):
    _rewrite(output, "features", _set_first("run_id", "an-earlier-run"))
    assert "features/ has 23 rows of this run, metrics say images_ok 24" in _problems(output)


def test_pca_must_have_exactly_the_paths_of_features(output):
    _rewrite(output, "pca", lambda table: table.slice(1))
    assert "pca/ does not have the paths of features/: 1 missing" in _problems(output)


def test_every_pca_row_is_in_the_one_pca_space(output):
    _rewrite(output, "pca", _set_first("pca_model_id", "0123456789abcdef"))
    assert "pca/ rows are in 2 PCA space(s)" in _problems(output)


def test_space_json_must_name_the_model_of_the_rows(output):
    space = json.loads((output / "space.json").read_text())
    (output / "space.json").write_text(json.dumps({**space, "pca_model_id": "another"}))
    assert "space.json records PCA model another" in _problems(output)


def test_an_error_row_for_a_file_not_in_the_input_is_refused(output):
    def invent(table: pa.Table) -> pa.Table:
        paths = table["path"].to_pylist()
        paths[0] = paths[0].replace("broken.jpg", "never-there.jpg")
        return table.set_column(table.schema.get_field_index("path"), "path", pa.array(paths))

    _rewrite(output, "errors", invent)
    message = _problems(output)
    assert "errors/ has 1 rows for files not in the input" in message and "never-there.jpg" in message


def test_counts_of_skipped_files_are_checked_against_the_input(output):
    _edit_metrics(output, files_skipped=0, files_seen=25)
    assert "files_skipped is 0, the input has 1 non-images" in _problems(output)
