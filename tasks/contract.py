"""The engine contract: how an engine is configured (its settings), what its checks find (:class:`Preflight`), what
its run gives back (:class:`RunOutcome`), and the one result every engine (and a dry run) returns.

An engine is chosen by its settings' ``kind`` (``--engine``) from ``tasks.registry``. Adding one means: a package
under ``tasks/`` with a class that implements :class:`Engine`, a settings model below (added to
:data:`EngineSettings`), and one line in the registry (docs/architecture.md).

The settings are pydantic models: the flow takes them as its ``engine`` parameter (the UI renders each as a form,
its blocks as block pickers) and the command line is made from their fields (flows/command_line.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, Protocol

from prefect.blocks.core import Block
from prefect_aws import AwsCredentials, S3Bucket
from pyarrow import fs as pafs
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from blocks.emr_cluster_config import EmrClusterConfig
from blocks.emr_serverless_config import EmrServerlessConfig
from fruitjob.options import JobOptions
from tasks.validation import ValidationReport

ENGINE_NAMES = ("local", "emr", "emr-serverless")
DEFAULT_BLOCK = "fruitflow"  # the name `python -m blocks.create_blocks` gives every block it makes


def block_name(value: Any) -> Any:
    """A block chosen in the UI (a reference, or the block Prefect loaded from it) -> its name; a name stays.

    Engines load their blocks by name when they need them, so that a flow hook can still end what a run left
    running when a block has gone (tasks/aws/backend.py).
    """
    if isinstance(value, dict) and "$ref" in value:  # the parameter as the server stores it
        value = Block.load_from_ref(value["$ref"])
    if isinstance(value, Block):
        name = getattr(value, "_block_document_name", None)
        if not name:
            raise ValueError("give a saved block (its document is loaded by name), not one made in Python")
        return name
    return value


# A block parameter: the UI shows a picker of the saved blocks of that type; the command line takes a name.
ClusterBlock = Annotated[EmrClusterConfig | str, BeforeValidator(block_name)]
ServerlessBlock = Annotated[EmrServerlessConfig | str, BeforeValidator(block_name)]
CredentialsBlock = Annotated[AwsCredentials | str, BeforeValidator(block_name)]
BucketBlock = Annotated[S3Bucket | str, BeforeValidator(block_name)]


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _refuse_other_engines_settings(cls, data: Any) -> Any:
        """A setting of another engine (--cluster-id with --engine local) is refused, saying whose it is."""
        if not isinstance(data, dict):
            return data
        kind = cls.model_fields["kind"].default
        reasons = []
        for name in [name for name in data if name not in cls.model_fields]:
            owners = [
                f"--engine {other.model_fields['kind'].default}"
                for other in ENGINE_SETTINGS
                if name in other.model_fields
            ]
            option = "--" + name.replace("_", "-")
            whose = f"is for {' or '.join(owners)}, not --engine {kind}" if owners else "is no setting of any engine"
            reasons.append(f"{option} {whose}")
        if reasons:
            raise ValueError("; ".join(reasons))
        return data


class LocalSettings(_Settings):
    """Spark on this machine (``local[N,2]``), or on the Spark cluster ``master`` names."""

    kind: Literal["local"] = "local"
    master: str | None = Field(
        None,
        description="Spark master URL for the local engine (standalone, YARN, k8s); empty: local[N,2] on this machine.",
    )


class _AwsSettings(_Settings):
    aws_credentials_block: CredentialsBlock = Field(
        DEFAULT_BLOCK,
        description="AwsCredentials block every AWS client is made from (a name on the command line; default: the "
        "block named fruitflow).",
    )
    s3_bucket_block: BucketBlock = Field(
        DEFAULT_BLOCK,
        description="S3Bucket block where the job is staged and logs go (a name on the command line; default: the "
        "block named fruitflow).",
    )
    step_timeout_minutes: int = Field(
        180,
        description="A step or job run running longer is cancelled and what the flow created torn down.",
    )


class EmrSettings(_AwsSettings):
    """An EMR cluster the flow creates and terminates (or ``cluster_id``, reused and left running)."""

    kind: Literal["emr"] = "emr"
    cluster_block: ClusterBlock = Field(
        DEFAULT_BLOCK,
        description="EmrClusterConfig block with the cluster's shape (a name on the command line; default: the "
        "block named fruitflow).",
    )
    cluster_id: str | None = Field(None, description="Run on this existing cluster; it is left running.")
    keep_cluster: bool = Field(
        False, description="Do not terminate the cluster the flow created (idle auto-termination still applies)."
    )


class EmrServerlessSettings(_AwsSettings):
    """A job run on an EMR Serverless application the flow creates and deletes (or the block's, reused)."""

    kind: Literal["emr-serverless"] = "emr-serverless"
    serverless_block: ServerlessBlock = Field(
        DEFAULT_BLOCK,
        description="EmrServerlessConfig block: application, execution role, job size (a name on the command line; "
        "default: the block named fruitflow).",
    )


ENGINE_SETTINGS = (LocalSettings, EmrSettings, EmrServerlessSettings)
# Where the job runs: one of the engines' settings, told apart by ``kind`` (--engine on the command line).
EngineSettings = Annotated[LocalSettings | EmrSettings | EmrServerlessSettings, Field(discriminator="kind")]


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
