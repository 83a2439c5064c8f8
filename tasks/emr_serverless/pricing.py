"""What a job run costs: the billed vCPU-, memory- and storage-hours (GetJobRun) times the block's price table, and the
dry run's figure for this input from the measured per-vCPU rate. Estimates, not a bill."""

from __future__ import annotations

from dataclasses import dataclass, field

from blocks.emr_prices import JOB_FIXED_MINUTES
from blocks.emr_serverless_config import EmrServerlessConfig
from tasks.emr_serverless.application import STATE_WAIT_MINUTES
from tasks.emr_serverless.job_run import LOG_WAIT_MINUTES as JOB_LOG_WAIT_MINUTES

BILLED = "estimate (the job run's billed resources from GetJobRun x the block's price table; not a bill)"
EXPECTED = "estimate (images / the measured per-vCPU rate, docs/performance.md, x the block's prices; not a bill)"


@dataclass(frozen=True)
class ServerlessCost:
    """Resources (billed, expected or at most) and their price; ``usd`` is None where the table has no price."""

    vcpu_hours: float
    memory_gb_hours: float
    storage_gb_hours: float
    usd: float | None
    region: str
    label: str = BILLED
    missing_prices: tuple[str, ...] = ()  # which price the block's table lacks, when usd is None

    @property
    def resources(self) -> str:
        used = f"{self.vcpu_hours:.3g} vCPU-h, {self.memory_gb_hours:.3g} GB-h memory"
        return used + (f", {self.storage_gb_hours:.3g} GB-h storage" if self.storage_gb_hours else "")

    @property
    def missing(self) -> str:
        return ", ".join(self.missing_prices) or self.region

    @property
    def short(self) -> str:
        return f"no price (the block's price table lacks {self.missing})" if self.usd is None else f"~${self.usd:.2f}"

    @property
    def text(self) -> str:
        if self.usd is None:
            return f"no price: the block's price table lacks {self.missing} ({self.resources})"
        return f"~${self.usd:.2f} ({self.resources}; {self.label})"


def price(
    config: EmrServerlessConfig,
    region: str,
    vcpu_h: float,
    memory_gb_h: float,
    storage_gb_h: float = 0.0,
    label: str = BILLED,
) -> ServerlessCost:
    """Resource-hours times the block's prices for its architecture, in ``region``.

    Example:
        >>> price(EmrServerlessConfig(), "us-east-1", 1.0, 4.0).usd
        0.08
    """
    factor = config.region_price_factors.get(region)
    arch = config.architecture
    usd = None
    if factor is not None and arch in config.usd_per_vcpu_hour and arch in config.usd_per_memory_gb_hour:
        usd = factor * (
            vcpu_h * config.usd_per_vcpu_hour[arch]
            + memory_gb_h * config.usd_per_memory_gb_hour[arch]
            + storage_gb_h * config.usd_per_storage_gb_hour
        )
        usd = round(usd, 2)
    missing = [f"a price factor for region {region} (region_price_factors)"] if factor is None else []
    for table, name in (
        (config.usd_per_vcpu_hour, "usd_per_vcpu_hour"),
        (config.usd_per_memory_gb_hour, "usd_per_memory_gb_hour"),
    ):
        if arch not in table:
            missing.append(f"the {arch} price in {name}")
    rounded = [round(value, 4) for value in (vcpu_h, memory_gb_h, storage_gb_h)]
    return ServerlessCost(*rounded, usd=usd, region=region, label=label, missing_prices=tuple(missing))


def billed_cost(config: EmrServerlessConfig, job_run: dict, region: str) -> ServerlessCost:
    """The job run's ``billedResourceUtilization`` (rounded up by AWS, one minute at least per worker) priced."""
    billed = job_run.get("billedResourceUtilization") or {}
    return price(
        config, region, billed.get("vCPUHour", 0.0), billed.get("memoryGBHour", 0.0), billed.get("storageGBHour", 0.0)
    )


def _worker_gb(memory_gb: int) -> float:
    return memory_gb * 1.1  # spark.*.memory plus the ~10 % overhead the worker is sized (and billed) with


def billed_minutes_at_most(config: EmrServerlessConfig, timeout_minutes: float) -> dict[str, float]:
    """Every stretch workers can bill, each at its longest, for the widest job (the driver and ``max_executors``).

    The job run's workers bill from when they start to when the job run ends: worker start (``startup_minutes``)
    and at most the job run's ``executionTimeoutMinutes`` (EMR Serverless cancels it then); every worker bills one
    minute at least. Pre-initialized capacity (``initial_executors`` and a driver) bills while the application is
    started, also outside the job run: while the run waits for it to start, for a failed run's log, and to stop it.

    Example:
        >>> billed_minutes_at_most(EmrServerlessConfig(), 180)
        {'worker start': 2.0, 'execution timeout': 180}
    """
    stretches = {"worker start": config.startup_minutes, "execution timeout": max(timeout_minutes, 1)}
    if config.initial_executors:
        idle = config.application_ready_timeout_minutes + JOB_LOG_WAIT_MINUTES + 2 * STATE_WAIT_MINUTES
        stretches["pre-initialized capacity, outside the job run"] = idle
    return stretches


def upper_bound(config: EmrServerlessConfig, region: str, timeout_minutes: float) -> ServerlessCost:
    """The widest job at every stretch of :func:`billed_minutes_at_most`, priced; pre-initialized workers also for
    their time outside the job run."""
    stretches = billed_minutes_at_most(config, timeout_minutes)
    idle_hours = stretches.pop("pre-initialized capacity, outside the job run", 0.0) / 60
    job_hours = sum(stretches.values()) / 60
    vcpus = config.driver_cores + config.max_executors * config.executor_cores
    gb = _worker_gb(config.driver_memory_gb) + config.max_executors * _worker_gb(config.executor_memory_gb)
    warm_vcpus = config.driver_cores + config.initial_executors * config.executor_cores
    warm_gb = _worker_gb(config.driver_memory_gb) + config.initial_executors * _worker_gb(config.executor_memory_gb)
    vcpu_h = vcpus * job_hours + (warm_vcpus * idle_hours if config.initial_executors else 0.0)
    memory_h = gb * job_hours + (warm_gb * idle_hours if config.initial_executors else 0.0)
    return price(config, region, vcpu_h, memory_h, label=EXPECTED)


@dataclass(frozen=True)
class ServerlessEstimate:
    """The dry run's figures: what this input should take and cost, and at most (every stretch workers can bill at
    its longest: ``bound_minutes``)."""

    images: int
    minutes: float
    timeout_minutes: float
    expected: ServerlessCost
    upper_bound: ServerlessCost
    bound_minutes: dict[str, float] = field(default_factory=dict)

    @property
    def usd(self) -> float | None:
        return self.expected.usd

    @property
    def text(self) -> str:
        first = f"expected ~{self.minutes:.0f} min and {self.expected.short} ({self.expected.resources}) for "
        first += f"{self.images} images in {self.expected.region}"
        parts = " + ".join(f"{name} {value:g} min" for name, value in self.bound_minutes.items())
        bound = f"at most {self.upper_bound.short} ({parts}; the driver and every executor)"
        return f"{first}; {bound}; {EXPECTED}"


def estimate_job(config: EmrServerlessConfig, images: int, region: str, timeout_minutes: float) -> ServerlessEstimate:
    """Featurizing costs images / rate vCPU-seconds whatever the executor count; the driver and the minimum executors
    are paid for the job's fixed minutes and the featurize wall time (all ``max_executors`` at work).

    Example:
        >>> round(estimate_job(EmrServerlessConfig(), 42_749, "us-east-1", 180).minutes, 1)
        5.4
    """
    featurize_vcpu_h = images / config.images_per_vcpu_second / 3600
    featurize_minutes = images / (config.images_per_vcpu_second * config.executor_cores * config.max_executors) / 60
    job_h = (JOB_FIXED_MINUTES + featurize_minutes) / 60
    steady_vcpus = config.driver_cores + config.min_executors * config.executor_cores
    steady_gb = _worker_gb(config.driver_memory_gb) + config.min_executors * _worker_gb(config.executor_memory_gb)
    gb_per_executor_vcpu = _worker_gb(config.executor_memory_gb) / config.executor_cores
    vcpu_h = featurize_vcpu_h + steady_vcpus * job_h
    memory_h = featurize_vcpu_h * gb_per_executor_vcpu + steady_gb * job_h
    expected = price(config, region, vcpu_h, memory_h, label=EXPECTED)
    bound = upper_bound(config, region, timeout_minutes)
    minutes = config.startup_minutes + JOB_FIXED_MINUTES + featurize_minutes
    return ServerlessEstimate(
        images,
        minutes,
        timeout_minutes,
        expected=expected,
        upper_bound=bound,
        bound_minutes=billed_minutes_at_most(config, timeout_minutes),
    )
