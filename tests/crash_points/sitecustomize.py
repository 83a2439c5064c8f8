"""Kills a job at an exact point from the test side: ``tests/test_crash_recovery.py`` puts this folder on the job's
PYTHONPATH, so Python imports it at start-up, before the job. Product code has no hook for it.

``FRUITFLOW_KILL_AT`` says where the job's driver SIGKILLs its own process group (the driver and its JVM):

- ``stage:<name>``: when the job has finished stage ``<name>`` (``fruitjob.progress.stage_done``), before the next.
- ``write:<file name>[:<n>]``: inside the n-th (default first) write of a small file of that name: its temporary
  file is written, the rename over the real one is not done (``storage.write_bytes`` writes local files so).

Only the job's driver (``extract_features.py``) acts; Spark's Python workers import this file too and ignore it.
"""

import os
import signal
import sys

_POINT = os.environ.get("FRUITFLOW_KILL_AT", "")


def _kill() -> None:
    sys.stderr.write("crash_points: SIGKILL at %s\n" % _POINT)
    sys.stderr.flush()
    os.killpg(os.getpgid(0), signal.SIGKILL)


def _kill_at_stage(name: str) -> None:
    from fruitjob import progress

    real_stage_done = progress.stage_done

    def stage_done(stage: str) -> None:
        real_stage_done(stage)
        if stage == name:
            _kill()

    progress.stage_done = stage_done


def _kill_inside_write(name: str, nth: int) -> None:
    real_replace = os.replace
    seen = [0]

    def replace(source, target, *args, **kwargs):
        if os.path.basename(str(target)) == name:
            seen[0] += 1
            if seen[0] == nth:
                _kill()
        return real_replace(source, target, *args, **kwargs)

    os.replace = replace


if _POINT and sys.argv and sys.argv[0].endswith("extract_features.py"):
    kind, _, rest = _POINT.partition(":")
    if kind == "stage":
        _kill_at_stage(rest)
    elif kind == "write":
        file_name, _, count = rest.partition(":")
        _kill_inside_write(file_name, int(count or 1))
    else:
        raise SystemExit("crash_points: unknown FRUITFLOW_KILL_AT %r" % _POINT)
