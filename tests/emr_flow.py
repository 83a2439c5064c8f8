"""A tiny flow around the EMR engine, wired the way ``flows/fruit_features.py`` wires it, for the EMR tests."""

from __future__ import annotations

from prefect import flow

from tasks.emr_engine import run_on_emr, terminate_on_cancel_or_crash
from tasks.job_spec import JobSpec


@flow(
    name="fruit-features-emr-test",
    on_cancellation=[terminate_on_cancel_or_crash],
    on_crashed=[terminate_on_cancel_or_crash],
)
def emr_test_flow(
    images: str,
    output: str,
    engine: str = "emr",
    aws_credentials_block: str = "fruitflow",
    s3_bucket_block: str = "fruitflow",
    cluster_block: str = "fruitflow",
    cluster_id: str | None = None,
    keep_cluster: bool = False,
    dry_run: bool = False,
    step_timeout_minutes: int = 10,
    weights: str = "random",
    overwrite: bool = False,
) -> dict:
    """The EMR half of fruit-features with the test job options (random weights, alpha 0.35, 4 components)."""
    spec = JobSpec(
        images=images, output=output, pca_components=4, weights=weights, alpha=0.35, batch_size=8, overwrite=overwrite
    )
    return run_on_emr(
        spec,
        aws_credentials_block=aws_credentials_block,
        s3_bucket_block=s3_bucket_block,
        cluster_block=cluster_block,
        cluster_id=cluster_id,
        keep_cluster=keep_cluster,
        dry_run=dry_run,
        step_timeout_minutes=step_timeout_minutes,
    )
