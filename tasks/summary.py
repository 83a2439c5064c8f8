"""The run's summary: the markdown shown in Prefect and written next to the output, and the per-class table."""

from __future__ import annotations

import io

from fruitjob.metrics import RunMetrics
from tasks.contract import RunResult
from tasks.markdown import file_link, link_target, md_code, md_text
from tasks.validation import ValidationReport


def variance_plot_png(explained_variance: list[float]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figure, axis = plt.subplots(figsize=(6, 3.2), dpi=100)
    components = np.arange(1, len(explained_variance) + 1)
    axis.bar(components, explained_variance, color="#6a9f3f", label="per component")
    axis.plot(components, np.cumsum(explained_variance), color="#c0392b", marker=".", label="cumulative")
    axis.set_xlabel("principal component")
    axis.set_ylabel("explained variance ratio")
    axis.set_ylim(0, 1)
    axis.legend(loc="center right")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def _previous_run_rows(metrics: RunMetrics, flow_run_url: str | None = None) -> list[str]:
    """The run this output held before this one, from the output's own metrics (never another output's run)."""
    before = metrics.previous_run
    if not before:
        return []
    what = "replaced by this run (--overwrite)" if before.replaced else "this run added to it (--incremental)"
    images = f", {before.features_total} images featurized" if before.features_total is not None else ""
    run = ""
    if before.flow_run_id:
        run_id = md_text(before.flow_run_id)
        run = f", flow run [{run_id}]({link_target(flow_run_url)})" if flow_run_url else f", flow run {run_id}"
    finished, input_uri = md_text(before.finished_at), md_code(before.images)
    return [f"| previous run of this output | finished {finished} (input {input_uri}{images}{run}); {what} |"]


def _pca_row(m: RunMetrics) -> str:
    asked = "default" if m.pca_components_asked is None else f"{m.pca_components_asked} asked"
    return f"| PCA | {m.pca_components} components ({asked}), explained variance {m.explained_variance_total:.3f} |"


def _drift_lines(report: ValidationReport) -> list[str]:
    """Files that came or went while the job ran: not errors, said once each."""
    lines = []
    arrived, deleted = report.drift.arrived, report.drift.deleted
    if arrived:
        lines += ["", f"{len(arrived)} files arrived after the listing: the next `--incremental` run takes them."]
    if deleted:
        lines += ["", f"{len(deleted)} files were deleted after the listing, during the run (their rows say so)."]
    return lines


def _engine_rows(result: RunResult) -> list[str]:
    rows = []
    for detail in result.details:
        shown = f"<{link_target(detail.value)}>" if detail.link else md_text(detail.value)
        rows.append(f"| {md_text(detail.name)} | {shown} |")
    return rows


def summary_markdown(report: ValidationReport, result: RunResult, previous_run_url: str | None = None) -> str:
    """The run's summary; ``previous_run_url`` links the flow run of the output's previous run, if known."""
    m = report.metrics
    plot = report.output.rstrip("/") + "/explained_variance.png"
    lines = [
        f"# fruit-features: {m.images_ok} of {m.images_total} images featurized",
        "",
        "| | |",
        "|---|---|",
        f"| input | {md_code(m.images)} |",
        f"| output | {md_code(report.output)} |",
        f"| engine | {md_text(result.engine)} |",
        f"| files seen / skipped (not images) | {m.files_seen} / {m.files_skipped} |",
        f"| images total / ok / failed | {m.images_total} / {m.images_ok} / {m.images_failed} |",
        f"| already done / removed, no longer in the input (incremental) | {m.images_already_done} / "
        f"{m.images_removed} |",
        f"| weights | {md_code(m.weights)} (alpha {md_text(m.alpha)}, sha256 {md_code(m.weights_sha256[:12])}) |",
        f"| featurizer | {md_text(m.featurizer)} |",
        _pca_row(m),
        f"| timings (s) | {md_text(', '.join(f'{k} {v}' for k, v in m.durations_s.items()))} |",
    ]
    if result.durations_s:
        steps = ", ".join(f"{k} {v}" for k, v in result.durations_s.items())
        lines.append(f"| flow steps (s) | {md_text(steps)} (run: the job and what the engine does around it) |")
    lines += _engine_rows(result)
    lines += _previous_run_rows(m, previous_run_url)
    if result.cost_estimate:
        lines.append(f"| cost (estimate) | {md_text(result.cost_estimate.text)} |")
    if result.estimate:
        took = result.durations_s.get("run")
        after = f"; it took {took / 60:.1f} min" if took is not None else ""
        lines.append(f"| estimated before the run | {md_text(result.estimate.text + after)} |")
    lines += _quality_rows(m)
    if m.pca_note:
        lines += ["", f"Note: {md_text(m.pca_note)}"]
    lines += _drift_lines(report)
    if m.folders_skipped:
        lines += ["", "## Folders not listed", "", "| folder | why |", "|---|---|"]
        lines += [f"| {md_code(f.path)} | {md_text(f.reason)} |" for f in m.folders_skipped]
    lines += [
        "",
        "## Explained variance",
        "",
        f"First components: {', '.join(f'{v:.3f}' for v in m.explained_variance[:10])}",
        f"Plot: [explained_variance.png]({link_target(file_link(plot))}) ({md_code(plot, in_table=False)})",
    ]
    if report.error_samples:
        lines += ["", "## Errors (first 20)", "", "| path | error |", "|---|---|"]
        lines += [f"| {md_code(e.path)} | {md_text(e.error)} |" for e in report.error_samples]
    return "\n".join(lines) + "\n"


def _quality_rows(metrics: RunMetrics) -> list[str]:
    """Do the features separate the classes? The job's leave-one-out nearest-centroid accuracy, both spaces."""
    quality = metrics.feature_quality
    if not quality:
        return []
    return [
        f"| classes separated (nearest class centroid, leave-one-out, {quality.sample_size} images) | "
        f"accuracy {quality.accuracy_features:.3f} on the {metrics.feature_dim} features, "
        f"{quality.accuracy_pca:.3f} in the {metrics.pca_components} PCA components |"
    ]


def class_rows(report: ValidationReport) -> list[dict]:
    """The per-class table: images ok, failed and removed (no longer in the input), and how well each class is told
    apart from the others."""
    quality = report.metrics.feature_quality
    scored = {row.label: row for row in (quality.per_class if quality else [])}
    removed = report.metrics.images_removed_per_class
    rows = []
    for label in sorted(set(report.per_class) | set(removed)):  # a label whose photos all went still shows
        row, counts = scored.get(label), report.per_class.get(label)
        rows.append(
            {
                "label": label,
                "ok": counts.ok if counts else 0,
                "failed": counts.failed if counts else 0,
                "removed": removed.get(label, 0),
                "accuracy_features": row.accuracy_features if row else None,
                "accuracy_pca": row.accuracy_pca if row else None,
                "most_confused_with": row.most_confused_with if row else None,
            }
        )
    return rows
