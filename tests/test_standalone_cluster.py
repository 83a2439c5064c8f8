"""The job on a real multi-JVM Spark cluster (standalone, on loopback), in the EMR parity environment: executors in
their own JVMs and Python workers, so that whatever the job forgets to ship fails here and not on EMR.

The command is the local engine's own (``spark_submit_command`` with ``--master``), as a user with a Spark cluster
runs ``python -m flows.fruit_features --master spark://host:7077``.
"""

from __future__ import annotations

import subprocess

import pytest
from pyarrow import fs

from fruitjob.options import JobOptions, job_arguments
from tasks.local.spark_submit import spark_submit_command
from tasks.validation import verify_output
from tests.conftest import TEST_ALPHA
from tests.helpers import metrics
from tests.parity_env import EMR_SPARK
from tests.standalone_cluster import standalone_cluster


def test_the_master_option_reaches_spark_submit():
    job = JobOptions(images="/in", output="/out", weights="random")
    command = spark_submit_command(job, "spark://10.0.0.5:7077")
    assert command[1:3] == ["--master", "spark://10.0.0.5:7077"]
    assert command[-len(job_arguments(job)) :] == job_arguments(job)
    assert spark_submit_command(job)[2].startswith("local[")


@pytest.mark.slow
def test_the_job_runs_on_a_standalone_cluster_with_executors_in_their_own_jvms(parity, fruit_images, tmp_path):
    from fruitjob.shipped_model import export_model

    output = tmp_path / "out"
    # The parity environment has no TensorFlow (as a cluster): the model is converted here, as the AWS engines do.
    model = export_model("random", TEST_ALPHA, 0, "tflite", str(tmp_path / "model"))
    job = JobOptions(
        images=str(fruit_images),
        output=str(output),
        weights="random",
        alpha=TEST_ALPHA,
        batch_size=8,
        pca_components=5,
        tflite_model=model,
    )
    with standalone_cluster(parity.spark_home, parity.environment(), tmp_path) as cluster:
        command = spark_submit_command(job, cluster.master_url, home=parity.spark_home)
        done = subprocess.run(command, env=parity.environment(), capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-6000:]
        state = cluster.state()
    verify_output(str(output), fs.LocalFileSystem())
    m = metrics(output)
    assert m["versions"]["python"].startswith("3.9.") and m["versions"]["spark"] == EMR_SPARK["emr-7.13.0"]
    assert (m["images_ok"], m["images_failed"]) == (24, 1)
    (app,) = [app for app in state["completedapps"] if app["name"] == "fruitflow-extract-features"]
    # Each worker launched executors for the app in its own JVM: their folders and logs are under the work dir.
    executors = sorted((tmp_path / "work" / app["id"]).glob("*/stderr"))
    assert len(executors) >= 2, [str(path) for path in executors]
    assert all("CoarseGrainedExecutorBackend" in path.read_text() for path in executors)
