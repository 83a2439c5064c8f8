"""The event ``fruitflow.output.ready``: a validated output, for automations that start what comes next.

Its resource is the output (``prefect.resource.id`` is the output's URI: an ``s3://`` URI or a local path, as the
run's ``output`` parameter names it), its payload the run's counts. automations.yaml holds an example automation
that starts a deployment when it arrives (docs/weekly.md).
"""

from __future__ import annotations

from typing import Any

from prefect.events import emit_event

from tasks.contract import RunResult
from tasks.run_artifacts import batch_name
from tasks.validation import ValidationReport

OUTPUT_READY = "fruitflow.output.ready"


def output_ready_payload(report: ValidationReport, result: RunResult) -> dict[str, Any]:
    """What the event says about the run: the input, the engine and the counts validation checked."""
    m = report.metrics
    return {
        "images": m.images,
        "output": report.output,
        "engine": result.engine,
        "files_seen": m.files_seen,
        "images_total": m.images_total,
        "images_ok": m.images_ok,
        "images_failed": m.images_failed,
        "images_already_done": m.images_already_done,
        "pca_components": m.pca_components,
        "explained_variance_total": m.explained_variance_total,
    }


def announce_output(report: ValidationReport, result: RunResult) -> None:
    """Emit ``fruitflow.output.ready`` for a validated output (the flow run is added as a related resource)."""
    emit_event(
        event=OUTPUT_READY,
        resource={
            "prefect.resource.id": report.output,
            "prefect.resource.name": batch_name(report.output),
            "fruitflow.engine": result.engine,
        },
        payload=output_ready_payload(report, result),
    )
