"""``EmrServerlessConfig``: the EMR Serverless application a run creates (or reuses), its job's size, a price table."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from blocks.emr_run_config import EmrRunConfig

# EMR Serverless on-demand prices, us-east-1 (checked 2026-11): per vCPU-hour and per GB-hour of worker memory;
# Graviton (ARM64) is ~20 % cheaper. Ephemeral storage is billed beyond the 20 GB each worker gets free.
USD_PER_VCPU_HOUR = {"X86_64": 0.052624, "ARM64": 0.042094}
USD_PER_MEMORY_GB_HOUR = {"X86_64": 0.0057785, "ARM64": 0.004628}
USD_PER_STORAGE_GB_HOUR = 0.000111


class EmrServerlessConfig(EmrRunConfig):
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
    _documentation_url = "https://docs.aws.amazon.com/emr/latest/EMR-Serverless-UserGuide/emr-serverless.html"
    _description = "The EMR Serverless application and job run fruitflow uses: release, role, size, logs, prices."

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
    application_ready_timeout_minutes: int = Field(
        default=15, ge=1, description="How long to wait for a created application to be created and started."
    )
    poll_seconds: float = Field(default=15, gt=0, description="Delay between status checks of the application and job.")
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
    startup_minutes: float = Field(
        default=2.0,
        ge=0,
        description="Minutes from CreateApplication to running executors (not billed), for the expected duration.",
    )
