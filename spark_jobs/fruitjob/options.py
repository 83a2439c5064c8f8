"""One run of the job, declared once: :class:`JobOptions`.

Its fields (name, type, default, help) are the only place an option is written down. Everything else follows:

- the job's command line: :func:`build_parser` / :func:`parse_options` (``spark-submit extract_features.py ...``);
- the job's argv as an engine builds it: :func:`job_arguments` (the local ``spark-submit``, the EMR step);
- the flow's parameters and its ``python -m flows.fruit_features`` options (``flows/parameters.py``).

``parse_options(job_arguments(options)) == options`` holds for every run (tests/test_run_description.py).
Pure Python 3.9: it runs on the cluster.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from fruitjob.rules import FEATURIZERS, HEALTH_CHOICES, NEAR_DUPLICATE_THRESHOLD, READERS, TFLITE_FEATURIZERS

NAMED_WEIGHTS = ("imagenet", "random")
_ALPHA_IN_NAME = re.compile(r"_(\d+(?:\.\d+)?)_\d+(?:_no_top)?\.h5$")


def option(
    default: Any,
    help: str,
    *,
    choices: Tuple[str, ...] = (),
    path: bool = False,
    flow_help: str = "",
    flow: bool = True,
):
    """A field of :class:`JobOptions` with what the command lines need: help, choices, whether it is a path.

    ``flow_help`` replaces ``help`` where the flow means something more (an empty ``images`` makes samples).
    ``flow=False``: an option the engines set themselves (a file they staged), not a parameter of the flow.
    """
    metadata = {"help": help, "choices": choices, "path": path, "flow_help": flow_help or help, "flow": flow}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class JobOptions:
    """What to featurize, where to write it, and how: every option of the job (and of the flow's run).

    Local paths are made absolute against the working directory and alpha is resolved on construction, so that
    the same run always has the same value whoever built it.

    Example:
        >>> JobOptions(images="s3://b/in", output="s3://b/out", weights="random").featurizer
        'tflite'
    """

    images: str = option(
        None,
        "input folder or s3:// prefix, one sub-folder per label",
        path=True,
        flow_help="Folder or s3:// prefix with one sub-folder per label. Empty: sample images are made.",
    )
    output: str = option(
        None,
        "output folder or s3:// prefix",
        path=True,
        flow_help="Where features/, pca/, errors/, pca_model/ and metrics.json go. Empty: ./output/<run> "
        "(local), or under the S3Bucket block's folder (EMR).",
    )
    pca_components: Optional[int] = option(
        None,
        "number of principal components (default: 50, at most half the decodable images; given: at most one fewer "
        "than the images)",
    )
    weights: str = option(
        "imagenet",
        "imagenet (Keras download, cached in ~/.keras/models), random (seeded, offline), or a local/s3:// .h5 file",
        path=True,
    )
    alpha: Optional[float] = option(None, "MobileNetV2 width (default: from the weights file name, else 1.0)")
    batch_size: int = option(4, "images per model call in a worker (TFLite runs 1-4 as fast as more)")
    featurizer: str = option("tflite", "inference engine (tflite: docs/performance.md)", choices=FEATURIZERS)
    partitions: Optional[int] = option(None, "Spark partitions (default: sized to the input)")
    pca_model: Optional[str] = option(None, "project with this fitted pca_model/ instead of fitting", path=True)
    incremental: bool = option(False, "featurize only images not yet in the output, and append")
    overwrite: bool = option(False, "replace a run already in the output")
    seed: int = option(0, "seed of --weights random")
    reader: str = option(
        "auto",
        "how image bytes are read: auto (python workers for local files, binaryFile for object stores)",
        choices=READERS,
    )
    health: str = option(
        "on",
        "dataset health after pca/: duplicates, label conflicts, leaks, outliers, suspected mislabels (health/)",
        choices=HEALTH_CHOICES,
    )
    health_against: List[str] = option([], "earlier outputs to look for duplicates and leaks in (same feature space)")
    near_duplicate_threshold: float = option(
        NEAR_DUPLICATE_THRESHOLD,
        "cosine of the L2-normalised features from which two images count as near-duplicates "
        "(docs/performance.md, Dataset health)",
    )
    tflite_model: Optional[str] = option(
        None,
        "the TFLite model of these weights, converted and staged by the flow (fruitjob/shipped_model.py): the job "
        "checks it against the weights and imports no TensorFlow (what an EMR engine passes)",
        path=True,
        flow=False,
    )
    # The run's context, set by the flow's engine where it is known before the job starts (a job submitted by hand
    # has none): written to metrics.json; the flow run id names the holder of the output's lease (fruitjob/lock.py).
    engine: Optional[str] = option(
        None, "the engine running the job: local, emr or emr-serverless (set by the flow)", flow=False
    )
    flow_run_id: Optional[str] = option(
        None, "the flow run this job runs for, whose output lease it accepts (set by the flow)", flow=False
    )
    cluster_id: Optional[str] = option(
        None, "the EMR cluster or EMR Serverless application running the job (set by the flow)", flow=False
    )

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        for name in ("images", "output", "pca_model", "tflite_model"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, resolve_path(value))
        if self.weights not in NAMED_WEIGHTS:
            object.__setattr__(self, "weights", resolve_path(self.weights))
        object.__setattr__(self, "health_against", [resolve_path(uri) for uri in self.health_against])
        if self.alpha is None:
            object.__setattr__(self, "alpha", alpha_from_weights_name(self.weights) or 1.0)
        object.__setattr__(self, "alpha", float(self.alpha))

    def replace(self, **changes: Any) -> JobOptions:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def _problems(opts: JobOptions) -> List[str]:
    problems = []
    if not opts.images or not opts.output:
        problems.append("images and output are required")
    for name in ("pca_components", "batch_size", "partitions"):
        value = getattr(opts, name)
        if value is not None and value < 1:
            problems.append("%s must be a positive integer, got %r" % (name, value))
    if not 0.0 < opts.near_duplicate_threshold <= 1.0:
        problems.append("near_duplicate_threshold must be in (0, 1], got %r" % opts.near_duplicate_threshold)
    for item in fields():
        choices, value = item.metadata["choices"], getattr(opts, item.name)
        if choices and value not in choices:
            problems.append("%s must be one of %s, got %r" % (item.name, ", ".join(choices), value))
    if opts.overwrite and opts.incremental:
        problems.append("--overwrite and --incremental exclude each other")
    if opts.tflite_model and opts.featurizer not in TFLITE_FEATURIZERS:
        problems.append("--tflite-model is for the TFLite featurizers, not %r" % opts.featurizer)
    return problems


def fields() -> Tuple[dataclasses.Field, ...]:
    return dataclasses.fields(JobOptions)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def alpha_from_weights_name(weights: str) -> Optional[float]:
    """The alpha that Keras' MobileNetV2 weight files carry in their name, if any.

    Example:
        >>> alpha_from_weights_name("mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5")
        0.35
    """
    match = _ALPHA_IN_NAME.search(weights)
    return float(match.group(1)) if match else None


def resolve_path(uri: str) -> str:
    """A local path made absolute against the working directory (as the user typed it); URIs unchanged."""
    uri = uri.rstrip("/") or uri
    if "://" in uri or uri.startswith("file:"):
        return uri
    return os.path.abspath(uri)


REQUIRED = ("images", "output")


def value_type(name: str) -> type:
    """The plain type of a field: ``Optional[int]`` -> ``int``, ``List[str]`` -> ``str``."""
    hint = typing.get_type_hints(JobOptions)[name]
    return next((arg for arg in typing.get_args(hint) if arg is not type(None)), hint)


def is_list(name: str) -> bool:
    """A field of several values (``--health-against A B``)."""
    return typing.get_origin(typing.get_type_hints(JobOptions)[name]) is list


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="extract_features.py",
        description="MobileNetV2 features and PCA for a folder or S3 prefix of images.",
    )
    for item in fields():
        if value_type(item.name) is bool:
            parser.add_argument(flag(item.name), action="store_true", help=item.metadata["help"])
            continue
        if is_list(item.name):
            parser.add_argument(flag(item.name), nargs="+", default=[], help=item.metadata["help"])
            continue
        parser.add_argument(
            flag(item.name),
            type=value_type(item.name),
            default=item.default,
            choices=item.metadata["choices"] or None,
            required=item.name in REQUIRED,
            help=item.metadata["help"],
        )
    return parser


def parse_options(argv: Optional[List[str]] = None) -> JobOptions:
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    try:
        return JobOptions(**args)
    except ValueError as exc:
        parser.error(str(exc))
        raise  # parser.error exits; for type checkers


def job_arguments(opts: JobOptions, **replaced: Any) -> List[str]:
    """The job's own command line (what follows the script in ``spark-submit``), for every field that is set.

    ``replaced`` swaps values where the engine staged a file elsewhere (``weights="s3://.../w.h5"``) without
    resolving them again here.
    """
    values = dict(opts.as_dict(), **replaced)
    argv: List[str] = []
    for item in fields():
        value = values[item.name]
        if value_type(item.name) is bool:
            argv += [flag(item.name)] if value else []
        elif is_list(item.name):
            argv += [flag(item.name), *[str(v) for v in value]] if value else []
        elif value is not None:
            argv += [flag(item.name), repr(value) if isinstance(value, float) else str(value)]
    return argv
