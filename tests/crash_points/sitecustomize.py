"""Kills a job at an exact point from the test side: ``tests/test_crash_recovery.py`` puts this folder on the job's
PYTHONPATH, so Python imports it at start-up, before the job. Product code has no hook for it.

``FRUITFLOW_KILL_AT`` says where the job's driver SIGKILLs its own process group (the driver and its JVM):

- ``stage:<name>``: when the job has finished stage ``<name>`` (``fruitjob.progress.stage_done``), before the next.
- ``write:<file name>[:<n>]``: inside the n-th (default first) write of a small file of that name: its temporary
  file is written, the rename over the real one is not done (``storage.write_bytes`` writes local files so).

Only the job's driver (``extract_features.py``) acts on ``FRUITFLOW_KILL_AT``; Spark's Python workers ignore it.

``FRUITFLOW_KILL_WORKER_ONCE=<marker file>`` is for Spark's Python workers (``tests/test_hostile_inputs.py`` puts
this folder and the variable in the session's ``SparkContext.environment``, which reaches the workers' daemon): the
first worker to featurize a batch creates the marker and SIGKILLs itself there, once; Spark must retry the task.
"""

import importlib.abc
import importlib.util
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


_WORKER_MARKER = os.environ.get("FRUITFLOW_KILL_WORKER_ONCE", "")
_FEATURIZER = "fruitjob.featurizer"


def _kill_this_worker_once() -> None:
    try:
        os.close(os.open(_WORKER_MARKER, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os.kill(os.getpid(), signal.SIGKILL)


def _killing_first_batch(featurize_contents):
    def featurize_then_die(*args, **kwargs):
        _kill_this_worker_once()
        return featurize_contents(*args, **kwargs)

    return featurize_then_die


class _KillInFeaturizer(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports ``fruitjob.featurizer`` as usual, then wraps its ``featurize_contents`` (what the pandas UDF calls per
    batch; the pickled UDF finds it by name in the worker, so it finds the wrapper)."""

    def find_spec(self, name, path=None, target=None):
        if name != _FEATURIZER:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        self._real = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec):
        return self._real.create_module(spec)

    def exec_module(self, module):
        self._real.exec_module(module)
        module.featurize_contents = _killing_first_batch(module.featurize_contents)


if _WORKER_MARKER:
    sys.meta_path.insert(0, _KillInFeaturizer())

if _POINT and sys.argv and sys.argv[0].endswith("extract_features.py"):
    kind, _, rest = _POINT.partition(":")
    if kind == "stage":
        _kill_at_stage(rest)
    elif kind == "write":
        file_name, _, count = rest.partition(":")
        _kill_inside_write(file_name, int(count or 1))
    else:
        raise SystemExit("crash_points: unknown FRUITFLOW_KILL_AT %r" % _POINT)
