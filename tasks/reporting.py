"""What a run tells people: a markdown summary and a per-class table in Prefect, and files next to the output.

The run before this one is kept as data, in the Prefect variable ``fruit_features_last_run`` (output and flow run
id, written by each published summary), so the next summary can link it without reading anyone's markdown.
"""

from __future__ import annotations

from prefect import get_run_logger, runtime, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.utilities.urls import url_for
from prefect.variables import Variable
from pyarrow import fs as pafs

from tasks.contract import RunResult
from tasks.summary import PreviousRun, class_rows, summary_markdown, variance_plot_png
from tasks.uris import filesystem_path
from tasks.validation import ValidationReport

SUMMARY_KEY = "fruit-features-summary"
CLASSES_KEY = "fruit-features-classes"
LAST_RUN_VARIABLE = "fruit_features_last_run"


def previous_run() -> PreviousRun | None:
    """The run whose summary was published last (read before this run publishes its own), if any."""
    last = Variable.get(LAST_RUN_VARIABLE, default=None)
    if not isinstance(last, dict) or not last.get("output"):
        return None
    flow_run_id = last.get("flow_run_id")
    return PreviousRun(
        output=str(last["output"]),
        flow_run_id=flow_run_id,
        url=url_for("flow-run", obj_id=flow_run_id) if flow_run_id else None,
    )


def _remember(output: str) -> None:
    Variable.set(LAST_RUN_VARIABLE, {"output": output, "flow_run_id": runtime.flow_run.id}, overwrite=True)


def _write(filesystem: pafs.FileSystem, uri: str, data: bytes) -> None:
    with filesystem.open_output_stream(filesystem_path(uri)) as stream:
        stream.write(data)


@task(name="publish-summary", cache_policy=NO_CACHE)
def publish_summary(report: ValidationReport, result: RunResult, filesystem: pafs.FileSystem | None = None) -> str:
    """Write summary.md and explained_variance.png next to the output; publish the Prefect artifacts."""
    filesystem = filesystem or pafs.LocalFileSystem()
    output = report.output.rstrip("/")
    try:
        previous = previous_run()
    except Exception as exc:  # noqa: BLE001 - a missing link must not fail a finished run
        get_run_logger().warning("could not read the previous run (%s); no link to it", exc)
        previous = None
    markdown = summary_markdown(report, result, previous)
    _write(filesystem, f"{output}/summary.md", markdown.encode())
    _write(filesystem, f"{output}/explained_variance.png", variance_plot_png(report.metrics.explained_variance))
    create_markdown_artifact(key=SUMMARY_KEY, markdown=markdown, description="fruit-features run summary")
    create_table_artifact(
        key=CLASSES_KEY,
        table=class_rows(report),
        description="images per class: ok, failed, nearest-centroid accuracy and the class most confused with",
    )
    _remember(report.output)
    get_run_logger().info("summary written to %s/summary.md", output)
    return markdown
