"""``EmrServerlessConfig``: the EMR Serverless application a run creates (or reuses), its job's size, a price table."""

from __future__ import annotations

from typing import Literal

from prefect.blocks.core import Block
from pydantic import Field

from blocks.emr_prices import IMAGES_PER_VCPU_SECOND, REGION_PRICE_FACTORS

# EMR Serverless on-demand prices, us-east-1 (checked 2026-11): per vCPU-hour and per GB-hour of worker memory;
# Graviton (ARM64) is ~20 % cheaper. Ephemeral storage is billed beyond the 20 GB each worker gets free.
USD_PER_VCPU_HOUR = {"X86_64": 0.052624, "ARM64": 0.042094}
USD_PER_MEMORY_GB_HOUR = {"X86_64": 0.0057785, "ARM64": 0.004628}
USD_PER_STORAGE_GB_HOUR = 0.000111


class EmrServerlessConfig(Block):
    """How fruitflow runs the job on EMR Serverless: the application (created per run, or reused), the job's execution
    role and size, logs, tags, and the prices its cost figures multiply.

    Example:
        Load the saved settings, and save a bigger job on an existing application:
        ```python
        from blocks.emr_serverless_config import EmrServerlessConfig

        emr_serverless_config = EmrServerlessConfig.load("BLOCK_NAME")
        EmrServerlessConfig(application_id="00f1abcd2345", max_executors=40).save("fruitflow", overwrite=True)
        ```
    """

    _block_type_name = "EMR Serverless Config"
    _block_type_slug = "emr-serverless-config"
    _logo_url = "https://cdn.sanity.io/images/3ugk85nk/production/d74b16fe84ce626345adf235a47008fea2869a60-225x225.png"
    _documentation_url = "https://docs.aws.amazon.com/emr/latest/EMR-Serverless-UserGuide/emr-serverless.html"
    _description = "The EMR Serverless application and job run fruitflow uses: release, role, size, logs, prices."

    release_label: str = Field(
        default="emr-7.13.0",
        description="EMR release of the application (7.x: Spark 3.5, Python 3.9, as the cluster engine's). Preflight "
        "checks that EMR lists it in the region.",
    )
    application_id: str | None = Field(
        default=None,
        description="Run on this existing application (it is never stopped or deleted by fruitflow); empty: the flow "
        "creates one per run, tagged with the flow run id, and deletes it at the end.",
    )
    architecture: Literal["X86_64", "ARM64"] = Field(
        default="X86_64",
        description="CPU of a created application. ARM64 (Graviton) costs ~20 % less but needs an ARM64 Python "
        "environment archive.",
    )
    initial_executors: int = Field(
        default=0,
        ge=0,
        description="Pre-initialized executors (with one driver) kept warm while a created application is started: "
        "jobs start in seconds, but they are billed while idle. 0 (default): off.",
    )
    max_vcpus: int = Field(default=64, ge=1, description="Maximum capacity of a created application: vCPUs.")
    max_memory_gb: int = Field(default=256, ge=1, description="Maximum capacity of a created application: memory, GB.")
    auto_stop_idle_minutes: int = Field(
        default=15,
        ge=1,
        description="A created application stops after this many idle minutes: the safety net if the flow dies "
        "without cleanup (a stopped application without initial capacity costs nothing).",
    )
    execution_role_arn: str = Field(
        default="EMRServerlessS3RuntimeRole",
        description="IAM role the job runs as (ARN, or a role name in the credentials' account). It must trust "
        "emr-serverless.amazonaws.com and read the images, staged job and write the output and logs.",
    )
    driver_cores: int = Field(default=2, ge=1, le=16, description="spark.driver.cores (1, 2, 4, 8 or 16 vCPUs).")
    driver_memory_gb: int = Field(
        default=8, ge=1, le=108, description="spark.driver.memory in GB; the worker adds ~10 % overhead."
    )
    executor_cores: int = Field(default=4, ge=1, le=16, description="spark.executor.cores (1, 2, 4, 8 or 16 vCPUs).")
    executor_memory_gb: int = Field(
        default=14,
        ge=1,
        le=108,
        description="spark.executor.memory in GB; the worker adds ~10 % overhead (4 vCPUs allow 8-30 GB in all).",
    )
    min_executors: int = Field(default=1, ge=0, description="spark.dynamicAllocation.minExecutors.")
    max_executors: int = Field(
        default=10, ge=1, description="spark.dynamicAllocation.maxExecutors: the job never uses more executors."
    )
    log_uri: str | None = Field(
        default=None,
        description="s3:// prefix for the job runs' logs (driver stderr under applications/<id>/jobs/<id>/"
        "SPARK_DRIVER/); empty: <bucket>/<folder>/emr-serverless-logs/ of the S3Bucket block.",
    )
    tags: dict[str, str] = Field(
        default_factory=dict,
        description="Extra tags on the application and job run (fruitflow adds fruitflow:flow-run-id and "
        "fruitflow:created-by).",
    )
    spark_configuration: dict[str, str] = Field(
        default_factory=dict, description="Extra --conf properties for the job run, e.g. {'spark.task.cpus': '1'}."
    )
    application_ready_timeout_minutes: int = Field(
        default=15, ge=1, description="How long to wait for a created application to be created and started."
    )
    poll_seconds: int = Field(default=15, ge=1, description="Delay between status checks of the application and job.")
    usd_per_vcpu_hour: dict[str, float] = Field(
        default_factory=lambda: dict(USD_PER_VCPU_HOUR),
        description="USD per billed vCPU-hour by architecture, us-east-1, for the cost estimate (not a bill).",
    )
    usd_per_memory_gb_hour: dict[str, float] = Field(
        default_factory=lambda: dict(USD_PER_MEMORY_GB_HOUR),
        description="USD per billed memory GB-hour by architecture, us-east-1, for the cost estimate (not a bill).",
    )
    usd_per_storage_gb_hour: float = Field(
        default=USD_PER_STORAGE_GB_HOUR,
        ge=0,
        description="USD per billed storage GB-hour (beyond 20 GB per worker), for the cost estimate (not a bill).",
    )
    region_price_factors: dict[str, float] = Field(
        default_factory=lambda: dict(REGION_PRICE_FACTORS),
        description="Price of each region relative to the us-east-1 prices above; a region missing here gets no "
        "price in the estimate (only its resources).",
    )
    images_per_vcpu_second: float = Field(
        default=IMAGES_PER_VCPU_SECOND,
        gt=0,
        description="Images featurized per executor vCPU and second (docs/performance.md), for the dry run's estimate.",
    )
    startup_minutes: float = Field(
        default=2.0,
        ge=0,
        description="Minutes from CreateApplication to running executors (not billed), for the expected duration.",
    )
