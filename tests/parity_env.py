"""The EMR parity environment: the cluster's Python (3.9), its Spark (3.5.6, as in emr-7.13.0, the default release of
EmrClusterConfig) and exactly the job's cluster pins (spark_jobs/bootstrap/requirements-emr.txt), built once per pin
set and cached under ~/.cache/fruitflow, so that the job a paying user runs on EMR runs here first.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REQUIREMENTS = REPO / "spark_jobs" / "bootstrap" / "requirements-emr.txt"
# EMR ships Spark itself: the version of the default release (Spark release history: emr-7.13.0 -> 3.5.6-amzn-2).
EMR_SPARK = {"emr-7.13.0": "3.5.6"}
PYTHON_VERSION = "3.9.18"
CACHE = Path(os.environ.get("FRUITFLOW_CACHE", Path.home() / ".cache" / "fruitflow"))


@dataclass(frozen=True)
class ParityEnv:
    python: Path
    spark_home: Path

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK", "SPARK_HOME", "PYTHONPATH"))}
        env.update(
            PYSPARK_PYTHON=str(self.python),
            PYSPARK_DRIVER_PYTHON=str(self.python),
            SPARK_HOME=str(self.spark_home),
            TF_CPP_MIN_LOG_LEVEL="2",
        )
        env["PATH"] = f"{self.python.parent}{os.pathsep}{env.get('PATH', '')}"
        return env

    def spark_submit(self, *job_args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """The job under this environment's spark-submit, ``local[2,2]``, as the flow's local engine runs it."""
        command = [
            str(self.spark_home / "bin" / "spark-submit"),
            "--master",
            "local[2,2]",
            "--conf",
            "spark.ui.enabled=false",
            "--conf",
            "spark.driver.memory=2g",
            str(REPO / "spark_jobs" / "extract_features.py"),
            *job_args,
        ]
        return subprocess.run(command, env=self.environment(), capture_output=True, text=True, timeout=timeout)


def base_python() -> Path | None:
    """The pyenv Python 3.9 these machines have, or None."""
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        root = str(Path.home() / ".pyenv")
    python = Path(root) / "versions" / PYTHON_VERSION / "bin" / "python"
    return python if python.exists() else None


def pins(release: str = "emr-7.13.0") -> list[str]:
    lines = [line.split("#")[0].strip() for line in REQUIREMENTS.read_text().splitlines()]
    return [f"pyspark=={EMR_SPARK[release]}", *[line for line in lines if line]]


def build(python: Path, release: str = "emr-7.13.0") -> ParityEnv:
    """The cached environment for these pins, built (atomically) when missing."""
    wanted = pins(release)  # pyspark is published as a source archive only; every other pin must be a wheel
    key = hashlib.sha256("\n".join([str(python), *wanted]).encode()).hexdigest()[:16]
    target = CACHE / f"parity-py39-{key}"
    env_python = target / "bin" / "python"
    if not (target / ".complete").exists():
        partial = CACHE / f".parity-{key}-{os.getpid()}"
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
    site = next((target / "lib").glob("python3.*")) / "site-packages"
    return ParityEnv(python=env_python, spark_home=site / "pyspark")
