"""The ``fruit-features`` flow: images in, features + PCA out, locally or on an EMR cluster it manages.

Run it::

    python -m flows.fruit_features --images DIR --output DIR [--weights random] [--engine local|emr]

Without ``--images`` it makes a small set of sample images and writes to ``./output/<run>``.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger

from tasks.input_checks import check_local_input
from tasks.job_spec import REPO_ROOT, JobSpec
from tasks.local_spark import run_local_job
from tasks.reporting import publish_summary
from tasks.sample_images import make_sample_images_task
from tasks.validation import validate_output

DEFAULT_OUTPUT_ROOT = REPO_ROOT / "output"


def _absolute(uri: str) -> str:
    return uri if "://" in uri or uri.startswith("file:") else os.path.abspath(uri)


def _run_local(spec: JobSpec) -> dict:
    check_local_input(spec.images, spec.output, spec.overwrite, spec.incremental)
    run_local_job(spec)
    report = validate_output(spec.output)
    publish_summary(report, {"engine": "local"})
    return report


@flow(name="fruit-features", log_prints=True)
def fruit_features(
    images: str | None = None,
    output: str | None = None,
    pca_components: int = 50,
    weights: str = "imagenet",
    alpha: float | None = None,
    batch_size: int = 16,
    featurizer: str = "keras",
    partitions: int | None = None,
    pca_model: str | None = None,
    incremental: bool = False,
    overwrite: bool = False,
    engine: Literal["local", "emr"] = "local",
) -> dict:
    """MobileNetV2 features and a PCA for a folder (local) or S3 prefix (EMR) of fruit images.

    Args:
        images: Folder or s3:// prefix with one sub-folder per label. Empty: sample images are made.
        output: Where features/, pca/, errors/, pca_model/ and metrics.json go. Empty: ./output/<run>.
        pca_components: Number of principal components (fewer when there are fewer images).
        weights: `imagenet` (Keras download), `random` (seeded, offline demo) or a local/s3:// .h5 file.
        alpha: MobileNetV2 width; empty: from the weights file name, else 1.0.
        batch_size: Images per model call in a worker.
        featurizer: Inference engine: keras or tflite.
        partitions: Spark partitions; empty: sized to the input.
        pca_model: A fitted pca_model/ to project with instead of fitting a new PCA.
        incremental: Featurize only images not yet in the output, and append.
        overwrite: Replace a finished run in the output.
        engine: `local` (Spark on this machine) or `emr` (a cluster the flow creates and tears down).

    Example:
        >>> fruit_features(weights="random")  # doctest: +SKIP
    """
    logger = get_run_logger()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    if images is None:
        images = make_sample_images_task(str(DEFAULT_OUTPUT_ROOT / "sample-images"))
    if output is None:
        output = str(DEFAULT_OUTPUT_ROOT / f"run-{stamp}")
    spec = JobSpec(
        images=_absolute(images),
        output=_absolute(output),
        pca_components=pca_components,
        weights=weights,
        alpha=alpha,
        batch_size=batch_size,
        featurizer=featurizer,
        partitions=partitions,
        pca_model=pca_model,
        incremental=incremental,
        overwrite=overwrite,
    )
    if engine == "local":
        report = _run_local(spec)
    else:
        raise ValueError(f"unknown engine {engine!r}; expected local or emr")
    m = report["metrics"]
    logger.info(
        "done: %d images ok, %d failed, %d components explain %.3f; output %s",
        m["images_ok"],
        m["images_failed"],
        m["pca_components"],
        m["explained_variance_total"],
        spec.output,
    )
    return report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m flows.fruit_features", description=fruit_features.description)
    parser.add_argument("--images", help="input folder or s3:// prefix (default: generated sample images)")
    parser.add_argument("--output", help="output folder or s3:// prefix (default: ./output/run-<time>)")
    parser.add_argument("--pca-components", type=int, default=50)
    parser.add_argument("--weights", default="imagenet", help="imagenet | random | PATH (.h5, local or s3://)")
    parser.add_argument("--alpha", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--featurizer", choices=["keras", "tflite"], default="keras")
    parser.add_argument("--partitions", type=int, default=None)
    parser.add_argument("--pca-model", default=None)
    parser.add_argument("--incremental", action="store_true")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--engine", choices=["local", "emr"], default="local")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    state = fruit_features(**args, return_state=True)
    if state.is_failed() or state.is_crashed():
        print(f"fruit-features failed: {state.message}", file=sys.stderr)
        return 1
    report = state.result()
    print(f"output: {report['output']}\nsummary: {Path(report['output']) / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
