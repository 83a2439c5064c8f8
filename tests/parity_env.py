"""The EMR parity environment: the cluster's Python (3.9), its Spark (3.5.6, as in emr-7.13.0, the default release of
EmrClusterConfig) and the job's pins for that Python, read from pyproject.toml's job groups by the same function that
builds the archive a cluster runs (tasks/aws/job_pins.py), so that the job a paying user runs on EMR runs here first.

Two virtualenvs, each built once per pin set and cached under ~/.cache/fruitflow (``FRUITFLOW_CACHE``):
- :func:`build`: Python 3.9 + pyspark 3.5.6 + the job's pins (no TensorFlow: the model is converted here and
  shipped, as the flow does): the job as a whole on the cluster's stack (tests/test_emr_parity.py);
- :func:`build_bare`: Python 3.9 + pyspark 3.5.6 only, as an EMR node is before the step: the job's packages come
  from the shipped archive on ``PYTHONPATH`` (:meth:`ParityEnv.spark_submit`), which the fake cluster does with the
  archive the flow staged (tests/fake_cluster_stack.py).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tasks.aws.environment import CACHE, CLUSTER_PYTHON
from tasks.aws.job_pins import job_requirements
from tasks.local.class_archive import java_options, make_archive
from tasks.local.spark_submit import DRIVER_JAVA_OPTIONS

REPO = Path(__file__).resolve().parent.parent
# EMR ships Spark itself: the version of the default release (Spark release history: emr-7.13.0 -> 3.5.6-amzn-2).
EMR_SPARK = {"emr-7.13.0": "3.5.6"}
PYTHON_VERSION = "3.9.18"


@dataclass(frozen=True)
class ParityEnv:
    python: Path
    spark_home: Path

    def environment(self, pythonpath: Path | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK", "SPARK_HOME", "PYTHONPATH"))}
        env.update(
            PYSPARK_PYTHON=str(self.python),
            PYSPARK_DRIVER_PYTHON=str(self.python),
            SPARK_HOME=str(self.spark_home),
            # C1 only and this Spark's own class archive, as tests/conftest.py gives pip's Spark
            SPARK_SUBMIT_OPTS=" ".join([DRIVER_JAVA_OPTIONS, *java_options(self.spark_home)]),
            TF_CPP_MIN_LOG_LEVEL="2",
            **(extra or {}),
        )
        if pythonpath is not None:  # as the step's wrapper exports it on the master, and executorEnv on the workers
            env["PYTHONPATH"] = str(pythonpath)
        env["PATH"] = f"{self.python.parent}{os.pathsep}{env.get('PATH', '')}"
        return env

    def submit_command(self, script: str, *args: str, before: Sequence[str] = ()) -> list[str]:
        """``spark-submit`` of this environment's Spark, ``local[2,2]`` (a failed task is tried again), ``before``
        the script (``--py-files ...``), then ``args``."""
        return [
            str(self.spark_home / "bin" / "spark-submit"),
            "--master",
            "local[2,2]",
            "--conf",
            "spark.ui.enabled=false",
            "--conf",
            "spark.driver.memory=2g",
            *before,
            script,
            *args,
        ]

    def spark_submit(
        self,
        *job_args: str,
        timeout: float = 600,
        pythonpath: Path | None = None,
        env: dict[str, str] | None = None,
        submit_args: Sequence[str] = (),
    ) -> subprocess.CompletedProcess:
        """The job under this environment's spark-submit, ``local[2,2]``, as the flow's local engine runs it.

        ``pythonpath``: an unpacked job environment (the archive a cluster step ships) the driver and the Python
        workers import the job's packages from; ``submit_args`` go before the script (``--py-files ...``).
        """
        command = self.submit_command(str(REPO / "spark_jobs" / "extract_features.py"), *job_args, before=submit_args)
        return subprocess.run(
            command, env=self.environment(pythonpath, env), capture_output=True, text=True, timeout=timeout
        )

    def run_script(self, script: Path, *args: str, timeout: float = 300) -> dict:
        """``script`` under this environment's Python with ``spark_jobs`` on the path (it makes its own Spark session);
        its last line of output, as JSON."""
        done = subprocess.run(
            [str(self.python), str(script), *args],
            env=self.environment(pythonpath=REPO / "spark_jobs"),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, done.stderr[-6000:]
        return json.loads(done.stdout.strip().splitlines()[-1])


def base_python() -> Path | None:
    """The pyenv Python 3.9 these machines have, or None."""
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        root = str(Path.home() / ".pyenv")
    python = Path(root) / "versions" / PYTHON_VERSION / "bin" / "python"
    return python if python.exists() else None


def pins(release: str = "emr-7.13.0") -> list[str]:
    """pyspark of the release, then the job's pins for the cluster's Python: those of the TFLite featurizers, whose
    model the flow converts and ships (no TensorFlow on the cluster, tasks/aws/model_export.py)."""
    return [f"pyspark=={EMR_SPARK[release]}", *job_requirements(CLUSTER_PYTHON, "x86_64")]


def build(python: Path, release: str = "emr-7.13.0") -> ParityEnv:
    """The cached environment with every job pin, built (atomically) when missing."""
    return _venv(python, "parity-py39", pins(release))


def build_bare(python: Path, release: str = "emr-7.13.0") -> ParityEnv:
    """The cached environment with pyspark only: a cluster node's Python before the step's archive arrives."""
    return _venv(python, "bare-py39", [f"pyspark=={EMR_SPARK[release]}"])


def _build_venv(python: Path, target: Path, partial: Path, wanted: list[str]) -> None:
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    subprocess.run([str(python), "-m", "venv", str(partial)], check=True)
    subprocess.run(
        [str(partial / "bin" / "python"), "-m", "pip", "install", "-q", "--only-binary=:all:"]
        + ["--no-binary=pyspark", *wanted],
        check=True,
        timeout=1500,
    )
    (partial / ".complete").write_text("\n".join(wanted) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    # Moved whole once complete (only bin/python and pyspark's own bash scripts are used: both move well).
    partial.rename(target)


def _venv(python: Path, name: str, wanted: list[str]) -> ParityEnv:
    # pyspark is published as a source archive only; every other pin must be a wheel
    key = hashlib.sha256("\n".join([str(python), *wanted]).encode()).hexdigest()[:16]
    target = CACHE / f"{name}-{key}"
    CACHE.mkdir(parents=True, exist_ok=True)
    # One builder at a time: the suite's two pytest-xdist workers may both ask for it on a new machine, and a second
    # build would remove the first one's folder while its tests use it. The other waits, then finds it complete.
    with open(CACHE / f".{name}-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / ".complete").exists():
            _build_venv(python, target, CACHE / f".{name}-{key}-{os.getpid()}", wanted)
    site = next((target / "lib").glob("python3.*")) / "site-packages"
    env = ParityEnv(python=target / "bin" / "python", spark_home=site / "pyspark")
    make_archive(env.spark_home, env.environment())  # once per machine, as for pip's Spark (tests/conftest.py)
    return env


@pytest.fixture(scope="session")
def parity_env() -> ParityEnv | None:
    """The EMR parity environment, or None where Python 3.9 is not installed."""
    python = base_python()
    return build(python) if python is not None else None


@pytest.fixture(scope="session")
def parity(parity_env) -> ParityEnv:
    """The EMR parity environment, or a skip with the reason where Python 3.9 is not installed."""
    if parity_env is None:
        pytest.skip("Python 3.9 (pyenv 3.9.18) is not installed: the EMR parity environment cannot be built")
    return parity_env


def main() -> None:
    """Build both environments ahead of the tests (``.ci/setup.sh``): a minute or two once per machine and pin set,
    otherwise paid inside the first test that needs them."""
    python = base_python()
    if python is None:
        print(f"no Python {PYTHON_VERSION} (pyenv): the EMR parity tests will skip")
        return
    for env in (build(python), build_bare(python)):
        print(f"EMR parity environment: {env.python.parent.parent}")


if __name__ == "__main__":
    main()
