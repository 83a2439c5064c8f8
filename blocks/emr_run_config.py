"""``EmrRunConfig``: what every EMR engine's block holds the same way (release, logs, tags, Spark properties, the
region price factors and the measured rate), the base of ``EmrClusterConfig`` and ``EmrServerlessConfig``."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field

from blocks.emr_prices import IMAGES_PER_VCPU_SECOND, REGION_PRICE_FACTORS


class EmrRunConfig(Block):
    """The fields an EMR cluster's block and an EMR Serverless application's block share (not saved on its own)."""

    # The AWS logo prefect-aws's blocks show.
    _logo_url = "https://cdn.sanity.io/images/3ugk85nk/production/d74b16fe84ce626345adf235a47008fea2869a60-225x225.png"

    release_label: str = Field(
        default="emr-7.13.0",
        description="EMR release (7.x: Spark 3.5, Python 3.9): the job's shipped Python environment is built for that "
        "Python. Preflight checks that EMR lists it in the region.",
    )
    log_uri: str | None = Field(
        default=None,
        description="s3:// prefix for the run's logs (a step's under <cluster>/steps/<step>/, a job run's driver "
        "stderr under applications/<id>/jobs/<id>/SPARK_DRIVER/); empty: <bucket>/<folder>/<engine>-logs/ of the "
        "S3Bucket block.",
    )
    tags: dict[str, str] = Field(
        default_factory=dict,
        description="Extra tags on what the run creates (fruitflow adds fruitflow:flow-run-id and "
        "fruitflow:created-by).",
    )
    spark_configuration: dict[str, str] = Field(
        default_factory=dict,
        description="Extra Spark properties (spark-defaults on a cluster, --conf on a job run), e.g. "
        "{'spark.executor.memory': '6g'}.",
    )
    poll_seconds: float = Field(
        default=30, gt=0, description="Delay between status checks of what the run created and of its work."
    )
    region_price_factors: dict[str, float] = Field(
        default_factory=lambda: dict(REGION_PRICE_FACTORS),
        description="Price of each region relative to the us-east-1 prices of this block; a region missing here gets "
        "no price in the estimate (only its duration and resources).",
    )
    images_per_vcpu_second: float = Field(
        default=IMAGES_PER_VCPU_SECOND,
        gt=0,
        description="Images featurized per worker vCPU and second (docs/performance.md), for the expected duration.",
    )
