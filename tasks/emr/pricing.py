"""What a cluster costs: instance-hours times the block's price table (EC2 + the EMR surcharge). An estimate."""

from __future__ import annotations

from dataclasses import dataclass

from blocks.emr_cluster_config import EmrClusterConfig

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
    def text(self) -> str:
        if self.usd is None:
            return f"no price for {', '.join(self.missing_prices)} in the block's table ({self.hours:.2f} h)"
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


def hourly_usd(config: EmrClusterConfig) -> float | None:
    """Estimated USD per hour for the whole cluster; None when a type is missing from the price table."""
    total = 0.0
    for kind, count in instance_counts(config).items():
        if kind not in config.ec2_hourly_usd or kind not in config.emr_hourly_usd:
            return None
        ec2 = config.ec2_hourly_usd[kind] * (config.spot_price_fraction if config.market == "SPOT" else 1.0)
        total += count * (ec2 + config.emr_hourly_usd[kind])
    return round(total, 4)


def estimate_cost(config: EmrClusterConfig, hours: float) -> CostEstimate:
    """Instance-hours times the price table: an estimate, not what AWS will bill.

    Example:
        >>> estimate_cost(EmrClusterConfig(), 1.0).usd
        0.72
    """
    hourly = hourly_usd(config)
    counts = instance_counts(config)
    instances = sum(counts.values())
    return CostEstimate(
        hours=round(hours, 3),
        instances=instances,
        instance_hours=round(hours * instances, 3),
        usd_per_hour=hourly,
        usd=None if hourly is None else round(hourly * hours, 2),
        market=config.market,
        missing_prices=tuple(sorted(k for k in counts if k not in config.ec2_hourly_usd)),
    )
