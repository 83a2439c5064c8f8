"""SIGHUP and SIGINT end a command-line run as SIGTERM does: its remote work is ended and what it created released.

Prefect bridges SIGTERM into the running flow (``TerminationSignal``): the engine's ``finally`` cancels the step or job
run and terminates the cluster or application it created, and the flow's crash hook ends what that missed. SIGHUP (a
closed terminal, a dropped SSH session) would otherwise kill the process where it stands, leaving the cluster and its
step running; SIGINT (Ctrl-C) would raise ``KeyboardInterrupt`` wherever the main thread is. Both are handed to the
same bridge. While the run is ending, a repeated SIGHUP or SIGINT (Ctrl-C pressed again) is ignored, so that it cannot
interrupt the teardown itself; SIGKILL can, and the remote work's own deadline is left for that
(``--step-timeout-minutes``: tasks/emr/steps.py, tasks/emr_serverless/job_run.py).
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

ENDING_SIGNALS = (signal.SIGHUP, signal.SIGINT)
_ending: list[int] = []


def _detach_from_a_closed_terminal() -> None:
    """After a hangup the terminal is gone: writing to it fails (EIO), and the teardown's log lines would raise."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        try:
            if os.isatty(fd):
                os.dup2(devnull, fd)
        except OSError:
            pass
    os.close(devnull)


def _end_as_sigterm(signum: int, frame: FrameType | None) -> None:
    if _ending:
        return  # already ending: the teardown must run to its end
    _ending.append(signum)
    if signum == signal.SIGHUP:
        _detach_from_a_closed_terminal()
    print(f"fruit-features: {signal.Signals(signum).name}: ending the run's remote work", file=sys.stderr)
    bridge = signal.getsignal(signal.SIGTERM)
    if callable(bridge):  # a flow is running: Prefect's bridge raises TerminationSignal in it
        bridge(signal.SIGTERM, frame)
    # No flow is running (before it started or after it ended): nothing remote is ours to end.
    raise SystemExit(128 + signum)


def end_runs_on_hangup_and_interrupt() -> None:
    """Route SIGHUP and SIGINT to SIGTERM's handling for the rest of this process (the command line calls it)."""
    for signum in ENDING_SIGNALS:
        signal.signal(signum, _end_as_sigterm)
