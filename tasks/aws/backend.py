"""The contract of an AWS engine's backend: the few things that differ between a cluster and a step (EMR) and an
application and a job run (EMR Serverless), and the blocks every backend reads the same way.

A backend has a *place* where work runs (a cluster, an application: created by the run or reused) and a *run*
there (a step, a job run). A third backend (EMR on EKS: a virtual cluster and a job run) is a package under
``tasks/`` with a subclass of :class:`tasks.aws.remote.RemoteEngine` implementing these methods, a block for its
settings and one line in ``tasks/registry.py`` (docs/architecture.md).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

from prefect import get_run_logger
from prefect.blocks.core import Block
from prefect_aws import S3Bucket

from fruitjob.options import JobOptions
from tasks.aws.clients import AwsClients
from tasks.aws.remote_wait import RunWatch
from tasks.aws.s3_uris import s3_uri
from tasks.contract import Cost, Preflight
from tasks.engine_settings import EngineSettings
from tasks.errors import FruitflowError, MissingBlock, load_block


@dataclass
class Place:
    """Where the run's work runs (a cluster, an application): created by this run, or reused and left running.

    ``id`` is None until provisioning has answered; ``kept``: created, and left running at the end (--keep-cluster).
    """

    id: str | None
    created: bool
    kept: bool = False

    @property
    def ended_with_the_run(self) -> bool:
        return self.created and not self.kept


@dataclass
class Staged:
    """What the run staged in S3, for the backend's submit request."""

    script: str
    py_files: str
    environment: str | None
    environment_sha256: str | None
    job_args: list[str]  # the job's own arguments, staged URIs in them
    token: str  # the run's token (tasks/aws/run_names.py)


@dataclass(frozen=True)
class Words:
    """How messages name an engine (``label``: "EMR"), its place ("cluster") and its run ("step"); ``console``:
    the place's page in the EMR console ("clusterDetails")."""

    label: str
    place: str
    run: str
    console: str


@dataclass(frozen=True)
class ConfigBlock:
    """A backend's settings block: its type, and the :class:`EngineSettings` field that names it."""

    block_type: type[Block]
    setting: str  # "cluster_block": the flow's parameter, --cluster-block on the command line

    def load(self, settings: EngineSettings) -> Any:
        return load_block(self.block_type, getattr(settings, self.setting), "--" + self.setting.replace("_", "-"))


class RemoteBackend(ABC):
    """What differs between AWS engines; :class:`tasks.aws.remote.RemoteEngine` runs the lifecycle around it."""

    name: ClassVar[str]
    words: ClassVar[Words]  # how messages name the engine, its place and its run
    config_block: ClassVar[ConfigBlock]

    def __init__(self, settings: EngineSettings, aws: AwsClients | None = None) -> None:
        self.settings = settings
        if aws is not None:
            self.__dict__["aws"] = aws

    @property
    @abstractmethod
    def reused_id(self) -> str | None:
        """The place to run on instead of creating one (left running), if the user named one."""

    @property
    def keeps(self) -> bool:
        """Whether a place this run creates is left running at the end."""
        return False

    @abstractmethod
    def check(self, job: JobOptions) -> Preflight:
        """The backend's preflight: everything checked before anything costs money; raises with every problem."""

    @abstractmethod
    def expected_cost(self, images: int) -> Cost:
        """What a run over ``images`` should take and cost, with its upper bound."""

    @abstractmethod
    def pip_architecture(self) -> str:
        """pip's name for the place's CPU (``x86_64``, ``aarch64``): what the shipped environment is built for."""

    def extra_packages(self) -> list[str]:
        return []

    @abstractmethod
    def create_place(self, flow_run_id: str, name: str, max_age_hours: float) -> str:
        """Send the create request (tagged with the flow run, named ``name``); the new place's id."""

    @abstractmethod
    def wait_until_ready(self, place_id: str) -> None:
        """Wait until the place can run work; a botocore ``WaiterError`` when it does not in time."""

    @abstractmethod
    def not_ready(self, place_id: str) -> FruitflowError:
        """Why the place is not ready (the service's reason); one that may still bill is ended first."""

    def console_url(self, place_id: str) -> str:
        """The place's page in the AWS console, for the summary and the log."""
        region = self.aws.region
        return f"https://{region}.console.aws.amazon.com/emr/home?region={region}#/{self.words.console}/{place_id}"

    @abstractmethod
    def ready_timeout_minutes(self) -> float:
        """How long provisioning may take (a term of the run's age limit and cost bound)."""

    @abstractmethod
    def submit(self, place: Place, staged: Staged, flow_run_id: str, checked: Preflight) -> str:
        """Submit the run once (a retry finds it by its name); its id."""

    @abstractmethod
    def watch(self, place_id: str, run_id: str) -> RunWatch:
        """The run as waiter data."""

    @abstractmethod
    def log_hint(self, place_id: str, run_id: str) -> str:
        """Where the run's logs will be, for the log line after submitting."""

    @abstractmethod
    def find_run_places(self, flow_run_id: str) -> list[str]:
        """The active places this flow run created (by its tags)."""

    @abstractmethod
    def end_place(self, place_id: str, logger: Any) -> None:
        """End a place and wait until it no longer bills (and no longer runs anything)."""

    @abstractmethod
    def cancel_run_work(self, place_id: str, flow_run_id: str) -> list[str]:
        """Cancel this flow run's live work on a place left running; the ids cancelled."""

    @abstractmethod
    def cost(self, place: Place, run_id: str | None, started: float) -> Cost | None:
        """What the run cost (an estimate), after it; may raise (the lifecycle logs it and goes on)."""

    def note_kept(self, place_id: str) -> None:
        """Said when a created place is left running (--keep-cluster)."""
        get_run_logger().warning("keeping %s %s (--keep-cluster): end it yourself", self.words.place, place_id)

    # --- what every backend reads the same way

    @cached_property
    def aws(self) -> AwsClients:
        return AwsClients.from_block(self.settings.aws_credentials_block)

    @cached_property
    def bucket(self) -> S3Bucket:
        return load_block(S3Bucket, self.settings.s3_bucket_block, "--s3-bucket-block")

    @cached_property
    def config(self) -> Any:
        return self.config_block.load(self.settings)

    @property
    def poll_seconds(self) -> float:
        try:
            return self.config.poll_seconds
        except MissingBlock:  # the block is gone (a hook): end what the tags say is ours at the block's default pace
            return self.config_block.block_type.model_fields["poll_seconds"].default

    @property
    def log_uri(self) -> str:
        return (
            self.config.log_uri or s3_uri(self.bucket.bucket_name, self.bucket.bucket_folder, f"{self.name}-logs") + "/"
        )
