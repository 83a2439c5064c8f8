"""The run's summary: the markdown shown in Prefect and written next to the output, and the per-class table."""

from __future__ import annotations

import io
from dataclasses import dataclass

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


@dataclass(frozen=True)
class PreviousRun:
    """The run before this one, from the data the flow keeps (a Prefect variable), not from its markdown."""

    output: str
    flow_run_id: str | None = None
    url: str | None = None


def _previous_run_rows(metrics: RunMetrics, previous: PreviousRun | None) -> list[str]:
    rows = []
    if metrics.previous_run:  # --incremental: this run added to the one already in the output
        before = metrics.previous_run
        finished, images = md_text(before.finished_at), md_code(before.images)
        rows.append(f"| added to the run of | {finished} (input {images}) |")
    if previous:
        run_id = md_text(previous.flow_run_id)
        run = f"flow run [{run_id}]({link_target(previous.url)})" if previous.url else "flow run"
        rows.append(f"| previous run | {md_code(previous.output)} ({run}) |")
    return rows


def _engine_rows(result: RunResult) -> list[str]:
    rows = []
    for detail in result.details:
        shown = f"<{link_target(detail.value)}>" if detail.link else md_text(detail.value)
        rows.append(f"| {md_text(detail.name)} | {shown} |")
    return rows


def summary_markdown(report: ValidationReport, result: RunResult, previous: PreviousRun | None = None) -> str:
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
        f"| already done (incremental) | {m.images_already_done} |",
        f"| weights | {md_code(m.weights)} (alpha {md_text(m.alpha)}, sha256 {md_code(m.weights_sha256[:12])}) |",
        f"| featurizer | {md_text(m.featurizer)} |",
        f"| PCA | {m.pca_components} components, explained variance {m.explained_variance_total:.3f} |",
        f"| timings (s) | {md_text(', '.join(f'{k} {v}' for k, v in m.durations_s.items()))} |",
    ]
    if result.durations_s:
        steps = ", ".join(f"{k} {v}" for k, v in result.durations_s.items())
        lines.append(f"| flow steps (s) | {md_text(steps)} (run: the job and what the engine does around it) |")
    lines += _engine_rows(result)
    lines += _previous_run_rows(m, previous)
    if result.cost_estimate:
        lines.append(f"| cost (estimate) | {md_text(result.cost_estimate.text)} |")
    if result.estimate:
        took = result.durations_s.get("run")
        after = f"; it took {took / 60:.1f} min" if took is not None else ""
        lines.append(f"| estimated before the run | {md_text(result.estimate.text + after)} |")
    lines += _quality_rows(m)
    if m.pca_note:
        lines += ["", f"Note: {md_text(m.pca_note)}"]
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
    """The per-class table: images ok and failed, and how well each class is told apart from the others."""
    quality = report.metrics.feature_quality
    scored = {row.label: row for row in (quality.per_class if quality else [])}
    rows = []
    for label, counts in report.per_class.items():
        row = scored.get(label)
        rows.append(
            {
                "label": label,
                "ok": counts.ok,
                "failed": counts.failed,
                "accuracy_features": row.accuracy_features if row else None,
                "accuracy_pca": row.accuracy_pca if row else None,
                "most_confused_with": row.most_confused_with if row else None,
            }
        )
    return rows
