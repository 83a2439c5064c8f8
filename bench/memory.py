"""Peak memory of a command's process tree, sampled with psutil while it runs (every 0.2 s).

One sampler for every bench row: the summed RSS of the whole tree and its largest process (the growth run, the
peers), and the peaks of Spark's Python workers (the ``pyspark.daemon`` forks) and of the Python driver.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import psutil


class PeakMemory:
    """Samples the RSS of ``pid`` and its descendants until :meth:`stop`."""

    def __init__(self, pid: int, interval: float = 0.2, include_root: bool = True) -> None:
        self.root = psutil.Process(pid)
        self.include_root = include_root  # False: only its descendants (the root is the bench, a subreaper)
        self.interval = interval
        self.worker_peak = self.driver_peak = self.total_peak = self.process_peak = 0
        self.workers_seen: set[int] = set()
        self.processes_seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                children = self.root.children(recursive=True)
            except psutil.Error:
                break
            total = 0
            for process in [self.root, *children] if self.include_root else children:
                try:
                    rss = process.memory_info().rss
                except psutil.Error:
                    continue
                self.processes_seen.add(process.pid)
                total += rss
                self.process_peak = max(self.process_peak, rss)
                if process is not self.root:
                    self._classify(process, rss)
            self.total_peak = max(self.total_peak, total)
            self._stop.wait(self.interval)

    def _classify(self, child: psutil.Process, rss: int) -> None:
        try:
            cmdline = " ".join(child.cmdline())
            parent = child.parent()
            name = child.name().lower()
        except psutil.Error:
            return
        if "pyspark.daemon" in cmdline or "pyspark.worker" in cmdline:
            # The daemon itself only forks; its forks are the workers.
            if parent is not None and "pyspark.daemon" in " ".join(parent.cmdline()):
                self.workers_seen.add(child.pid)
                self.worker_peak = max(self.worker_peak, rss)
        elif "python" in name:
            self.driver_peak = max(self.driver_peak, rss)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {
            "worker_peak_rss_mb": round(self.worker_peak / 2**20, 1),
            "workers_seen": len(self.workers_seen),
            "driver_peak_rss_mb": round(self.driver_peak / 2**20, 1),
            "tree_peak_rss_mb": round(self.total_peak / 2**20, 1),
            "largest_process_peak_rss_mb": round(self.process_peak / 2**20, 1),
            "processes_seen": len(self.processes_seen),
        }


def run_sampled(command: list[str], env: dict[str, str], log: Path, cwd: Path) -> dict:
    """Run ``command`` (output to ``log``); its wall time and the peaks of :class:`PeakMemory`.

    Raises:
        SystemExit: the command failed, with the command and the tail of its log.
    """
    started = time.monotonic()
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(cwd))
        memory = PeakMemory(process.pid)
        code = process.wait()
        sampled = memory.stop()
    if code != 0:
        tail = "\n".join(log.read_text().splitlines()[-25:])
        raise SystemExit("command failed (exit %d): %s\n%s" % (code, " ".join(command), tail))
    return dict(sampled, wall_s=round(time.monotonic() - started, 3))
