"""The run's summary: the markdown shown in Prefect and written next to the output, and the per-class table."""

from __future__ import annotations

import io

from fruitjob.metrics import RunMetrics
from tasks.contract import RunResult
from tasks.health_tables import found_sentence, health_counts, near_duplicate_caveat
from tasks.markdown import file_link, fit, link_target, md_code, md_text
from tasks.validation import ERROR_SAMPLES, ValidationReport

# A row's name and value are broken into lines of these many characters: Prefect's UI does not wrap table cells,
# and a 1400 px page has room for about 120 characters of a row.
NAME_WIDTH, VALUE_WIDTH = 36, 64


def row(name: str, value: str) -> str:
    """One row of a two-column table, its cells (markdown already) broken to fit the page."""
    return f"| {fit(name, NAME_WIDTH)} | {fit(value, VALUE_WIDTH)} |"


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
    return [row("previous run of this output", f"finished {finished} (input {input_uri}{images}{run}); {what}")]


def _pca_row(m: RunMetrics) -> str:
    asked = "default" if m.pca_components_asked is None else f"{m.pca_components_asked} asked"
    return row("PCA", f"{m.pca_components} components ({asked}), explained variance {m.explained_variance_total:.3f}")


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
        rows.append(row(md_text(detail.name), shown))
    return rows


def _weights(m: RunMetrics) -> str:
    """The weights, a long path shown as its file name and folder, one per line."""
    about = f"(alpha {md_text(m.alpha)}, sha256 {md_code(m.weights_sha256[:12])})"
    folder, _, name = m.weights.rpartition("/")
    if len(m.weights) <= VALUE_WIDTH or not folder or not name:
        return f"{md_code(m.weights)} {about}"
    return f"{md_code(name)}<br>in {md_code(folder)} {about}"


def summary_markdown(
    report: ValidationReport,
    result: RunResult,
    previous_run_url: str | None = None,
    plot_image: str | None = None,
) -> str:
    """The run's summary; ``previous_run_url`` links the flow run of the output's previous run, if known;
    ``plot_image`` shows the explained-variance plot inline: a ``data:`` URL in Prefect (its UI cannot open the file
    next to the output), the file's name in summary.md beside it."""
    m = report.metrics
    plot = report.output.rstrip("/") + "/explained_variance.png"
    lines = [
        f"# fruit-features: {m.images_ok} of {m.images_total} images featurized",
        "",
        "| | |",
        "|---|---|",
        row("input", md_code(m.images)),
        row("output", md_code(report.output)),
        row("engine", md_text(result.engine)),
        row("files seen / skipped (not images)", f"{m.files_seen} / {m.files_skipped}"),
        row("images total / ok / failed", f"{m.images_total} / {m.images_ok} / {m.images_failed}"),
        row("already done / removed (incremental)", f"{m.images_already_done} / {m.images_removed}"),
        row("weights", _weights(m)),
        row("featurizer", md_text(m.featurizer)),
        _pca_row(m),
        row("timings (s)", md_text(", ".join(f"{k} {v}" for k, v in m.durations_s.items()))),
    ]
    if result.durations_s:
        steps = ", ".join(f"{k} {v}" for k, v in result.durations_s.items())
        lines.append(row("flow steps (s)", f"{md_text(steps)} (run: the job and what the engine does around it)"))
    lines += _engine_rows(result)
    lines += _previous_run_rows(m, previous_run_url)
    if result.cost_estimate:
        lines.append(row("cost (estimate)", md_text(result.cost_estimate.text)))
    if result.estimate:
        took = result.durations_s.get("run")
        after = f"; it took {took / 60:.1f} min" if took is not None else ""
        lines.append(row("estimated before the run", md_text(result.estimate.text + after)))
    lines += _quality_rows(m)
    lines += _health_rows(m)
    if m.pca_note:
        lines += ["", f"Note: {md_text(m.pca_note)}"]
    lines += _drift_lines(report)
    if m.folders_skipped:
        lines += ["", "## Folders not listed", "", "| folder | why |", "|---|---|"]
        lines += [row(md_code(f.path), md_text(f.reason)) for f in m.folders_skipped]
    lines += ["", "## Explained variance", ""]
    if plot_image:
        lines += [f"![explained variance per principal component]({plot_image})", ""]
    lines += [
        f"First components: {', '.join(f'{v:.3f}' for v in m.explained_variance[:10])}",
        f"Plot: [explained_variance.png]({link_target(file_link(plot))}) ({md_code(plot, in_table=False)})",
    ]
    if report.error_samples:
        shown = report.error_samples[:ERROR_SAMPLES]
        lines += ["", f"## Errors (first {ERROR_SAMPLES})", "", "| path | error |", "|---|---|"]
        lines += [f"| {md_code(e.path)} | {fit(md_text(e.error), VALUE_WIDTH)} |" for e in shown]
    return "\n".join(lines) + "\n"


def _quality_rows(metrics: RunMetrics) -> list[str]:
    """Do the features separate the classes? The job's leave-one-out nearest-centroid accuracy, both spaces."""
    quality = metrics.feature_quality
    if not quality:
        return []
    return [
        row(
            f"classes separated ({quality.sample_size} images)",
            f"accuracy {quality.accuracy_features:.3f} on the {metrics.feature_dim} features, "
            f"{quality.accuracy_pca:.3f} in the {metrics.pca_components} PCA components<br>"
            "(nearest class centroid, leave-one-out)",
        )
    ]


def _health_rows(metrics: RunMetrics) -> list[str]:
    """What the health stage found (the pictures are in health.html beside summary.md), or that it was off."""
    counts = health_counts(metrics)
    if counts is None:
        return [row("dataset health", "off: no duplicates, leaks, outliers or mislabels looked for")]
    against = len(counts.get("compared_with") or [])
    compared = f"compared with {against} earlier output{'s' if against != 1 else ''}" if against else "within this run"
    threshold = md_text(counts.get("near_duplicate_threshold"))
    how = f"{md_text(counts.get('method'))}, near-duplicate at similarity {threshold}"
    caveat = near_duplicate_caveat(metrics)
    found = md_text(found_sentence(counts)) + (f"<br>**{md_text(caveat)}**" if caveat else "")
    return [
        row("dataset health", f"{found}; the pictures: health.html"),
        row("dataset health: how", f"{compared}; {how}"),
    ]


def class_rows(report: ValidationReport) -> list[dict]:
    """The per-class table: images ok, failed and removed (no longer in the input), and how well each class is told
    apart from the others."""
    quality = report.metrics.feature_quality
    scored = {row.label: row for row in (quality.per_class if quality else [])}
    removed = report.metrics.images_removed_per_class
    counts = health_counts(report.metrics)
    health = {entry["label"]: entry for entry in (counts.get("per_class") or [])} if counts else None
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
                **(_health_cells(health.get(label, {})) if health is not None else {}),
            }
        )
    return rows


def _health_cells(entry: dict) -> dict[str, int]:
    """A class's health counts (the class table's last columns; a run with health off has none)."""
    keys = ("duplicates", "conflicts", "leaks", "outliers", "suspected_mislabels")
    return {key: int(entry.get(key) or 0) for key in keys}
