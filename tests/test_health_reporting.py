"""What people read of dataset health: a row of the summary (or one line saying it was off), the class table's
counts per class, and the Prefect artifacts (capped tables sorted by score, a link to health.html)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from pyarrow import fs

from tasks.contract import RunResult
from tasks.health_artifacts import HEALTH_KEY, MISLABELS_KEY, OUTLIERS_KEY, PAGE_KEY, publish_health
from tasks.summary import class_rows, summary_markdown
from tasks.validation import ClassCounts, ValidationReport, read_metrics
from tests.health_fixtures import planted_output

LOCAL = fs.LocalFileSystem()


@pytest.fixture
def report(tmp_path) -> ValidationReport:
    output, _, _ = planted_output(tmp_path)
    per_class = {label: ClassCounts(ok=4, failed=0) for label in ("Apple", "Banana", "Cherry")}
    return ValidationReport(str(output), read_metrics(LOCAL, str(output)), per_class)


def _off(report: ValidationReport) -> ValidationReport:
    metrics = report.metrics.to_dict()
    metrics["health"] = None
    return ValidationReport(report.output, type(report.metrics).from_dict(metrics), report.per_class)


def _trained(report: ValidationReport, images_with_near_pair: int) -> ValidationReport:
    """The same run as if made with trained weights, ``images_with_near_pair`` of its 12 images in a near pair."""
    metrics = report.metrics.to_dict()
    metrics["weights"] = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
    metrics["health"] = dict(metrics["health"], images_with_near_pair=images_with_near_pair)
    return ValidationReport(report.output, type(report.metrics).from_dict(metrics), report.per_class)


def _summary_found(report: ValidationReport) -> str:
    summary = summary_markdown(report, RunResult(engine="local", output=report.output))
    return next(line for line in summary.splitlines() if line.startswith("| dataset health |")).replace("<br>", " ")


def test_the_summary_has_the_health_counts_and_says_where_the_pictures_are(report):
    summary = summary_markdown(_trained(report, 2), RunResult(engine="local", output=report.output))
    found, how = [line.replace("<br>", " ") for line in summary.splitlines() if line.startswith("| dataset health")]
    assert found == (
        "| dataset health | 1 exact and 3 near-duplicate pairs, 1 label conflict, 1 leak, 1 outlier, 1 suspected "
        "mislabel; the pictures: health.html |"
    )
    assert (
        how
        == "| dataset health: how | compared with 1 earlier output; exact-blocked, near-duplicate at similarity 0.95 |"
    )


def test_near_duplicates_from_random_weights_or_pairing_most_images_are_said_to_need_trained_weights(
    prefect_harness, report
):
    """Random weights make every image look alike; trained features that pair most images tell them apart no better:
    the summary and health.html's header say so plainly, and say nothing when the figures mean something."""
    need = "near-duplicates need trained weights"
    assert need in _summary_found(report) and "random weights" in _summary_found(report)  # the fixture's weights
    assert need in _summary_found(_trained(report, 7)) and "7 of 12 images" in _summary_found(_trained(report, 7))
    assert need not in _summary_found(_trained(report, 6))
    for case, said in ((report, True), (_trained(report, 2), False)):
        _publish(case)
        header = (Path(report.output) / "health.html").read_text().split("<section")[0]
        assert (need in header) is said


def test_a_run_with_health_off_says_so_in_one_line(report):
    summary = summary_markdown(_off(report), RunResult(engine="local", output=report.output))
    lines = [line for line in summary.splitlines() if "dataset health" in line]
    assert lines == ["| dataset health | off: no duplicates, leaks, outliers or mislabels looked for |"]


def test_the_class_table_gains_health_counts_per_class(report):
    cherry = next(row for row in class_rows(report) if row["label"] == "Cherry")
    assert cherry["ok"] == 4
    health = {k: cherry[k] for k in ("duplicates", "conflicts", "leaks", "outliers", "suspected_mislabels")}
    assert health == dict(duplicates=2, conflicts=1, leaks=1, outliers=0, suspected_mislabels=1)
    assert "duplicates" not in class_rows(_off(report))[0]


@flow(name="publish-health-test")
def _publish(report: ValidationReport) -> str | None:
    return publish_health(report, LOCAL)


def _artifacts(flow_run_id) -> dict:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {artifact.key: artifact for artifact in found}


def test_the_artifacts_are_capped_tables_and_a_link_to_the_page(prefect_harness, report):
    state = _publish(report, return_state=True)
    page = state.result()
    assert page == report.output + "/health.html"
    by_key = _artifacts(state.state_details.flow_run_id)
    assert set(by_key) == {HEALTH_KEY, OUTLIERS_KEY, MISLABELS_KEY, PAGE_KEY}
    pairs = json.loads(by_key[HEALTH_KEY].data)
    assert [row["kind"] for row in pairs] == ["label conflict", "leak", "duplicate (exact)", "duplicate"]
    assert [row["label"] for row in json.loads(by_key[MISLABELS_KEY].data)] == ["Cherry"]  # flagged only
    assert json.loads(by_key[OUTLIERS_KEY].data)[0]["score"] == 3.5
    assert by_key[PAGE_KEY].data == f"[{page}](file://{page})"
    assert by_key[PAGE_KEY].description.startswith("out: 12/12 images ok, 0 failed; health page: 1 exact and 3 near")


def test_health_off_publishes_no_page_and_no_artifacts(prefect_harness, report):
    state = _publish(_off(report), return_state=True)
    assert state.result() is None and _artifacts(state.state_details.flow_run_id) == {}
