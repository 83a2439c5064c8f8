"""The engine contract: what an engine's checks find (:class:`Preflight`), what its run gives back
(:class:`RunOutcome`), and the one result every engine (and a dry run) returns.

An engine is chosen by its settings' ``kind`` (``--engine``; tasks/engine_settings.py) from ``tasks.registry``.
Adding one means: a package under ``tasks/`` with a class that implements :class:`Engine`, its settings model, and
one line in the registry (docs/architecture.md).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pyarrow import fs as pafs

from fruitjob.options import JobOptions
from tasks.validation import ValidationReport


@dataclass(frozen=True)
class Preflight:
    """What an engine's checks found before anything costs money or time."""

    images: int
    bytes: int
    other_files: int = 0
    account: str | None = None  # AWS engines: the account and region the credentials reach
    region: str | None = None
    execution_role_arn: str | None = None  # EMR Serverless: the job run's role

    @classmethod
    def from_aws_checks(cls, checked: dict[str, Any]) -> Preflight:
        """From the AWS preflight's findings (tasks/aws/preflight.py: ``files`` counts images and other files)."""
        return cls(
            images=checked["images"],
            bytes=checked["bytes"],
            other_files=checked["files"] - checked["images"],
            account=checked["account"],
            region=checked["region"],
            execution_role_arn=checked.get("execution_role_arn"),
        )


@dataclass(frozen=True)
class Detail:
    """One line an engine adds to the run's summary (cluster id, console link...)."""

    name: str
    value: str
    link: bool = False


class Cost(Protocol):
    """An engine's cost estimate: in USD where its price table knows the resources, always with a sentence."""

    usd: float | None

    @property
    def text(self) -> str: ...


@dataclass
class RunOutcome:
    """What an engine's run gives back: the summary's lines, the resources it used, what it cost."""

    details: list[Detail] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)  # engine resources: cluster_id, step_id...
    cost: Cost | None = None  # an estimate of what the run took (AWS engines)


@dataclass
class RunResult:
    """What a run of the flow returns, whatever the engine; ``validation`` is None on a dry run."""

    engine: str
    output: str
    dry_run: bool = False
    checked: Preflight | None = None  # what the engine's checks found (images, account...)
    details: list[Detail] = field(default_factory=list)
    estimate: Cost | None = None  # before the run: what it should take and cost (a dry run stops there)
    cost_estimate: Cost | None = None  # after the run: what it took (a dry run: the upper bound)
    validation: ValidationReport | None = None
    ids: dict[str, str] = field(default_factory=dict)  # engine resources: cluster_id, step_id...
    durations_s: dict[str, float] = field(default_factory=dict)  # the flow's own steps: check, run, validate

    def detail(self, name: str) -> str | None:
        return next((d.value for d in self.details if d.name == name), None)

    def record(self, outcome: RunOutcome) -> None:
        """Take in what the engine's run gave back."""
        self.details += outcome.details
        self.ids |= outcome.ids
        self.cost_estimate = outcome.cost

    @contextmanager
    def timed(self, step: str) -> Iterator[None]:
        """Record the wall time of ``step`` (also when it fails)."""
        started = time.monotonic()
        try:
            yield
        finally:
            self.durations_s[step] = round(time.monotonic() - started, 3)


class Engine(Protocol):
    """Runs the job somewhere; the flow calls these in order, and the hooks call :meth:`cleanup`."""

    name: ClassVar[str]

    def complete(self, images: str | None, output: str | None, stamp: str) -> tuple[str, str]:
        """The input and output this engine uses when the user gave none (samples, a default output)."""

    def check(self, job: JobOptions) -> Preflight:
        """Everything that can be checked before anything costs money or time; raises with every problem found."""

    def estimate(self, job: JobOptions, checked: Preflight) -> Cost | None:
        """What the run will likely cost (None where it costs nothing)."""

    def run(self, job: JobOptions, checked: Preflight) -> RunOutcome:
        """Run the job to its end (output written) or raise; what it used and cost."""

    def filesystem(self) -> pafs.FileSystem:
        """The filesystem the output lives on, for validation and the summary."""

    def cleanup(self, flow_run_id: str, state_name: str, logger: Any) -> None:
        """End whatever this flow run left running (flow hooks: cancellation, crash, failure); never raises."""
