"""The fruit-features flow on the local engine, run for real under a Prefect test server."""

from __future__ import annotations

import json
import re

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId

from flows.fruit_features import fruit_features
from tasks.reporting import CLASSES_KEY, SUMMARY_KEY
from tasks.validation import ClassCounts
from tests.conftest import TEST_ALPHA
from tests.helpers import metrics

FLOW_ARGS = {"weights": "random", "alpha": TEST_ALPHA, "pca_components": 5, "batch_size": 8}


@pytest.fixture(scope="module")
def flow_run(prefect_harness, fruit_images, tmp_path_factory):
    output = tmp_path_factory.mktemp("flow") / "out"
    state = fruit_features(images=str(fruit_images), output=str(output), return_state=True, **FLOW_ARGS)
    return state, output


def _task_names(flow_run_id) -> set[str]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {run.name.rsplit("-", 1)[0] for run in runs}


@pytest.mark.slow
def test_flow_end_to_end(flow_run):
    state, output = flow_run
    assert state.is_completed(), state.message
    result = state.result()
    assert (result.engine, result.output, result.dry_run) == ("local", str(output), False)
    for name in ("features", "pca", "errors", "pca_model", "metrics.json", "summary.md", "explained_variance.png"):
        assert (output / name).exists(), name
    m = metrics(output)
    assert (m["images_ok"], m["images_failed"], m["images_total"]) == (24, 1, 25)
    assert m["feature_dim"] == 1280 and m["pca_components"] == 5
    assert result.validation.per_class["Banana"] == ClassCounts(ok=4, failed=1)
    assert result.validation.metrics.images_ok == m["images_ok"]
    assert _task_names(state.state_details.flow_run_id) == {
        "check-input",
        "run-spark-job",
        "validate-output",
        "publish-summary",
    }


@pytest.mark.slow
def test_flow_publishes_summary_and_class_table(flow_run):
    state, output = flow_run
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[SUMMARY_KEY, CLASSES_KEY])),
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])),
        )
    by_key = {artifact.key: artifact for artifact in artifacts}
    summary = by_key[SUMMARY_KEY].data
    assert "24 of 25 images featurized" in summary and "broken.jpg" in summary and str(output) in summary
    rows = json.loads(by_key[CLASSES_KEY].data)
    peach = next(row for row in rows if row["label"] == "Pêche Blanche")
    assert (peach["ok"], peach["failed"]) == (4, 0)
    assert {"accuracy_features", "accuracy_pca", "most_confused_with"} <= set(peach)
    assert "| classes separated (24 images) | accuracy " in summary
    assert "(nearest class centroid, leave-one-out) |" in summary
    # summary.md shows the plot file beside it; the artifact has it inline (the UI cannot open the file)
    inline = re.sub(r"\(data:image/png;base64,[A-Za-z0-9+/=]+\)", "(explained_variance.png)", summary)
    assert inline != summary and (output / "summary.md").read_text() == inline


@pytest.mark.slow
def test_finished_output_is_refused_before_spark(flow_run, fruit_images):
    _, output = flow_run
    state = fruit_features(images=str(fruit_images), output=str(output), return_state=True, **FLOW_ARGS)
    assert state.is_failed()
    assert "already holds a finished run" in state.message and "--overwrite" in state.message
    assert _task_names(state.state_details.flow_run_id) == {"check-input"}


@pytest.mark.parametrize(
    ("make_input", "message"),
    [
        (lambda tmp: tmp / "missing", "does not exist"),
        (lambda tmp: tmp, "no images under"),
        (lambda tmp: "s3://bucket/fruits", "pip's pyspark has no S3 connector"),
    ],
    ids=["missing", "empty", "s3-on-local"],
)
def test_bad_input_fails_fast_with_clear_message(prefect_harness, tmp_path, make_input, message):
    (tmp_path / "notes.txt").write_text("no images here")
    output = tmp_path / "out"
    state = fruit_features(images=str(make_input(tmp_path)), output=str(output), return_state=True, **FLOW_ARGS)
    assert state.is_failed()
    assert message in state.message
    assert _task_names(state.state_details.flow_run_id) == {"check-input"}
    assert not output.exists()


@pytest.mark.parametrize(
    ("make_output", "message"),
    [
        (lambda images, tmp: images / "runs" / "1", "lies inside --images"),
        (lambda images, tmp: _unfinished(tmp / "half"), "holds an unfinished run"),
    ],
    ids=["inside-input", "unfinished"],
)
def test_unusable_output_is_refused_before_spark(prefect_harness, fruit_images, tmp_path, make_output, message):
    output = make_output(fruit_images, tmp_path)
    state = fruit_features(images=str(fruit_images), output=str(output), return_state=True, **FLOW_ARGS)
    assert state.is_failed() and message in state.message
    assert _task_names(state.state_details.flow_run_id) == {"check-input"}


def _unfinished(folder):
    (folder / "features").mkdir(parents=True)  # a run died before metrics.json
    return folder
