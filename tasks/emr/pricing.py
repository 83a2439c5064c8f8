"""What a cluster costs: instance-hours times the block's price table (EC2 + the EMR surcharge). An estimate."""

from __future__ import annotations

from dataclasses import dataclass, field

from blocks.emr_cluster_config import EmrClusterConfig
from blocks.emr_prices import JOB_FIXED_MINUTES
from tasks.emr.cluster import TERMINATE_WAIT_MINUTES
from tasks.emr.steps import LOG_WAIT_MINUTES

LABEL = "estimate (instance-hours x the block's price table; not a bill)"


@dataclass(frozen=True)
class CostEstimate:
    hours: float
    instances: int
    instance_hours: float
    usd_per_hour: float | None
    usd: float | None
    market: str
    missing_prices: tuple[str, ...] = ()
    label: str = LABEL

    @property
    def missing(self) -> str:
        return ", ".join(self.missing_prices) or "this cluster"

    @property
    def text(self) -> str:
        if self.usd is None:
            return f"no price: the block's price table lacks {self.missing} ({self.hours:.2f} h)"
        return f"~${self.usd:.2f} ({self.instance_hours:g} instance-hours at ${self.usd_per_hour}/h; {self.label})"


def instance_counts(config: EmrClusterConfig) -> dict[str, int]:
    """Instances per EC2 type over the whole cluster."""
    counts: dict[str, int] = {}
    for kind, count in (
        (config.master_instance_type, config.master_instance_count),
        (config.core_instance_type, config.core_instance_count),
    ):
        counts[kind] = counts.get(kind, 0) + count
    return counts


def hourly_usd(config: EmrClusterConfig, region: str = "us-east-1") -> float | None:
    """Estimated USD per hour for the whole cluster in ``region``; None when a type or the region has no price."""
    if region not in config.region_price_factors:
        return None
    factor = config.region_price_factors[region]
    total = 0.0
    for kind, count in instance_counts(config).items():
        if kind not in config.ec2_hourly_usd or kind not in config.emr_hourly_usd:
            return None
        ec2 = config.ec2_hourly_usd[kind] * (config.spot_price_fraction if config.market == "SPOT" else 1.0)
        total += count * (ec2 + config.emr_hourly_usd[kind]) * factor
    return round(total, 4)


def estimate_cost(config: EmrClusterConfig, hours: float, region: str = "us-east-1") -> CostEstimate:
    """Instance-hours times the price table: an estimate, not what AWS will bill.

    Example:
        >>> estimate_cost(EmrClusterConfig(), 1.0).usd
        0.72
    """
    hourly = hourly_usd(config, region)
    counts = instance_counts(config)
    instances = sum(counts.values())
    return CostEstimate(
        hours=round(hours, 3),
        instances=instances,
        instance_hours=round(hours * instances, 3),
        usd_per_hour=hourly,
        usd=None if hourly is None else round(hourly * hours, 2),
        market=config.market,
        missing_prices=missing_prices(config, region),
    )


def missing_prices(config: EmrClusterConfig, region: str) -> tuple[str, ...]:
    """Which prices the block's table lacks for this cluster: an instance type's EC2 price or EMR surcharge (both are
    billed), or the region's factor; each named, so the user knows which field of the block to fill in."""
    missing = []
    for kind in sorted(instance_counts(config)):
        if kind not in config.ec2_hourly_usd:
            missing.append(f"the EC2 price of {kind} (ec2_hourly_usd)")
        if kind not in config.emr_hourly_usd:
            missing.append(f"the EMR surcharge of {kind} (emr_hourly_usd)")
    if region not in config.region_price_factors:
        missing.append(f"a price factor for region {region} (region_price_factors)")
    return tuple(missing)


def billed_minutes_at_most(config: EmrClusterConfig, step_timeout_minutes: float) -> dict[str, float]:
    """Every stretch a created cluster can bill, each at its longest: what the run's waits allow before it gives up.

    The cluster bills from RunJobFlow: while provisioning (``cluster_ready_timeout_minutes``), while the step runs
    (``--step-timeout-minutes``, then it is cancelled), while a failed step's log is awaited, and until EMR reports
    TERMINATED. Each wait may overrun its timeout by one poll.

    Example:
        >>> sum(billed_minutes_at_most(EmrClusterConfig(), 180).values())
        248.5
    """
    poll_minutes = config.poll_seconds / 60
    return {
        "provisioning": config.cluster_ready_timeout_minutes + poll_minutes,
        "step": step_timeout_minutes + 2 * poll_minutes,  # two waits: the step started, then ended
        "log wait": LOG_WAIT_MINUTES + poll_minutes,
        "termination": TERMINATE_WAIT_MINUTES + poll_minutes,
    }


@dataclass(frozen=True)
class RunEstimate:
    """What a run should take and cost, for this input, before anything is created; and at most (every wait of the
    run at its timeout: ``bound_minutes``)."""

    images: int
    minutes: float | None  # None: an instance type without a vCPU count in the block
    expected: CostEstimate | None
    upper_bound: CostEstimate
    region: str
    bound_minutes: dict[str, float] = field(default_factory=dict)

    @property
    def usd(self) -> float | None:
        return self.expected.usd if self.expected else None

    @property
    def text(self) -> str:
        if self.minutes is None:
            first = f"no duration estimate: a core type has no vCPU count in the block ({self.images} images)"
        elif self.usd is None:
            first = f"expected ~{self.minutes:.0f} min for {self.images} images; "
            first += f"no price: the block's price table lacks {self.upper_bound.missing}"
        else:
            first = f"expected ~{self.minutes:.0f} min and ~${self.usd:.2f} for {self.images} images in {self.region}"
        parts = " + ".join(f"{name} {value:g}" for name, value in self.bound_minutes.items())
        minutes = f"{self.upper_bound.hours * 60:.0f} min ({parts} min, each wait at its timeout)"
        if self.upper_bound.usd is None:
            return f"{first}; at most {minutes}"
        return f"{first}; at most ~${self.upper_bound.usd:.2f} for {minutes}"


def expected_minutes(config: EmrClusterConfig, images: int) -> float | None:
    """Provisioning + the job's fixed costs + images / (the measured rate per vCPU x the core nodes' vCPUs)."""
    vcpus = config.vcpus.get(config.core_instance_type)
    if vcpus is None:
        return None
    rate = config.images_per_vcpu_second * vcpus * config.core_instance_count
    return config.provisioning_minutes + JOB_FIXED_MINUTES + images / rate / 60


def estimate_run(config: EmrClusterConfig, images: int, region: str, timeout_minutes: float) -> RunEstimate:
    """The expected duration and cost for ``images`` (region-aware), and the upper bound: every stretch a created
    cluster can bill at its timeout (:func:`billed_minutes_at_most`)."""
    minutes = expected_minutes(config, images)
    expected = None if minutes is None else estimate_cost(config, minutes / 60, region)
    stretches = billed_minutes_at_most(config, timeout_minutes)
    bound = estimate_cost(config, sum(stretches.values()) / 60, region)
    return RunEstimate(
        images=images, minutes=minutes, expected=expected, upper_bound=bound, region=region, bound_minutes=stretches
    )
