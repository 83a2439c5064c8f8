"""The flow's parameters, written out: the job's options (:class:`JobParameters`) and where it runs (the engine's
settings, :data:`tasks.contract.EngineSettings`).

The Prefect UI renders each model as a form (descriptions below the fields, blocks as block pickers) and the command
line is made from the same models (flows/command_line.py). :class:`JobParameters` mirrors the job's own
:class:`fruitjob.options.JobOptions` (a plain dataclass: it runs on the cluster, without pydantic); the test
``tests/test_parameters.py`` holds them together: every option the flow passes is a field here with the same
default and help.

Deployments made before the parameters were models hold them flat (``engine: emr``, ``cluster_block: x``,
``weights: random``): :func:`nested` moves them into the models, so those deployments keep running.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from prefect import Flow
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from fruitjob.options import JobOptions
from tasks.engine_settings import EngineSettings, LocalSettings


class JobParameters(BaseModel):
    """What to featurize, where to write it, and how (the job's options: ``spark_jobs/fruitjob/options.py``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    images: str | None = Field(
        None, description="Folder or s3:// prefix with one sub-folder per label. Empty: sample images are made."
    )
    output: str | None = Field(
        None,
        description="Where features/, pca/, errors/, pca_model/ and metrics.json go. Empty: ./output/<run> "
        "(local), or under the S3Bucket block's folder (EMR).",
    )
    pca_components: int | None = Field(
        None,
        description="number of principal components (default: 50, at most half the decodable images; given: at "
        "most one fewer than the images)",
    )
    weights: str = Field(
        "imagenet",
        description="imagenet (Keras download, cached in ~/.keras/models), random (seeded, offline), or a "
        "local/s3:// .h5 file",
    )
    alpha: float | None = Field(None, description="MobileNetV2 width (default: from the weights file name, else 1.0)")
    batch_size: int = Field(4, description="images per model call in a worker (TFLite runs 1-4 as fast as more)")
    featurizer: Literal["keras", "tflite", "tflite-int8"] = Field(
        "tflite", description="inference engine (tflite: docs/performance.md)"
    )
    partitions: int | None = Field(None, description="Spark partitions (default: sized to the input)")
    pca_model: str | None = Field(None, description="project with this fitted pca_model/ instead of fitting")
    incremental: bool = Field(False, description="featurize only images not yet in the output, and append")
    overwrite: bool = Field(False, description="replace a run already in the output")
    seed: int = Field(0, description="seed of --weights random")
    reader: Literal["auto", "python", "binaryfile"] = Field(
        "auto",
        description="how image bytes are read: auto (python workers for local files, binaryFile for object stores)",
    )
    health: Literal["on", "off"] = Field(
        "on",
        description="dataset health after pca/: duplicates, label conflicts, leaks, outliers, suspected mislabels "
        "(health/)",
    )
    health_against: list[str] = Field(
        default_factory=list,
        description="earlier outputs to look for duplicates and leaks in (same feature space)",
    )
    near_duplicate_threshold: float = Field(
        0.98,
        description="cosine of the L2-normalised features from which two images count as near-duplicates "
        "(docs/performance.md, Dataset health)",
    )

    def job_options(self, images: str, output: str) -> JobOptions:
        """The job's options for a run on ``images`` into ``output`` (what the engine completed when empty)."""
        return JobOptions(**{**self.model_dump(), "images": images, "output": output})


# The flow's defaults: every job option at its default, on the local engine.
JOB_DEFAULTS = JobParameters()
LOCAL_ENGINE = LocalSettings()
ENGINE = TypeAdapter(EngineSettings)
FLOW_PARAMETERS = ("job", "engine", "dry_run")


def _former_engine(flat: dict[str, Any], kind: str) -> dict[str, Any]:
    """The engine settings of a flat parameter set; a setting the engine does not take is dropped where it says
    nothing (empty, false or the default block), and kept (so refused) where it asks for something."""
    fields = {"kind"} | set(ENGINE.validate_python({"kind": kind}).model_fields)
    settings = {"kind": kind}
    for name, value in flat.items():
        if name in fields or value not in (None, False, "", "fruitflow"):
            settings[name] = value
    return settings


def nested(parameters: dict[str, Any]) -> dict[str, Any]:
    """The flow's parameters in their models' shape, from either shape (flat: as deployments made before held them).

    Example:
        >>> nested({"engine": "emr", "cluster_block": "big", "weights": "random", "master": None})
        {'job': {'weights': 'random'}, 'engine': {'kind': 'emr', 'cluster_block': 'big'}}
    """
    engine = parameters.get("engine")
    if set(parameters) <= set(FLOW_PARAMETERS) and not isinstance(engine, str):
        return parameters  # already the models' shape
    parameters = {
        name: value.model_dump() if isinstance(value, BaseModel) else value for name, value in parameters.items()
    }
    engine = parameters.get("engine")
    job_names = set(JobParameters.model_fields)
    flat_job = {name: value for name, value in parameters.items() if name in job_names}
    flat_engine = {
        name: value for name, value in parameters.items() if name not in job_names and name not in FLOW_PARAMETERS
    }
    moved: dict[str, Any] = {name: parameters[name] for name in ("job", "dry_run") if name in parameters}
    if flat_job:
        moved["job"] = {**(moved.get("job") or {}), **flat_job}
    if isinstance(engine, str) or flat_engine:
        kind = engine if isinstance(engine, str) else (engine or {}).get("kind", "local")
        moved["engine"] = {**(engine if isinstance(engine, dict) else {}), **_former_engine(flat_engine, kind)}
    elif engine is not None:
        moved["engine"] = engine
    return moved


def engine_settings(flow_run: Any) -> EngineSettings:
    """A flow run's engine settings (a deployment stores only what it changes; the rest are the defaults)."""
    engine = nested(dict(flow_run.parameters or {})).get("engine")
    return ENGINE.validate_python(engine) if engine is not None else LOCAL_ENGINE


class FlowTakingFormerParameters(Flow):
    """A flow that also takes its parameters flat (:func:`nested`): from a deployment made before they were models,
    and from Python callers that pass ``images=...``, ``engine="emr"``."""

    def validate_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        return super().validate_parameters(nested(parameters))

    def __call__(self, *args: Any, return_state: bool = False, wait_for: Any = None, **kwargs: Any) -> Any:
        return super().__call__(*args, return_state=return_state, wait_for=wait_for, **nested(kwargs))


def flow_taking_former_parameters(**options: Any) -> Callable[[Callable[..., Any]], FlowTakingFormerParameters]:
    """``@flow(**options)``, as a :class:`FlowTakingFormerParameters`."""
    return lambda fn: FlowTakingFormerParameters(fn=fn, **options)
