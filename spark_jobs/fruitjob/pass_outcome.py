"""What the one featurize pass saw, gathered on the driver while features/ is written: how many images each task
featurized, and the images that failed with their reasons.

Each featurize task adds ``{partition: (images featurized, [(path, reason), ...])}`` to a Spark accumulator once its
last batch is done. Spark merges a task's accumulator updates on the driver only when the task succeeds; keyed by
partition, a partition computed twice (a retried task, a speculative copy, a stage run again) counts once, and
failures are deduped by path. So errors/ and the counts need no second pass over the images or over features/.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

from pyspark.accumulators import AccumulatorParam

Failure = Tuple[str, str]  # (path, reason)
TaskOutcome = Tuple[int, List[Failure]]  # (images featurized, failures) of one partition
ByPartition = Dict[int, TaskOutcome]


class _LatestByPartition(AccumulatorParam):
    """Merges ``{partition: outcome}`` dicts; a partition's later outcome replaces its earlier one."""

    def zero(self, value: ByPartition) -> ByPartition:
        return {}

    def addInPlace(self, first: ByPartition, second: ByPartition) -> ByPartition:
        first.update(second)
        return first


@dataclass(frozen=True)
class PassOutcome:
    """The featurize pass, as its tasks reported it: images featurized and the failures (one per path)."""

    featurized: int
    failures: List[Failure]

    @property
    def seen(self) -> int:
        return self.featurized + len(self.failures)


class Outcomes:
    """One pass's channel: its tasks ``report`` (on the workers); the driver reads ``outcome`` once the job that ran
    them has finished."""

    def __init__(self, spark_context) -> None:
        self._accumulator = spark_context.accumulator({}, _LatestByPartition())

    def report(self, partition: int, featurized: int, failures: List[Failure]) -> None:
        self._accumulator.add({partition: (featurized, failures)})

    def outcome(self) -> PassOutcome:
        tasks = list(self._accumulator.value.values())
        failures: Dict[str, str] = {}
        for _featurized, failed in tasks:
            failures.update(failed)  # by path
        return PassOutcome(featurized=sum(featurized for featurized, _ in tasks), failures=sorted(failures.items()))


__all__ = ["Failure", "Outcomes", "PassOutcome"]
