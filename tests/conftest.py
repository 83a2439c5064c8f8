"""Session fixtures: one JVM, one Prefect test server, small generated images, one job run to share."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tasks.local.class_archive import java_options, make_archive
from tasks.local.spark_submit import DRIVER_JAVA_OPTIONS, spark_home

# a real Prefect server with deployments and a worker; the EMR parity environment (Python 3.9 + Spark 3.5.6); moto
# server, fruitflow AWS blocks, the fake EMR cluster and the fake EMR Serverless (first the modules the others import)
pytest_plugins = ["tests.prefect_server", "tests.parity_env", "tests.emr_fixtures", "tests.serverless_fixtures"]

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
# Every JVM the tests start (this session's, the parity stack's, the standalone cluster's daemons) compiles with C1
# only, as the local engine's driver does (tasks/local/spark_submit.py DRIVER_JAVA_OPTIONS): they live seconds on
# small data, where the C2 compiler's work never pays back. Those of pip's Spark also map its class archive
# (tasks/local/class_archive.py; .ci/setup.sh makes it, else it is made here once): each starts ~1.5 s sooner.
# tests/parity_env.py sets the same for the EMR stack's Spark. What the JVM computes is the same.
make_archive(spark_home())
os.environ.setdefault("SPARK_SUBMIT_OPTS", " ".join([DRIVER_JAVA_OPTIONS, *java_options(spark_home())]))
os.environ.setdefault("SPARK_DAEMON_JAVA_OPTS", DRIVER_JAVA_OPTIONS)

# Small, fast and still the real MobileNetV2 graph: the width does not change the code path.
TEST_ALPHA = 0.35
JOB_DEFAULTS = ["--weights", "random", "--alpha", str(TEST_ALPHA), "--batch-size", "8"]
# On the test images the health stage costs about as much as the rest of the job (1.4 s of 3.3 s a run in this
# session's JVM). Tests about something else (arrivals, paths, workers, the AWS engines' lifecycles, deployments) turn
# it off; tests about health, reruns, moved or copied outputs, crash recovery, the EMR stack's parity, the flow end
# to end and each engine's happy path keep the default (on).
NO_HEALTH = ["--health", "off"]
NO_HEALTH_PARAMETER = {"health": "off"}  # the same, as a flow parameter


def shared_path(*parts: str) -> Path:
    """A path in ../shared, or a skip with the reason when it is not there."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared is optional; real images and weights live there)")
    return path


@pytest.fixture(scope="session", autouse=True)
def _no_flow_heartbeats():
    """Flow runs in this process send no heartbeats. Their thread sleeps in 1 s steps and the end of every flow run
    waits for it (0.97 s a run, measured on a flow of no tasks): ~1 s of each in-process flow test. Heartbeats tell a
    server which runs crashed; no test here is about them (test_temporary_server sets them on where it needs them)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def spark():
    from pyspark.sql import SparkSession

    session = (
        # local[2,2], as the local engine runs the job: a failed task (a killed Python worker) is tried again.
        SparkSession.builder.master("local[2,2]")
        .appName("fruitflow-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.memory", "2g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def fruit_images(tmp_path_factory) -> Path:
    """6 classes x 4 small JPEGs (labels with spaces and non-ASCII), a corrupt image and a README."""
    from tasks.local.sample_images import make_sample_images

    root = make_sample_images(tmp_path_factory.mktemp("fruits"), per_class=4, size=64)
    (root / "Banana" / "broken.jpg").write_bytes(b"this is not a jpeg")
    (root / "README.txt").write_text("not an image: counted as skipped")
    return root


@pytest.fixture(scope="session")
def run_job(spark, tmp_path_factory):
    """Run the real job in this process's Spark session (no extra JVM); returns the output folder."""
    from fruitjob.job import run
    from fruitjob.options import parse_options

    def _run(images: Path, *extra: str) -> Path:
        output = tmp_path_factory.mktemp("job-output")
        argv = ["--images", str(images), "--output", str(output), *JOB_DEFAULTS, *extra]
        run(spark, parse_options(argv))
        return output

    return _run


@pytest.fixture(scope="session")
def job_output(run_job, fruit_images) -> Path:
    """One finished run over ``fruit_images`` that several tests read."""
    return run_job(fruit_images, "--pca-components", "5")
