"""What one command costs as a whole, measured from outside while it runs: the figures of ``bench/paired.py``.

For the command and every process it starts (spark-submit, the JVM, the Python driver and workers; Ray's or
Daft's processes; the flow's temporary Prefect server):

- ``wall_s``: from the start of the command to its exit (what the user waits for);
- ``cpu_s``: the CPU seconds (user + system) of the whole process tree: the larger of two counts that each miss
  something. ``rusage_cpu_s`` (``user_s`` + ``sys_s``) is the kernel's own accounting (``getrusage(RUSAGE_CHILDREN)``
  across the run); this process makes itself a child subreaper first, so that a process the command left behind (a
  daemon whose parent exited) is reparented to it and counted once it exits (such leftovers are waited for up to
  ``LINGER_S`` after the command's exit, then ended by pid and counted in ``lingering``), but a process reaped by a
  parent that ignores SIGCHLD is counted nowhere (our job: 44-52 s where the samples saw 64-74 s).
  ``tree_cpu_sampled_s`` sums the user + system time of every process of the tree seen by the samples below, and
  misses what a process used in its last interval (0.1 s);
- ``both_busy_share``: every ``interval`` (0.1 s) ``/proc/stat`` is read; a sample is *busy* when the machine's
  cores ran user, nice, system, irq or softirq work for at least ``BUSY_FRACTION`` (0.9) of the interval on
  every core together, i.e. >= 1.8 busy cores of 2. The share is busy samples / samples. It is the whole machine:
  on a machine shared with other work it counts their load too;
- ``tree_both_busy_share``: the same share counted on the command's own process tree (the summed user + system
  time of its live processes over each interval, from ``/proc/<pid>/stat`` through psutil), i.e. the share of the
  wall during which *its* processes kept >= 1.8 of 2 cores busy, whatever else runs on the machine. The tree is
  every descendant of this process, which runs one command at a time: the command's own and those it orphaned
  (Ray's workers come here through the subreaper; a tree rooted at the command would miss their RSS and CPU);
- ``tree_peak_rss_mb`` and the other peaks of :class:`memory.PeakMemory` (sampled every 0.2 s).
"""

from __future__ import annotations

import ctypes
import os
import resource
import subprocess
import threading
import time
from pathlib import Path

import psutil
from memory import PeakMemory
from paired_stats import BUSY_FRACTION, busy_cores, read_proc_stat, share_at_least

LINGER_S = 20.0
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Orphans of the commands we start come to this process (Linux), so that their CPU time is counted."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


class CoreSampler:
    """Samples ``/proc/stat`` and the CPU time of this process's live descendants every ``interval`` seconds."""

    def __init__(self, interval: float = 0.1) -> None:
        self.root = psutil.Process()
        self.interval = interval
        self.cores = os.cpu_count() or 1
        self.machine: list[float] = []  # busy cores of the machine, per interval
        self.tree: list[float] = []  # busy cores of the command's processes, per interval
        self._seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _tree_seconds(self) -> float:
        """CPU seconds used since the last sample by the tree's live processes (a new one: all of its own)."""
        try:
            processes = self.root.children(recursive=True)
        except psutil.Error:
            return 0.0
        used = 0.0
        for process in processes:
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            total = times.user + times.system
            used += max(0.0, total - self._seen.get(process.pid, 0.0))
            self._seen[process.pid] = total
        return used

    def _run(self) -> None:
        previous, clock = read_proc_stat(), time.monotonic()
        self._tree_seconds()
        while not self._stop.wait(self.interval):
            current, now = read_proc_stat(), time.monotonic()
            self.machine.append(busy_cores(previous, current, self.cores))
            self.tree.append(self._tree_seconds() / max(now - clock, 1e-6))
            previous, clock = current, now

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {
            "samples": len(self.machine),
            "both_busy_share": share_at_least(self.machine, BUSY_FRACTION * self.cores),
            "tree_both_busy_share": share_at_least(self.tree, BUSY_FRACTION * self.cores),
            "machine_busy_cores_mean": round(sum(self.machine) / len(self.machine), 2) if self.machine else None,
            "tree_cpu_sampled_s": round(sum(self._seen.values()), 3),
        }


def _reap_leftovers(deadline: float) -> int:
    """Wait for the processes reparented to us (the command's leftovers) until ``deadline``, then end them."""
    me = psutil.Process()
    ended = 0
    while True:
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            return ended
        alive = []
        for process in me.children():
            try:
                if process.status() != psutil.STATUS_ZOMBIE:
                    alive.append(process)
            except psutil.Error:
                pass
        if not alive:
            continue
        if time.monotonic() > deadline:
            for process in alive:  # only the leftovers of a command this bench started
                try:
                    process.kill()
                    ended += 1
                except psutil.Error:
                    pass
            deadline = float("inf")
        time.sleep(0.05)


def measure_command(command: list[str], env: dict[str, str], cwd: Path, log: Path, interval: float = 0.1) -> dict:
    """Run ``command`` (its output to ``log``) and measure it as the module docstring says.

    Raises:
        SystemExit: the command failed, with the command and the tail of its log.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    started = time.monotonic()
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(cwd))
        # The tree sampled is this process's (the command and, this being a subreaper, what it orphaned: Ray's
        # workers are reparented here), not the command's alone.
        memory, cores = PeakMemory(os.getpid(), include_root=False), CoreSampler(interval)
        _, status, _ = os.wait4(process.pid, 0)
        wall = time.monotonic() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        sampled = dict(memory.stop(), **cores.stop())
    lingering = _reap_leftovers(time.monotonic() + LINGER_S)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise SystemExit("command failed (exit %d): %s\n%s" % (process.returncode, " ".join(command), tail))
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    return dict(
        sampled,
        wall_s=round(wall, 3),
        cpu_s=round(max(user + system, sampled["tree_cpu_sampled_s"]), 3),
        rusage_cpu_s=round(user + system, 3),
        user_s=round(user, 3),
        sys_s=round(system, 3),
        lingering=lingering,
        load_average=round(load, 2),
    )
