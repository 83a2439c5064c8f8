"""The engine contract: what the flow needs from an engine, and the one result every engine (and a dry run) returns.

An engine is chosen by name (``--engine``) from ``tasks.registry``. Adding one means: a package under ``tasks/``
with a class that implements :class:`Engine`, one line in the registry, and its settings below (docs/architecture.md).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pyarrow import fs as pafs

from fruitjob.options import JobOptions, option
from tasks.validation import ValidationReport

ENGINE_NAMES = ("local", "emr", "emr-serverless")


@dataclass(frozen=True)
class EngineSettings:
    """How and where the job runs: the flow's parameters beyond the job's own (:class:`JobOptions`)."""

    engine: str = option(
        "local",
        "`local` (Spark on this machine, or --master), `emr` (a cluster the flow creates and tears down) or "
        "`emr-serverless` (a job run on an EMR Serverless application).",
        choices=ENGINE_NAMES,
    )
    master: str | None = option(
        None, "Spark master URL for the local engine (standalone, YARN, k8s); empty: local[N,2] on this machine."
    )
    cluster_block: str = option("fruitflow", "EmrClusterConfig block with the cluster's shape (EMR only).")
    serverless_block: str = option(
        "fruitflow", "EmrServerlessConfig block: application, execution role, job size (EMR Serverless only)."
    )
    aws_credentials_block: str = option(
        "fruitflow", "AwsCredentials block every AWS client is made from (AWS engines)."
    )
    s3_bucket_block: str = option("fruitflow", "S3Bucket block where the job is staged and logs go (AWS engines).")
    cluster_id: str | None = option(None, "Run on this existing cluster; it is left running (EMR only).")
    keep_cluster: bool = option(
        False, "Do not terminate the cluster the flow created (idle auto-termination still applies)."
    )
    dry_run: bool = option(False, "Checks and a cost estimate only; nothing is created or run.")
    step_timeout_minutes: int = option(
        180, "A step or job run running longer is cancelled and what the flow created torn down (AWS engines)."
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
class RunResult:
    """What a run of the flow returns, whatever the engine; ``validation`` is None on a dry run."""

    engine: str
    output: str
    dry_run: bool = False
    checked: dict[str, Any] = field(default_factory=dict)  # what the engine's checks found (images, account...)
    details: list[Detail] = field(default_factory=list)
    estimate: Cost | None = None  # before the run: what it should take and cost (a dry run stops there)
    cost_estimate: Cost | None = None  # after the run: what it took (a dry run: the upper bound)
    validation: ValidationReport | None = None
    ids: dict[str, str] = field(default_factory=dict)  # engine resources: cluster_id, step_id...
    durations_s: dict[str, float] = field(default_factory=dict)  # the flow's own steps: check, run, validate

    def detail(self, name: str) -> str | None:
        return next((d.value for d in self.details if d.name == name), None)

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

    def check(self, job: JobOptions) -> dict[str, Any]:
        """Everything that can be checked before anything costs money or time; raises with every problem found."""

    def estimate(self, job: JobOptions, checked: dict[str, Any]) -> Cost | None:
        """What the run will likely cost (None where it costs nothing)."""

    def run(self, job: JobOptions, result: RunResult) -> None:
        """Run the job to its end (output written) or raise; fills ``result`` (details, ids, cost) as it goes."""

    def filesystem(self) -> pafs.FileSystem:
        """The filesystem the output lives on, for validation and the summary."""

    def cleanup(self, flow_run_id: str, state_name: str, logger: Any) -> None:
        """End whatever this flow run left running (flow hooks: cancellation, crash, failure); never raises."""
