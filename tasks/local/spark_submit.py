"""Run the Spark job on this machine through ``spark-submit``: the same artifact the EMR step runs."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pyspark
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from fruitjob.options import JobOptions, job_arguments
from tasks.errors import FruitflowError
from tasks.job_files import JOB_SCRIPT
from tasks.local import class_archive
from tasks.progress import JobProgress

JOB_LOG_PREFIX = "fruitflow "
# The driver JVM compiles with C1 only. Its own work is small (the model runs in the Python workers); the C2
# compiler's threads took that CPU from them on every run. Paired runs (bench/paired.py --rows jit): the README demo
# 0.68x the CPU and 0.80x the wall, 4,230 images 0.68x the CPU with the featurize lap no slower.
DRIVER_JAVA_OPTIONS = "-XX:TieredStopAtLevel=1"


class SparkJobFailed(FruitflowError, RuntimeError):
    """spark-submit exited with an error; the message carries the job's own reason and the log tail."""


def spark_home() -> Path:
    return Path(pyspark.__file__).resolve().parent


def local_master(cores: int | None = None) -> str:
    """``local[N,2]``: one task slot per core, and a failed task (e.g. a killed worker) is tried again."""
    return f"local[{cores or os.cpu_count() or 1},2]"


def spark_submit_command(
    job: JobOptions, master: str | None = None, home: Path | None = None, java_options: Sequence[str] = ()
) -> list[str]:
    """``spark-submit`` of the job to ``master`` (default ``local[N,2]``): a standalone, YARN or k8s URL works too.

    ``home`` is another Spark's home (default: pip's pyspark): the tests run the command under the cluster's Spark.
    ``java_options`` go to the driver JVM after ``DRIVER_JAVA_OPTIONS`` (the class archive's: ``class_archive``).
    """
    return [
        str((home or spark_home()) / "bin" / "spark-submit"),
        "--master",
        master or local_master(),
        "--driver-java-options",
        " ".join([DRIVER_JAVA_OPTIONS, *java_options]),
        "--conf",
        "spark.driver.memory=2g",
        "--conf",
        "spark.ui.showConsoleProgress=false",
        "--conf",
        "spark.ui.enabled=false",
        str(JOB_SCRIPT),
        *job_arguments(job),
    ]


def job_environment() -> dict[str, str]:
    """The Python of this process everywhere (driver and workers) and quiet TensorFlow start-up logs."""
    env = dict(os.environ)
    env.update(
        SPARK_HOME=str(spark_home()),
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def _relay(line: str, logger, tail: collections.deque, progress: JobProgress | None = None) -> None:
    """The job's own lines go to the run log at their level (progress lines also move the artifact); Spark's and
    TensorFlow's at debug."""
    tail.append(line)
    if line.startswith(JOB_LOG_PREFIX):
        level, _, message = line[len(JOB_LOG_PREFIX) :].partition(" ")
        {"ERROR": logger.error, "WARNING": logger.warning}.get(level, logger.info)("job: %s", message)
        if progress is not None:
            progress.from_job_message(message)
    elif " ERROR " in line or line.startswith(("Traceback", "Exception")):
        logger.warning("spark: %s", line)
    else:
        logger.debug("spark: %s", line)


def _failure_reason(tail: collections.deque) -> str:
    own = [line[len(JOB_LOG_PREFIX) + len("ERROR ") :] for line in tail if line.startswith(JOB_LOG_PREFIX + "ERROR")]
    if own:
        return own[-1]
    return "\n".join(list(tail)[-15:])


@task(name="run-spark-job", cache_policy=NO_CACHE)
def run_local_job(job: JobOptions, master: str | None = None) -> str:
    """spark-submit the job on this machine, streaming its log into the run log; returns the output URI.

    The job is told the run's context (``--engine local --flow-run-id ...``: metrics.json, the output's lease)."""
    job = job.replace(engine="local", flow_run_id=_flow_run_id())
    logger = get_run_logger()
    with class_archive.run_options(spark_home()) as java_options:
        _submit(spark_submit_command(job, master, java_options=java_options), logger)
    return job.output


def _submit(command: list[str], logger) -> None:
    """Run ``command``, its lines relayed to ``logger``; ``SparkJobFailed`` with the job's own reason if it fails."""
    logger.info("spark-submit %s", " ".join(command[1:]))
    tail: collections.deque = collections.deque(maxlen=200)
    progress = JobProgress("Spark job")
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=job_environment(),
        cwd=str(JOB_SCRIPT.parent.parent),
    ) as process:
        assert process.stdout is not None
        try:
            for raw in process.stdout:
                _relay(raw.rstrip("\n"), logger, tail, progress)
        except BaseException:  # cancelled or interrupted: do not leave the JVM and its Python workers behind
            _stop(process, logger)
            raise
        code = process.wait()
    if code != 0:
        raise SparkJobFailed(f"the Spark job failed (exit {code}): {_failure_reason(tail)}")
    progress.update(100.0, "done")


def _flow_run_id() -> str | None:
    from prefect.runtime import flow_run

    return flow_run.id


def _stop(process: subprocess.Popen, logger, grace_seconds: float = 10) -> None:
    """SIGTERM spark-submit (its JVM stops the Python workers), SIGKILL if it is still there after the grace."""
    if process.poll() is not None:
        return
    logger.warning("stopping spark-submit (pid %d)", process.pid)
    process.terminate()
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
