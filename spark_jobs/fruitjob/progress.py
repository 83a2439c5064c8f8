"""Progress lines from Spark's status tracker, for the flow to turn into a progress bar.

A daemon thread on the driver polls ``SparkContext.statusTracker()`` every couple of seconds and logs, only when
something changed::

    fruitflow INFO progress: 42% featurize, 12/40 tasks

The job's stages weigh differently (featurizing dominates), so each stage of ``run`` owns a slice of 0-100 % and
the tasks of the Spark stages seen during it fill that slice. The percentage never goes backwards, even when a new
Spark job adds tasks to the current stage. ``stage_done`` moves to the next slice; without ``start`` every call is
a no-op (tests that call ``run`` in-process).
"""

from __future__ import annotations

import logging
import threading
from typing import Dict, List, Optional, Tuple

log = logging.getLogger("fruitflow.job.progress")

# (stage of run(), percent reached when it ends), in run()'s order.
STAGES: List[Tuple[str, float]] = [
    ("list", 5.0),
    ("weights", 10.0),
    ("featurize", 88.0),
    ("errors", 90.0),
    ("pca", 99.0),
]
POLL_SECONDS = 2.0


class ProgressReporter:
    """Polls a SparkContext's status tracker and logs ``progress: N% stage, done/total tasks`` on change.

    Args:
        spark_context: the driver's SparkContext.
        interval: seconds between polls.
        stages: the stages of the job and the percentage each ends at.
    """

    def __init__(self, spark_context, interval: float = POLL_SECONDS, stages: Optional[List[Tuple[str, float]]] = None):
        self._tracker = spark_context.statusTracker()
        self._interval = interval
        self._stages = list(stages or STAGES)
        self._index = 0
        self._tasks: Dict[int, Tuple[int, int]] = {}  # Spark stage id -> (tasks, completed) in the current slice
        self._percent = 0.0
        self._last = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fruitflow-progress", daemon=True)

    def start(self) -> ProgressReporter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._interval * 2)

    def stage_done(self, name: str) -> None:
        """The job finished stage ``name``: its slice is full, and the next stage's begins."""
        with self._lock:
            names = [stage for stage, _ in self._stages]
            if name not in names:
                return
            self._index = names.index(name) + 1
            self._percent = max(self._percent, self._stages[self._index - 1][1])
            self._tasks = {}
            self._emit("%s done" % name)

    def finish(self) -> None:
        """The job wrote its metrics: 100 %."""
        with self._lock:
            self._percent = 100.0
            self._emit("done")

    def poll(self) -> None:
        """One look at the active Spark stages; logs a line if the numbers moved."""
        with self._lock:
            if self._index >= len(self._stages):
                return
            for stage_id in self._tracker.getActiveStageIds():
                info = self._tracker.getStageInfo(stage_id)
                if info is not None and info.numTasks > 0:
                    self._tasks[stage_id] = (info.numTasks, info.numCompletedTasks)
            active = set(self._tracker.getActiveStageIds())
            for stage_id, (total, _) in list(self._tasks.items()):
                if stage_id not in active:  # left the active list: finished (a failed stage fails the job)
                    self._tasks[stage_id] = (total, total)
            total = sum(tasks for tasks, _ in self._tasks.values())
            done = sum(completed for _, completed in self._tasks.values())
            name, end = self._stages[self._index]
            begin = self._stages[self._index - 1][1] if self._index else 0.0
            if total:  # no Spark stage seen yet in this stage of the job: nothing new to say
                self._percent = max(self._percent, begin + (end - begin) * done / float(total))
                self._emit("%s, %d/%d tasks" % (name, done, total))

    def _emit(self, detail: str) -> None:
        line = "%d%% %s" % (int(self._percent), detail)
        if line != self._last:
            self._last = line
            log.info("progress: %s", line)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.poll()
            except Exception as exc:  # noqa: BLE001 - progress is cosmetic; the SparkContext may be stopping
                log.debug("progress poll failed: %s", exc)


_reporter: Optional[ProgressReporter] = None


def start(spark_context, interval: float = POLL_SECONDS) -> ProgressReporter:
    """Start the module's reporter (one per driver)."""
    global _reporter
    stop()
    _reporter = ProgressReporter(spark_context, interval).start()
    return _reporter


def stage_done(name: str) -> None:
    if _reporter is not None:
        _reporter.stage_done(name)


def finish() -> None:
    if _reporter is not None:
        _reporter.finish()


def stop() -> None:
    global _reporter
    if _reporter is not None:
        _reporter.stop()
        _reporter = None
