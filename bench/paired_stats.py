"""The arithmetic of ``bench/paired.py``, free of processes and files: busy cores from ``/proc/stat``, paired ratios,
medians and the targets of issue 23 with their verdicts (``tests/test_paired_bench.py`` checks them)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

# A sample is "both cores busy" when the cores were busy for this fraction of it: 1.8 cores of 2.
BUSY_FRACTION = 0.9
# /proc/stat's "cpu" line: user nice system idle iowait irq softirq steal ...; the busy ones are these.
_BUSY_FIELDS = (0, 1, 2, 5, 6)


def parse_proc_stat(text: str) -> tuple[int, int]:
    """(busy, total) jiffies of all cores from ``/proc/stat``'s aggregate ``cpu`` line (guest time is in user)."""
    for line in text.splitlines():
        if line.startswith("cpu "):
            values = [int(v) for v in line.split()[1:9]]
            return sum(values[i] for i in _BUSY_FIELDS), sum(values)
    raise ValueError("no aggregate 'cpu ' line in /proc/stat")


def read_proc_stat() -> tuple[int, int]:
    with open("/proc/stat") as stat:
        return parse_proc_stat(stat.read())


def busy_cores(previous: tuple[int, int], current: tuple[int, int], cores: int) -> float:
    """How many of ``cores`` were busy between two :func:`parse_proc_stat` readings (idle, iowait, steal: not)."""
    total = current[1] - previous[1]
    return cores * (current[0] - previous[0]) / total if total > 0 else 0.0


def share_at_least(values: list[float], threshold: float) -> float | None:
    """The share of ``values`` at or above ``threshold`` (None for no values)."""
    return round(sum(1 for v in values if v >= threshold - 1e-9) / len(values), 3) if values else None


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratios(numerators: list[float | None], denominators: list[float | None]) -> list[float | None]:
    """Per pair: numerator / denominator (None where either is missing or the denominator is 0)."""
    return [n / d if n is not None and d else None for n, d in zip(numerators, denominators, strict=True)]


@dataclass(frozen=True)
class Target:
    """One target of issue 23: ``figure`` (a name in the summary) compared with ``bound`` by ``at_most``."""

    figure: str
    text: str
    bound: float
    at_most: bool = False

    def verdict(self, value: float | None) -> str:
        if value is None:
            return "not measured"
        met = value <= self.bound if self.at_most else value >= self.bound
        return "met" if met else "not met"


TARGETS = (
    Target("featurize ours/daft", "featurize stage >= 1.0x Daft", 1.0),
    Target("featurize ours/ray", "featurize stage >= 1.0x Ray Data", 1.0),
    Target("wall ours/daft", "our whole process's wall <= 1.3x Daft's", 1.3, at_most=True),
    Target("ours both cores busy", "both cores busy >= 85 % of our wall (our process tree)", 0.85),
    Target("featurize int8/float", "--featurizer tflite-int8 >= 2x float, featurize stage", 2.0),
    Target("README demo s", "README demo (60 images, model cached) <= 20 s, command to exit", 20.0, at_most=True),
)
