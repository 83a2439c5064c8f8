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
from typing import Literal

from prefect import flow, get_run_logger
from prefect_aws import AwsCredentials, S3Bucket

from flows.cli_errors import failure_message, quiet_expected_errors
from flows.command_line import parser_for
from tasks.aws_clients import s3_filesystem, s3_uri
from tasks.emr_engine import run_on_emr, terminate_on_cancel_or_crash
from tasks.input_checks import check_local_input
from tasks.job_spec import REPO_ROOT, JobSpec
from tasks.local_spark import run_local_job
from tasks.reporting import publish_summary
from tasks.sample_images import make_sample_images_task
from tasks.validation import validate_output

DEFAULT_OUTPUT_ROOT = REPO_ROOT / "output"


def _absolute(uri: str | None) -> str | None:
    """A local path resolved against the user's working directory (the job runs elsewhere); URIs unchanged."""
    if uri is None or uri in ("imagenet", "random") or "://" in uri or uri.startswith("file:"):
        return uri
    return os.path.abspath(uri)


def _run_local(spec: JobSpec) -> dict:
    check_local_input(spec.images, spec.output, spec.overwrite, spec.incremental)
    run_local_job(spec)
    report = validate_output(spec.output, images=spec.images)
    publish_summary(report, {"engine": "local"})
    return report


def _run_emr(spec: JobSpec, aws_credentials_block: str, **emr: object) -> dict:
    result = run_on_emr(spec, aws_credentials_block=aws_credentials_block, **emr)
    report = result["validation"]
    if report is None:  # a dry run: preflight and the cost estimate only
        return result
    publish_summary(report, result, s3_filesystem(AwsCredentials.load(aws_credentials_block)))
    return report | {"emr": {k: v for k, v in result.items() if k != "validation"}}


@flow(
    name="fruit-features",
    log_prints=True,
    on_cancellation=[terminate_on_cancel_or_crash],
    on_crashed=[terminate_on_cancel_or_crash],
    # Belt and braces: run_on_emr terminates in its `finally`, but a failure while provisioning can leave a
    # cluster the flow created; the hook finds it by this run's tags (never a reused or kept cluster).
    on_failure=[terminate_on_cancel_or_crash],
)
def fruit_features(
    images: str | None = None,
    output: str | None = None,
    pca_components: int = JobSpec.pca_components,
    weights: str = JobSpec.weights,
    alpha: float | None = None,
    batch_size: int = JobSpec.batch_size,
    featurizer: Literal["keras", "tflite"] = JobSpec.featurizer,
    partitions: int | None = None,
    pca_model: str | None = None,
    incremental: bool = False,
    overwrite: bool = False,
    engine: Literal["local", "emr"] = "local",
    cluster_block: str = "fruitflow",
    aws_credentials_block: str = "fruitflow",
    s3_bucket_block: str = "fruitflow",
    cluster_id: str | None = None,
    keep_cluster: bool = False,
    dry_run: bool = False,
    step_timeout_minutes: int = 180,
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
        cluster_block: EmrClusterConfig block with the cluster's shape (EMR only).
        aws_credentials_block: AwsCredentials block every AWS client is made from (EMR only).
        s3_bucket_block: S3Bucket block where the job is staged and logs go (EMR only).
        cluster_id: Run on this existing cluster; it is left running (EMR only).
        keep_cluster: Do not terminate the cluster the flow created (idle auto-termination still applies).
        dry_run: Preflight checks and a cost estimate only; nothing is created (EMR only).
        step_timeout_minutes: A step running longer is cancelled and the cluster torn down (EMR only).

    Example:
        >>> fruit_features(weights="random")  # doctest: +SKIP
    """
    logger = get_run_logger()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    if engine == "emr":
        if images is None:
            raise ValueError("the EMR engine needs --images s3://bucket/prefix (upload with `aws s3 sync`)")
        if output is None:
            bucket = S3Bucket.load(s3_bucket_block)
            output = s3_uri(bucket.bucket_name, bucket.bucket_folder, "fruitflow-output", f"run-{stamp}")
    else:
        if images is None:
            images = make_sample_images_task(str(DEFAULT_OUTPUT_ROOT / "sample-images"))
        if output is None:
            output = str(DEFAULT_OUTPUT_ROOT / f"run-{stamp}")
        images, output = _absolute(images), _absolute(output)
    weights, pca_model = _absolute(weights), _absolute(pca_model)
    spec = JobSpec(
        images=images,
        output=output,
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
    elif engine == "emr":
        report = _run_emr(
            spec,
            aws_credentials_block,
            s3_bucket_block=s3_bucket_block,
            cluster_block=cluster_block,
            cluster_id=cluster_id,
            keep_cluster=keep_cluster,
            dry_run=dry_run,
            step_timeout_minutes=step_timeout_minutes,
        )
        if dry_run:
            return report
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
    """The command line: one ``--option`` per flow parameter (names with dashes), same defaults."""
    return parser_for(fruit_features, prog="python -m flows.fruit_features")


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    # The temporary server started for this run would log an ERROR for every telemetry send it cannot make offline.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    quiet_expected_errors()
    state = fruit_features(**args, return_state=True)
    if state.is_failed() or state.is_crashed():
        print(f"fruit-features failed: {failure_message(state)}", file=sys.stderr)
        return 1
    report = state.result()
    if args["dry_run"]:
        print(f"dry run: preflight passed; cost estimate: {report['cost_estimate']}")
        return 0
    print(f"output: {report['output']}\nsummary: {report['output'].rstrip('/')}/summary.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
