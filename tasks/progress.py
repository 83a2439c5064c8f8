"""A Prefect progress artifact for the Spark job: fed by the job's ``progress:`` lines or by an EMR step's state."""

from __future__ import annotations

import re
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact

# What spark_jobs/fruitjob/progress.py logs, after the "fruitflow INFO " prefix: "progress: 42% featurize, 3/8 tasks".
PROGRESS_LINE = re.compile(r"^progress: (\d+(?:\.\d+)?)% ?(.*)$")
# An EMR step reports no task counts to the flow: its state stands for how far it got.
STEP_STATE_PERCENT = {"PENDING": 0.0, "RUNNING": 50.0, "COMPLETED": 100.0}


def parse_progress(message: str) -> tuple[float, str] | None:
    """``(percent, detail)`` from a job progress message, or None for any other message.

    Example:
        >>> parse_progress("progress: 42% featurize, 3/8 tasks")
        (42.0, 'featurize, 3/8 tasks')
    """
    match = PROGRESS_LINE.match(message)
    return (float(match.group(1)), match.group(2)) if match else None


class JobProgress:
    """One progress artifact per run of the job (no key: it belongs to the flow run); it only moves forward.

    Args:
        what: what is measured, shown as the artifact's description ("Spark job", "EMR step s-...").

    Example:
        >>> progress = JobProgress("Spark job")  # doctest: +SKIP
        >>> progress.update(50, "featurize, 4/8 tasks")  # doctest: +SKIP
    """

    def __init__(self, what: str):
        self.what = what
        self.percent = 0.0
        self.artifact_id: UUID | None = None
        try:
            self.artifact_id = create_progress_artifact(0.0, description=f"{what}: starting")
        except Exception as exc:  # noqa: BLE001 - progress is cosmetic: the run goes on without it
            get_run_logger().warning("no progress artifact (%s); the run goes on", exc)

    def update(self, percent: float, detail: str = "") -> None:
        """Move to ``percent`` (never back); the description says what the job is doing."""
        if self.artifact_id is None or percent <= self.percent and not detail:
            return
        self.percent = max(self.percent, min(percent, 100.0))
        description = f"{self.what}: {detail}" if detail else self.what
        try:
            update_progress_artifact(self.artifact_id, self.percent, description=description)
        except Exception as exc:  # noqa: BLE001 - as above
            get_run_logger().debug("progress update failed: %s", exc)

    def from_job_message(self, message: str) -> bool:
        """Update from a job message if it is a progress line; True when it was one."""
        parsed = parse_progress(message)
        if parsed is not None:
            self.update(*parsed)
        return parsed is not None
