"""``EmrClusterConfig``: the shape of the EMR cluster a run creates, and the price table for its cost estimate."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from blocks.emr_prices import EC2_HOURLY_USD, EMR_HOURLY_USD, PROVISIONING_MINUTES, VCPUS
from blocks.emr_run_config import EmrRunConfig

# Graviton (arm64) types: a "g" right after the generation digit (m7g, c7g, m8g, r7g, c6gn, m7gd, x2gd, t4g), and a1.
_GRAVITON = re.compile(r"^(a1|[a-z]+\d+g[a-z]*)\.")


def instance_architecture(instance_type: str) -> str:
    """pip's name for an EC2 type's CPU architecture: ``aarch64`` for Graviton, else ``x86_64``.

    Example:
        >>> instance_architecture("m7g.xlarge"), instance_architecture("m5.xlarge")
        ('aarch64', 'x86_64')
    """
    return "aarch64" if _GRAVITON.match(instance_type) else "x86_64"


# The nodes' profile that docs/emr.md creates: S3 on the bucket's prefixes only. AWS's default, created by
# `aws emr create-default-roles`, carries AmazonElasticMapReduceforEC2Role (every bucket, DynamoDB, SQS, ...).
DEDICATED_INSTANCE_PROFILE = "fruitflow-emr-ec2"
BROAD_INSTANCE_PROFILE = "EMR_EC2_DefaultRole"


class EmrClusterConfig(EmrRunConfig):
    """How fruitflow builds the EMR cluster for a run: release, shape, network, roles, logs, safety net, price.

    Example:
        Load the saved shape, and save one of 1 master and 4 core spot nodes:
        ```python
        from blocks.emr_cluster_config import EmrClusterConfig

        emr_cluster_config = EmrClusterConfig.load("BLOCK_NAME")
        EmrClusterConfig(core_instance_count=4, market="SPOT").save("fruitflow", overwrite=True)
        ```
    """

    _block_type_name = "EMR Cluster Config"
    _block_type_slug = "emr-cluster-config"
    # What EMR itself documents about a cluster's shape (the repo's own page is docs/emr.md).
    _documentation_url = "https://docs.aws.amazon.com/emr/latest/ManagementGuide/emr-plan.html"
    _description = "The EMR cluster fruitflow creates for a run: shape, roles, network, logs and a price table."

    master_instance_count: int = Field(default=1, ge=1, le=1, description="Master nodes: 1 (no HA master).")
    master_instance_type: str = Field(
        default="m5.xlarge",
        description="EC2 type of the master (driver) node; x86 (m5, c6i...) or Graviton (m7g, c7g, m8g...), as the "
        "core nodes.",
    )
    core_instance_type: str = Field(
        default="m5.xlarge",
        description="EC2 type of the core (worker) nodes, of the master's architecture (x86_64 or Graviton arm64).",
    )
    core_instance_count: int = Field(default=2, ge=1, description="Number of core (worker) nodes.")
    market: Literal["ON_DEMAND", "SPOT"] = Field(
        default="ON_DEMAND",
        description="ON_DEMAND, or SPOT (cheaper, but AWS may reclaim nodes and fail the step).",
    )
    subnet_id: str | None = Field(
        default=None, description="VPC subnet for the cluster; empty: the default VPC's default subnet."
    )
    key_pair_name: str | None = Field(
        default=None,
        description="EC2 key pair for SSH to the master (optional; preflight checks it exists in the region).",
    )
    service_role: str = Field(
        default="EMR_DefaultRole", description="IAM service role EMR assumes (`aws emr create-default-roles`)."
    )
    instance_profile: str = Field(
        default=DEDICATED_INSTANCE_PROFILE,
        description=(
            "EC2 instance profile of the nodes: the dedicated one of docs/emr.md (reads and writes only the bucket's "
            f"prefixes). {BROAD_INSTANCE_PROFILE} works too, but its managed policy is broad: preflight warns."
        ),
    )
    idle_timeout_minutes: int = Field(
        default=30,
        ge=1,
        le=10080,
        description="Auto-termination after this many idle minutes: the safety net if the flow dies without cleanup.",
    )
    bootstrap_packages: list[str] = Field(
        default_factory=list,
        description="Extra pip requirements built into the job's Python environment (the archive each step ships; "
        "nothing is installed on the nodes), e.g. ['scipy==1.13.1']: each needs a wheel for Python 3.9 on the "
        "cluster's architecture.",
    )
    cluster_ready_timeout_minutes: int = Field(
        default=30, ge=1, description="How long to wait for a new cluster to be ready before giving up."
    )
    ec2_hourly_usd: dict[str, float] = Field(
        default_factory=lambda: dict(EC2_HOURLY_USD),
        description="EC2 on-demand USD per instance-hour by type, for the cost estimate (not a bill).",
    )
    spot_price_fraction: float = Field(
        default=0.4, gt=0, le=1, description="Spot price as a fraction of on-demand EC2, for the estimate."
    )
    emr_hourly_usd: dict[str, float] = Field(
        default_factory=lambda: dict(EMR_HOURLY_USD),
        description="EMR surcharge USD per instance-hour by type, for the cost estimate (not a bill).",
    )
    vcpus: dict[str, int] = Field(
        default_factory=lambda: dict(VCPUS), description="vCPUs per EC2 type, for the run's expected duration."
    )
    provisioning_minutes: float = Field(
        default=PROVISIONING_MINUTES,
        ge=0,
        description="Minutes from RunJobFlow to a ready cluster, for the expected duration.",
    )

    @model_validator(mode="after")
    def _one_architecture(self) -> EmrClusterConfig:
        kinds = {"master": self.master_instance_type, "core": self.core_instance_type}
        if len({instance_architecture(kind) for kind in kinds.values()}) > 1:
            shown = ", ".join(f"{role} {kind} ({instance_architecture(kind)})" for role, kind in kinds.items())
            raise ValueError(
                f"all instance types of one cluster must share an architecture: {shown}. The job's Python environment "
                "is built for one; choose Graviton types (m7g, c7g, m8g) for both or x86 types for both"
            )
        return self

    @property
    def architecture(self) -> str:
        """``x86_64`` or ``aarch64``: what the job's Python environment is built for."""
        return instance_architecture(self.master_instance_type)
