"""A killed run is finished by --incremental (issue 19, case 4): the job runs as its own process (python + its JVM)
and is SIGKILLed as a process group at a stage boundary or inside a write; then a plain rerun is refused with the
option to use, and --incremental completes the output in the same space, which validates.

Spark's writes are caught from outside (their ``_temporary/`` or a model's first folder appearing); the points too
short for that (the small JSON files, a stage boundary) are injected by ``tests/crash_points/sitecustomize.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyarrow import fs

from tasks.local.sample_images import make_sample_images
from tasks.validation import verify_output
from tests.conftest import JOB_DEFAULTS, REPO
from tests.helpers import metrics, read_parquet

pytestmark = pytest.mark.slow  # each kill point is a job in its own process (Python + JVM): 7-18 s

CRASH_POINTS = REPO / "tests" / "crash_points"
JOB_SECONDS = 300  # a killed job is over long before; a bound, not a wait


@pytest.fixture
def images(tmp_path):
    root = make_sample_images(tmp_path / "images", per_class=2, size=48)
    (root / "Banana" / "broken.jpg").write_bytes(b"not a jpeg")  # errors/ has a row
    return root


def _argv(images: Path, output: Path, *extra: str) -> list[str]:
    return ["--images", str(images), "--output", str(output), *JOB_DEFAULTS, "--pca-components", "3", *extra]


def _start_job(images: Path, output: Path, kill_at: str, extra: tuple[str, ...], log: Path) -> subprocess.Popen:
    env = dict(os.environ, FRUITFLOW_KILL_AT=kill_at)
    env["PYTHONPATH"] = os.pathsep.join([str(CRASH_POINTS), str(REPO / "spark_jobs")])
    env["PYSPARK_SUBMIT_ARGS"] = "--master local[2,2] --conf spark.ui.enabled=false pyspark-shell"
    command = [sys.executable, str(REPO / "spark_jobs" / "extract_features.py"), *_argv(images, output, *extra)]
    with log.open("wb") as stream:  # the child keeps its own descriptor
        return subprocess.Popen(
            command, cwd=REPO, env=env, stdout=stream, stderr=subprocess.STDOUT, start_new_session=True
        )


def _kill_when_there(job: subprocess.Popen, state: Path, log: Path) -> None:
    """SIGKILL the job's process group as soon as ``state`` exists (polled; the job cannot finish without it)."""
    deadline = time.monotonic() + JOB_SECONDS
    while not state.exists():
        if job.poll() is not None:
            pytest.fail(f"the job ended ({job.returncode}) before {state} appeared:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            os.killpg(job.pid, signal.SIGKILL)
            pytest.fail(f"{state} did not appear in {JOB_SECONDS} s")
        time.sleep(0.005)
    os.killpg(job.pid, signal.SIGKILL)


def _killed_run(images: Path, output: Path, kill_at: str, tmp_path: Path, *extra: str) -> None:
    """Run the job in its own process and kill it at ``kill_at``: ``stage:``/``write:`` (injected) or a path under
    the output whose appearance is the moment."""
    log = tmp_path / "killed-job.log"
    injected = kill_at.split(":")[0] in ("stage", "write")
    job = _start_job(images, output, kill_at if injected else "", extra, log)
    if not injected:
        _kill_when_there(job, output / kill_at, log)
    try:
        returncode = job.wait(JOB_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        raise
    assert returncode == -signal.SIGKILL, f"the job was not killed ({returncode}):\n{log.read_text()[-3000:]}"
    assert not (output / "metrics.json").exists()


def _recorded_model(output: Path) -> str | None:
    space = output / "space.json"
    return json.loads(space.read_text()).get("pca_model_id") if space.exists() else None


def _resume_and_check(spark, images: Path, output: Path, *extra: str, refused: bool = True) -> dict:
    """A plain rerun is refused (naming both options), --incremental finishes the run in the recorded space."""
    from fruitjob.job import JobError, run
    from fruitjob.options import parse_options

    if refused:
        with pytest.raises(JobError, match="holds an unfinished run .*pass --incremental to finish it, --overwrite"):
            run(spark, parse_options(_argv(images, output)))
    recorded = _recorded_model(output)
    resumed = run(spark, parse_options(_argv(images, output, "--incremental", *extra)))
    verify_output(str(output), fs.LocalFileSystem())
    if recorded:
        assert resumed.pca_model_id == recorded and resumed.pca_refit is False
    features, pca = read_parquet(output, "features"), read_parquet(output, "pca")
    assert list(pca["path"]) == list(features["path"]) and set(pca["pca_model_id"]) == {resumed.pca_model_id}
    assert not features["path"].duplicated().any()
    assert (resumed.images_ok + resumed.images_already_done, resumed.images_failed) == (12, 1)
    assert not (output / "_fruitflow.lock").exists(), "the killed run's lease was taken over, then released"
    assert not list(output.glob(".*.tmp")), "the temporary file of a killed write is cleaned up"
    return metrics(output)


# The kill points: (where, what the output holds then), one per state the resume treats differently; the first two
# are the issue's own cases. Folded into these (the same state once what a killed run half-wrote is
# discarded, so the same resume): stage:weights (only the lease) into write:space.json:1; stage:featurize (no errors/)
# into write:part-00000.parquet (errors/ half-written); stage:errors and pca/_temporary (no PCA, or pca/ half-written
# beside a half-saved model) into pca_model/metadata; write:identity.json (a saved model not recorded) into
# write:space.json:2; stage:pca and stage:quality (the health stage, which runs beside the PCA, half-done or done) into
# health/pairs/_temporary and write:metrics.json.
ISSUE_CASES = [
    "features/_temporary",  # inside the first write of features/ (Spark deleted the folder first)
    "pca_model/metadata",  # a model folder without its stages yet (pca/ is being written beside it)
]
OTHER_STATES = [
    "write:space.json:1",  # inside the first space.json: nothing written but the lease and a temporary file
    # inside errors/ (written by the driver: small_tables), the first such file: features/ complete, nothing
    # featurized again
    "write:part-00000.parquet",
    "write:space.json:2",  # inside space.json naming the model: pca/ and pca_model/ complete, the model not recorded
    # inside the health stage's Spark write, while the PCA (beside it) is anywhere from just begun to done: health/
    # half-written, no metrics.json: the resumed run writes health/ again, in the model if one was recorded
    "health/pairs/_temporary",
    "write:metrics.json",  # everything written but metrics.json, the model recorded
]


@pytest.mark.parametrize("kill_at", [*ISSUE_CASES, *OTHER_STATES], ids=lambda p: p)
def test_a_killed_run_is_finished_by_incremental(spark, images, tmp_path, kill_at):
    output = tmp_path / "out"
    _killed_run(images, output, kill_at, tmp_path)
    recorded = _recorded_model(output)
    nothing_written = kill_at == "write:space.json:1"  # a plain run may go on, and takes the lease over
    resumed = _resume_and_check(spark, images, output, refused=not nothing_written)
    if recorded is None:  # killed before the model was recorded: fitted once, over every row
        assert resumed["pca_refit"] is True


def test_a_killed_pca_model_run_resumes_in_that_models_space(spark, images, job_output, tmp_path):
    """Killed inside features/ of a run made with --pca-model: the model was recorded (and copied in) first."""
    output = tmp_path / "out"
    _killed_run(images, output, "features/_temporary", tmp_path, "--pca-model", str(job_output))
    assert _recorded_model(output) == metrics(job_output)["pca_model_id"]
    assert (output / "pca_model" / "identity.json").exists()
    resumed = _resume_and_check(spark, images, output)
    assert resumed["pca_model_id"] == metrics(job_output)["pca_model_id"]


def test_a_killed_incremental_append_leaves_no_rows_twice(spark, images, tmp_path):
    """Killed inside the append of an --incremental run: its committed task files never join features/ later."""
    from fruitjob.job import run
    from fruitjob.options import parse_options

    output = tmp_path / "out"
    first = run(spark, parse_options(_argv(images, output)))
    for index in range(4):
        (images / "Banana" / f"new{index}.jpg").write_bytes((images / "Banana" / "000.jpg").read_bytes())
    _killed_run(images, output, "features/_temporary", tmp_path, "--incremental")
    resumed = run(spark, parse_options(_argv(images, output, "--incremental")))
    verify_output(str(output), fs.LocalFileSystem())
    assert resumed.pca_model_id == first.pca_model_id
    assert not read_parquet(output, "features")["path"].duplicated().any()
