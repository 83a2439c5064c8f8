"""The artifacts that let a run be read, and told from the others, in Prefect's UI.

Every artifact's description names the batch (the output folder's name) and the run's counts, so that the history
of a key on the Artifacts page tells runs apart without opening them. Beside the summary and the class table
(tasks/reporting.py) a run publishes the images that failed with their reasons, and a link to its output.
"""

from __future__ import annotations

import base64

from prefect.artifacts import create_link_artifact, create_table_artifact

from tasks.markdown import folder_link
from tasks.validation import ValidationReport

FAILED_IMAGES_KEY = "fruit-features-failed-images"
OUTPUT_KEY = "fruit-features-output"


def batch_name(output: str) -> str:
    """The batch a run wrote: the last part of its output (``/data/fruitflow/2026-w48`` -> ``2026-w48``).

    Example:
        >>> batch_name("s3://fruit/runs/2026-w48/")
        '2026-w48'
    """
    return output.rstrip("/").rpartition("/")[2] or output


def counts(report: ValidationReport) -> str:
    """``24/25 images ok, 1 failed``."""
    m = report.metrics
    return f"{m.images_ok}/{m.images_total} images ok, {m.images_failed} failed"


def describe(report: ValidationReport, what: str) -> str:
    """An artifact's description: ``2026-w48: 24/25 images ok, 1 failed; <what>`` (the UI's cards show its start)."""
    return f"{batch_name(report.output)}: {counts(report)}; {what}"


def png_data_url(png: bytes) -> str:
    """A PNG as a ``data:`` URL: the UI shows it inline, where it cannot open a file next to the output."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def failed_image_rows(report: ValidationReport) -> list[dict[str, str]]:
    """The failed images the report holds (the first ones by path), each with its label and reason."""
    return [{"path": e.path, "label": e.label, "error": e.error} for e in report.error_samples]


def failed_images_description(report: ValidationReport) -> str:
    shown, total = len(report.error_samples), report.errors_total
    listed = f"all {total}" if shown == total else f"the first {shown} of {total}, by path"
    return f"{batch_name(report.output)}: {total} failed images ({listed}) with their reasons, from errors/"


def publish_failed_images(report: ValidationReport) -> None:
    """A table artifact of the failed images (path, label, error); none when every image was featurized."""
    if not report.error_samples:
        return
    create_table_artifact(
        key=FAILED_IMAGES_KEY, table=failed_image_rows(report), description=failed_images_description(report)
    )


def publish_output_link(report: ValidationReport) -> str:
    """A link artifact to the output: a ``file://`` folder, or the S3 console's view of the prefix."""
    link = folder_link(report.output)
    create_link_artifact(link=link, link_text=report.output, key=OUTPUT_KEY, description=describe(report, "the output"))
    return link
