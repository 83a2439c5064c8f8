"""A Prefect progress artifact for the Spark job: fed by the job's own lines or by an EMR step's state.

The artifact's number is the percentage; its description, which the UI shows on the run's Artifacts tab and on the
artifact's page, carries what the number alone cannot: a bar, the images featurized so far, images/s and an
estimate of the time left. The job does not log image counts while it featurizes, only Spark task counts; the
images to featurize come from its ``listed ...`` (or ``incremental: ...``) line, so the images done are estimated as
that count times the share of featurize tasks done (tasks are equal slices of the listed images).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact

# What spark_jobs/fruitjob/progress.py logs, after the "fruitflow INFO " prefix: "progress: 42% featurize, 3/8 tasks".
PROGRESS_LINE = re.compile(r"^progress: (\d+(?:\.\d+)?)% ?(.*)$")
# The job's listing (fruitjob/job.py): "listed 36 images (1 unusable as listed) and 2 other files under ...".
LISTED_LINE = re.compile(r"^listed (\d+) images \((\d+) unusable")
# An --incremental run featurizes only part of the listing: "incremental: 30 images already done, 6 to featurize, ...".
INCREMENTAL_LINE = re.compile(r"^incremental: \d+ images already done, (\d+) to featurize")
FEATURIZE_TASKS = re.compile(r"^featurize, (\d+)/(\d+) tasks$")
FEATURIZE_STARTS = "weights done"  # the job's stage before featurizing; its line starts the clock
FEATURIZE_ENDS = "featurize done"
# An EMR step reports no task counts to the flow: its state stands for how far it got.
STEP_STATE_PERCENT = {"PENDING": 0.0, "RUNNING": 50.0, "COMPLETED": 100.0}
BAR_WIDTH = 10


def parse_progress(message: str) -> tuple[float, str] | None:
    """``(percent, detail)`` from a job progress message, or None for any other message.

    Example:
        >>> parse_progress("progress: 42% featurize, 3/8 tasks")
        (42.0, 'featurize, 3/8 tasks')
    """
    match = PROGRESS_LINE.match(message)
    return (float(match.group(1)), match.group(2)) if match else None


def bar(percent: float, width: int = BAR_WIDTH) -> str:
    """A text bar in a code span, as markdown shows it in both Prefect UIs.

    Example:
        >>> bar(50, width=4)
        '`██░░`'
    """
    filled = round(width * max(0.0, min(percent, 100.0)) / 100)
    return "`" + "█" * filled + "░" * (width - filled) + "`"


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``2 h 10 min``: precise enough for an estimate."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


@dataclass
class ImageRate:
    """Images featurized so far, per second, and the time left, from the job's lines and a clock."""

    clock: Callable[[], float] = time.monotonic
    to_featurize: int | None = None
    started: float | None = None  # when featurizing began (the clock's time)
    done: int = 0
    seconds: float = 0.0  # featurizing time up to the last count

    def read(self, message: str, detail: str | None) -> None:
        """Take what a job line says about images: the count to featurize, the start, tasks done."""
        if (listed := LISTED_LINE.match(message)) is not None:
            self.to_featurize = int(listed.group(1)) - int(listed.group(2))
        elif (increment := INCREMENTAL_LINE.match(message)) is not None:
            self.to_featurize = int(increment.group(1))
        if detail is None:
            return
        if detail == FEATURIZE_STARTS:
            self.started = self.clock()
        elif (tasks := FEATURIZE_TASKS.match(detail)) is not None and self.to_featurize is not None:
            if self.started is None:
                self.started = self.clock()
            done, total = int(tasks.group(1)), int(tasks.group(2))
            self.done = max(self.done, round(self.to_featurize * done / total)) if total else self.done
            self.seconds = self.clock() - self.started
        elif detail == FEATURIZE_ENDS and self.to_featurize is not None and self.started is not None:
            self.done, self.seconds = self.to_featurize, self.clock() - self.started

    @property
    def per_second(self) -> float | None:
        return self.done / self.seconds if self.done and self.seconds > 0 else None

    def text(self, finished: bool = False) -> str:
        """``35.2 images/s, about 7 s left to featurize, 120/360 images`` (what is known of it), or ``""``."""
        if self.to_featurize is None or not self.done:
            return f"{self.to_featurize} images to featurize" if self.to_featurize is not None else ""
        parts = []
        if (rate := self.per_second) is not None:
            parts.append(f"{rate:.1f} images/s")
            if not finished and self.done < self.to_featurize:
                parts.append(f"about {duration((self.to_featurize - self.done) / rate)} left to featurize")
        return ", ".join([*parts, f"{self.done}/{self.to_featurize} images"])


class JobProgress:
    """One progress artifact per run of the job (no key: it belongs to the flow run); it only moves forward.

    Args:
        what: what is measured, shown in the artifact's description ("Spark job", "EMR step s-...").
        clock: seconds, for the rate (tests pass their own).

    Example:
        >>> progress = JobProgress("Spark job")  # doctest: +SKIP
        >>> progress.update(50, "featurize, 4/8 tasks")  # doctest: +SKIP
    """

    def __init__(self, what: str, clock: Callable[[], float] = time.monotonic):
        self.what = what
        self.percent = 0.0
        self.rate = ImageRate(clock)
        self.artifact_id: UUID | None = None
        try:
            self.artifact_id = create_progress_artifact(0.0, description=self.description("starting"))
        except Exception as exc:  # noqa: BLE001 - progress is cosmetic: the run goes on without it
            get_run_logger().warning("no progress artifact (%s); the run goes on", exc)

    def description(self, detail: str = "") -> str:
        """``42% ████░░░░░░ 35.2 images/s, about 7 s left to featurize, 120/360 images · Spark job: featurize, ...``

        The percentage and the rate come first: the run's Artifacts tab shows only the start of a description.
        """
        images = self.rate.text(finished=self.percent >= 100)
        parts = [
            f"{self.percent:.0f}% {bar(self.percent)} {images}".rstrip(),
            f"{self.what}: {detail}" if detail else self.what,
        ]
        return " · ".join(parts)

    def update(self, percent: float, detail: str = "") -> None:
        """Move to ``percent`` (never back); the description says what the job is doing and how fast."""
        if self.artifact_id is None or percent <= self.percent and not detail:
            return
        self.percent = max(self.percent, min(percent, 100.0))
        try:
            update_progress_artifact(self.artifact_id, self.percent, description=self.description(detail))
        except Exception as exc:  # noqa: BLE001 - as above
            get_run_logger().debug("progress update failed: %s", exc)

    def from_job_message(self, message: str) -> bool:
        """Update from a job message if it is a progress line (others may say how many images there are); True when
        it was a progress line."""
        parsed = parse_progress(message)
        self.rate.read(message, parsed[1] if parsed else None)
        if parsed is not None:
            self.update(*parsed)
        return parsed is not None
