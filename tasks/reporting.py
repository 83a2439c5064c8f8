"""What a run tells people: a markdown summary and a per-class table in Prefect, and files next to the output."""

from __future__ import annotations

import io
import re
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactCollectionFilter, ArtifactCollectionFilterKey
from prefect.utilities.urls import url_for
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


_OUTPUT_ROW = re.compile(r"^\| output \| `([^`]+)` \|$", re.MULTILINE)


def file_link(uri: str) -> str:
    """A link a browser can follow: ``file://`` for a local path, the S3 console for ``s3://``."""
    if uri.startswith("s3://"):
        bucket, _, key = uri[len("s3://") :].partition("/")
        return f"https://s3.console.aws.amazon.com/s3/object/{bucket}?prefix={key}"
    return Path(uri.removeprefix("file:")).as_uri() if "://" not in uri else uri


def previous_summary() -> dict | None:
    """The latest summary artifact (the run before this one), as ``{"output", "flow_run_id", "url"}``, if any.

    Read before this run publishes its own, so that the summary can link the run it follows.
    """
    with get_client(sync_client=True) as client:
        latest = client.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=[SUMMARY_KEY])), limit=1
        )
    if not latest:
        return None
    match = _OUTPUT_ROW.search(str(latest[0].data or ""))
    flow_run_id = latest[0].flow_run_id
    return {
        "output": match.group(1) if match else None,
        "flow_run_id": str(flow_run_id) if flow_run_id else None,
        "url": url_for("flow-run", obj_id=flow_run_id) if flow_run_id else None,
    }


def _previous_run_rows(metrics: dict, previous: dict | None) -> list[str]:
    rows = []
    if metrics.get("previous_run"):  # --incremental: this run added to the one already in the output
        before = metrics["previous_run"]
        rows.append(f"| added to the run of | {before.get('finished_at')} (input `{before.get('images')}`) |")
    if previous and previous.get("output"):
        run = f"flow run [{previous['flow_run_id']}]({previous['url']})" if previous.get("url") else "flow run"
        rows.append(f"| previous run | `{previous['output']}` ({run}) |")
    return rows


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
    for key in ("cluster_id", "step_id", "console_url"):
        if run.get(key):
            lines.append(f"| {key.replace('_', ' ')} | {run[key]} |")
    lines += _previous_run_rows(m, run.get("previous_summary"))
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
        f"Plot: [explained_variance.png]({file_link(report['output'].rstrip('/') + '/explained_variance.png')})"
        f" (`{report['output'].rstrip('/')}/explained_variance.png`)",
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
    try:
        run = {**run, "previous_summary": previous_summary()}
    except Exception as exc:  # noqa: BLE001 - a missing link must not fail a finished run
        get_run_logger().warning("could not read the previous summary (%s); no link to it", exc)
    markdown = summary_markdown(report, run)
    _write(filesystem, f"{output}/summary.md", markdown.encode())
    _write(filesystem, f"{output}/explained_variance.png", variance_plot_png(report["metrics"]["explained_variance"]))
    create_markdown_artifact(key=SUMMARY_KEY, markdown=markdown, description="fruit-features run summary")
    rows = [{"label": label, **counts} for label, counts in report["per_class"].items()]
    create_table_artifact(key=CLASSES_KEY, table=rows, description="images per class: ok and failed")
    get_run_logger().info("summary written to %s/summary.md", output)
    return markdown
