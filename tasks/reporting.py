"""What a run tells people: a markdown summary and a per-class table in Prefect, and files next to the output."""

from __future__ import annotations

import io

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from pyarrow import fs as pafs

from tasks.validation import filesystem_path

SUMMARY_KEY = "fruit-features-summary"
CLASSES_KEY = "fruit-features-classes"


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


def summary_markdown(report: dict, run: dict) -> str:
    m = report["metrics"]
    variance = m["explained_variance"]
    lines = [
        f"# fruit-features: {m['images_ok']} of {m['images_total']} images featurized",
        "",
        "| | |",
        "|---|---|",
        f"| input | `{m['images']}` |",
        f"| output | `{report['output']}` |",
        f"| engine | {run.get('engine', m.get('engine', 'local'))} |",
        f"| files seen / skipped (not images) | {m['files_seen']} / {m['files_skipped']} |",
        f"| images total / ok / failed | {m['images_total']} / {m['images_ok']} / {m['images_failed']} |",
        f"| already done (incremental) | {m.get('images_already_done', 0)} |",
        f"| weights | {m['weights']} (alpha {m['alpha']}, sha256 `{m['weights_sha256'][:12]}`) |",
        f"| featurizer | {m['featurizer']} |",
        f"| PCA | {m['pca_components']} components, explained variance {m['explained_variance_total']:.3f} |",
        f"| timings (s) | {', '.join(f'{k} {v}' for k, v in m['durations_s'].items())} |",
    ]
    for key in ("cluster_id", "step_id", "console_url", "previous_run"):
        if run.get(key):
            lines.append(f"| {key.replace('_', ' ')} | {run[key]} |")
    if run.get("cost_estimate"):
        cost = run["cost_estimate"]
        lines.append(f"| cost (estimate) | {cost.get('text', cost)} |")
    if m.get("pca_note"):
        lines += ["", f"Note: {m['pca_note']}"]
    lines += [
        "",
        "## Explained variance",
        "",
        f"First components: {', '.join(f'{v:.3f}' for v in variance[:10])}",
        f"Plot: `{report['output']}/explained_variance.png`",
    ]
    if report["error_samples"]:
        lines += ["", "## Errors (first 20)", "", "| path | error |", "|---|---|"]
        lines += [f"| `{e['path']}` | {e['error']} |" for e in report["error_samples"]]
    return "\n".join(lines) + "\n"


def _write(filesystem: pafs.FileSystem, uri: str, data: bytes) -> None:
    with filesystem.open_output_stream(filesystem_path(uri)) as stream:
        stream.write(data)


@task(name="publish-summary", cache_policy=NO_CACHE)
def publish_summary(report: dict, run: dict, filesystem: pafs.FileSystem | None = None) -> str:
    """Write summary.md and explained_variance.png next to the output; publish the Prefect artifacts."""
    filesystem = filesystem or pafs.LocalFileSystem()
    output = report["output"].rstrip("/")
    markdown = summary_markdown(report, run)
    _write(filesystem, f"{output}/summary.md", markdown.encode())
    _write(filesystem, f"{output}/explained_variance.png", variance_plot_png(report["metrics"]["explained_variance"]))
    create_markdown_artifact(key=SUMMARY_KEY, markdown=markdown, description="fruit-features run summary")
    rows = [{"label": label, **counts} for label, counts in report["per_class"].items()]
    create_table_artifact(key=CLASSES_KEY, table=rows, description="images per class: ok and failed")
    get_run_logger().info("summary written to %s/summary.md", output)
    return markdown
