"""SIGHUP and SIGINT end a command-line run as SIGTERM does: its remote work is ended and what it created released.

Prefect bridges SIGTERM into the running flow (``TerminationSignal``): the engine's ``finally`` cancels the step or job
run and terminates the cluster or application it created, and the flow's crash hook ends what that missed. SIGHUP (a
closed terminal, a dropped SSH session) would otherwise kill the process where it stands, leaving the cluster and its
step running; SIGINT (Ctrl-C) would raise ``KeyboardInterrupt`` wherever the main thread is. Both are handed to the
same bridge. While the run is ending, a repeated SIGHUP or SIGINT (Ctrl-C pressed again) is ignored, so that it cannot
interrupt the teardown itself; SIGKILL can, and the remote work's own deadline is left for that
(``--step-timeout-minutes``: tasks/emr/steps.py, tasks/emr_serverless/job_run.py).

A handler's exception can be lost: Python runs it between any two bytecodes, and where the main thread is inside a
finalizer (``__del__``, a weakref callback) the exception is printed as "Exception ignored in" and dropped (seen
here: the flow then went on waiting for its step). Such a lost exception is caught by ``sys.unraisablehook`` and the
signal delivered again, at the next bytecode outside it. That holds for SIGTERM too, whose handler is Prefect's own
bridge (installed by the flow engine, not by us): a dropped ``TerminationSignal`` is delivered again the same way.
"""

from __future__ import annotations

import _thread
import os
import signal
import sys
import threading
from types import FrameType

ENDING_SIGNALS = (signal.SIGHUP, signal.SIGINT)
_ending: list[int] = []  # the signal being handled, once its exception is on its way
_raised: list[BaseException] = []  # that exception: if Python drops it, the signal is delivered again
_REDELIVER_AFTER_S = 0.1


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
    try:
        if callable(bridge):  # a flow is running: Prefect's bridge raises TerminationSignal in it
            bridge(signal.SIGTERM, frame)
        # No flow is running (before it started or after it ended): nothing remote is ours to end.
        raise SystemExit(128 + signum)
    except BaseException as exc:
        _raised[:] = [exc]
        raise


def _deliver_later(signum: int) -> None:
    """A moment later, from another thread: delivered now, the handler would raise inside the hook (or the finalizer
    it reports on), and be dropped again. Dropped again anyway, it comes back to the hook and is retried. (A signal
    whose handler is no longer Python's, the flow having ended, is not delivered: ``interrupt_main`` does nothing.)"""
    later = threading.Timer(_REDELIVER_AFTER_S, _thread.interrupt_main, args=(signum,))
    later.daemon = True
    later.start()


def _deliver_again_if_dropped(unraisable) -> None:
    """``sys.unraisablehook``: a signal's exception was dropped inside a finalizer; raise it again outside."""
    from prefect.exceptions import TerminationSignal

    if _raised and unraisable.exc_value is _raised[0]:
        _raised.clear()
        _deliver_later(_ending.pop())
        return
    if isinstance(unraisable.exc_value, TerminationSignal):  # SIGTERM, through Prefect's bridge
        _deliver_later(signal.SIGTERM)
        return
    _previous_hook(unraisable)


_previous_hook = sys.unraisablehook


def end_runs_on_hangup_and_interrupt() -> None:
    """Route SIGHUP and SIGINT to SIGTERM's handling for the rest of this process (the command line calls it)."""
    for signum in ENDING_SIGNALS:
        signal.signal(signum, _end_as_sigterm)
    sys.unraisablehook = _deliver_again_if_dropped
