"""What a run tells people: a markdown summary and a per-class table in Prefect, and files next to the output.

The summary's "previous run" is the previous run of this output, as the job recorded it in metrics.json from the
output's own earlier metrics (``previous_run``): never whichever flow run the server saw last, which may have
written anywhere.
"""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.utilities.urls import url_for
from pyarrow import fs as pafs

from tasks.contract import RunResult
from tasks.health_artifacts import publish_health
from tasks.health_tables import health_counts
from tasks.output_ready import announce_output
from tasks.run_artifacts import describe, png_data_url, publish_failed_images, publish_output_link
from tasks.summary import class_rows, summary_markdown, variance_plot_png
from tasks.uris import filesystem_path
from tasks.validation import ValidationReport

SUMMARY_KEY = "fruit-features-summary"
CLASSES_KEY = "fruit-features-classes"


def previous_run_url(report: ValidationReport) -> str | None:
    """The UI page of the flow run that wrote this output's previous run, when the job recorded its id."""
    before = report.metrics.previous_run
    if not before or not before.flow_run_id:
        return None
    try:
        return url_for("flow-run", obj_id=before.flow_run_id)
    except Exception as exc:  # noqa: BLE001 - a missing link must not fail a finished run
        get_run_logger().warning("no link to the previous run's flow run (%s)", exc)
        return None


def _write(filesystem: pafs.FileSystem, uri: str, data: bytes) -> None:
    with filesystem.open_output_stream(filesystem_path(uri)) as stream:
        stream.write(data)


@task(name="publish-summary", cache_policy=NO_CACHE)
def publish_summary(report: ValidationReport, result: RunResult, filesystem: pafs.FileSystem | None = None) -> str:
    """Write summary.md, explained_variance.png and health.html next to the output; publish the Prefect artifacts
    (the summary with the plot inline, the class table, the failed images, the dataset health, the output's link);
    announce the output as ready."""
    filesystem = filesystem or pafs.LocalFileSystem()
    output = report.output.rstrip("/")
    plot = variance_plot_png(report.metrics.explained_variance)
    previous = previous_run_url(report)
    on_disk = summary_markdown(report, result, previous, plot_image="explained_variance.png")  # the file beside it
    _write(filesystem, f"{output}/summary.md", on_disk.encode())
    _write(filesystem, f"{output}/explained_variance.png", plot)
    markdown = summary_markdown(report, result, previous, plot_image=png_data_url(plot))
    m = report.metrics
    create_markdown_artifact(
        key=SUMMARY_KEY,
        markdown=markdown,
        description=describe(report, f"{m.pca_components} components explain {m.explained_variance_total:.3f}"),
    )
    create_table_artifact(
        key=CLASSES_KEY,
        table=class_rows(report),
        description=describe(
            report,
            f"{len(report.per_class)} classes: ok, failed, nearest-centroid accuracy, most confused with"
            + ("" if health_counts(m) is None else ", duplicates, conflicts, leaks, outliers, suspected mislabels"),
        ),
    )
    publish_failed_images(report)
    publish_health(report, filesystem)
    publish_output_link(report)
    announce_output(report, result)
    get_run_logger().info("summary written to %s/summary.md", output)
    return markdown
