"""Nothing runs on after the flow is gone (issue 20, case 1): SIGHUP, SIGINT and SIGTERM end a command-line run's
remote work, and even a SIGKILL leaves nothing running past ``--step-timeout-minutes``.

Each test runs ``python -m flows.fruit_features --engine emr`` as its own process, in its own session (as a shell
runs a job), against moto in this process and the session's Prefect server. The cluster is tagged so that the fake
cluster leaves its step RUNNING, as moto does; the signal goes to the command's process group (what a closed terminal
or Ctrl-C delivers) once moto has accepted the step, and the assertions read moto's state.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.settings import PREFECT_API_URL

from tasks.aws.tags import TAG_FLOW_RUN
from tests.emr_fixtures import KEY_PAIR, UNPLAYED_TAG
from tests.emr_flow import TEST_JOB

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
STEP_WAIT_S = 240  # the command imports, converts (cached), stages, provisions and submits
EXIT_WAIT_S = 120
STEP_TIMEOUT_MINUTES = 30


@dataclass
class FlowCommand:
    process: subprocess.Popen
    log: Path
    cluster_id: str
    step_id: str

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def wait_exit(self) -> int:
        try:
            return self.process.wait(timeout=EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            pytest.fail(f"the command did not end within {EXIT_WAIT_S}s of the signal:\n{self.output()}")


@pytest.fixture
def run_command(aws, fake_cluster, tmp_path) -> Iterator:
    """Start the command on a cluster it creates (or ``--cluster-id``); returns once moto holds its RUNNING step."""
    from blocks.emr_cluster_config import EmrClusterConfig

    started: list[subprocess.Popen] = []

    def start(*extra: str) -> FlowCommand:
        marker = uuid.uuid4().hex[:8]
        block = f"signals-{marker}"
        EmrClusterConfig(
            key_pair_name=KEY_PAIR, poll_seconds=1, idle_timeout_minutes=60, tags={UNPLAYED_TAG: marker}
        ).save(block)
        seen = {"event": threading.Event()}

        def added(cluster_id: str, tags: dict[str, str]) -> None:
            if tags.get(UNPLAYED_TAG) == marker or cluster_id in extra:
                seen["cluster_id"] = cluster_id
                seen["event"].set()

        job = {**TEST_JOB, "step_timeout_minutes": STEP_TIMEOUT_MINUTES}
        options = [f"--{name.replace('_', '-')}={value}" for name, value in job.items()]
        output = f"s3://{aws.bucket}/signals/{marker}"
        command = [
            sys.executable,
            "-m",
            "flows.fruit_features",
            "--engine",
            "emr",
            "--images",
            aws.images,
            "--output",
            output,
            *options,
            "--cluster-block",
            block,
            *extra,
        ]
        env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
        log = tmp_path / f"{marker}.log"
        with fake_cluster.on_step_added(added), log.open("w") as out:
            process = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
            started.append(process)
            deadline = time.monotonic() + STEP_WAIT_S
            while not seen["event"].wait(0.5):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"no step was submitted (exit {process.poll()}):\n{log.read_text()[-6000:]}")
        emr = aws.client("emr")
        (step,) = emr.list_steps(ClusterId=seen["cluster_id"])["Steps"]
        assert step["Status"]["State"] == "RUNNING"
        return FlowCommand(process, log, seen["cluster_id"], step["Id"])

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _cluster(aws, cluster_id: str) -> dict:
    return aws.client("emr").describe_cluster(ClusterId=cluster_id)["Cluster"]


def _step(aws, cluster_id: str, step_id: str) -> dict:
    return aws.client("emr").describe_step(ClusterId=cluster_id, StepId=step_id)["Step"]


def _flow_run_state(aws, cluster_id: str) -> StateType:
    tags = {tag["Key"]: tag["Value"] for tag in _cluster(aws, cluster_id)["Tags"]}
    with get_client(sync_client=True) as client:
        return client.read_flow_run(uuid.UUID(tags[TAG_FLOW_RUN])).state.type


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_a_signal_terminates_the_cluster_the_run_created(aws, run_command, signum):
    command = run_command()
    os.killpg(command.process.pid, signum)

    assert command.wait_exit() != 0
    assert _cluster(aws, command.cluster_id)["Status"]["State"] == "TERMINATED", command.output()
    if signum != signal.SIGTERM:  # SIGTERM is Prefect's own bridge; the other two are handed to it
        assert f"{signum.name}: ending the run's remote work" in command.output()
    assert _flow_run_state(aws, command.cluster_id) in (StateType.CRASHED, StateType.CANCELLED, StateType.FAILED)


def test_a_hangup_cancels_the_step_on_a_reused_cluster_and_leaves_the_cluster(aws, run_command):
    cluster_id = aws.client("emr").run_job_flow(
        Name="a team's cluster",
        ReleaseLabel="emr-7.13.0",
        Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1, "KeepJobFlowAliveWhenNoSteps": True},
        ServiceRole="EMR_DefaultRole",
        JobFlowRole="EMR_EC2_DefaultRole",
        Tags=[{"Key": UNPLAYED_TAG, "Value": "reused"}],
    )["JobFlowId"]
    command = run_command("--cluster-id", cluster_id)
    os.killpg(command.process.pid, signal.SIGHUP)

    assert command.wait_exit() != 0
    step = _step(aws, cluster_id, command.step_id)
    assert step["Status"]["State"] == "CANCELLED", command.output()
    assert step["ActionOnFailure"] == "CONTINUE"  # a failed step never ends a cluster the run did not create
    assert _cluster(aws, cluster_id)["Status"]["State"] in ("WAITING", "RUNNING")
    aws.client("emr").terminate_job_flows(JobFlowIds=[cluster_id])


def test_after_a_sigkill_the_step_and_its_cluster_end_at_the_step_timeout(aws, fake_cluster, run_command):
    """SIGKILL runs no handler: the step's own deadline and ActionOnFailure end the work, on EMR's clock (played)."""
    command = run_command()
    os.killpg(command.process.pid, signal.SIGKILL)
    command.wait_exit()
    step = _step(aws, command.cluster_id, command.step_id)
    assert step["ActionOnFailure"] == "TERMINATE_CLUSTER"
    assert "exec timeout" in step["Config"]["Args"][2] and str(STEP_TIMEOUT_MINUTES) in step["Config"]["Args"]
    assert _cluster(aws, command.cluster_id)["Status"]["State"] in ("WAITING", "RUNNING")  # nobody ended it

    assert fake_cluster.pass_time(STEP_TIMEOUT_MINUTES - 1, command.cluster_id) == []
    assert _step(aws, command.cluster_id, command.step_id)["Status"]["State"] == "RUNNING"
    assert fake_cluster.pass_time(STEP_TIMEOUT_MINUTES, command.cluster_id) == [command.step_id]
    assert _step(aws, command.cluster_id, command.step_id)["Status"]["State"] == "FAILED"
    assert _cluster(aws, command.cluster_id)["Status"]["State"] == "TERMINATED"


def test_a_hangup_cancels_the_serverless_job_run_and_deletes_the_application(aws, serverless, tmp_path):
    from blocks.emr_serverless_config import EmrServerlessConfig

    marker = uuid.uuid4().hex[:8]
    EmrServerlessConfig(poll_seconds=1, tags={UNPLAYED_TAG: marker}).save(f"signals-{marker}")  # its job run runs on
    started: dict = {"event": threading.Event()}

    def on_start(application_id: str, job_run_id: str, tags: dict) -> None:
        if tags.get(UNPLAYED_TAG) == marker:
            started.update(applicationId=application_id, jobRunId=job_run_id)
            started["event"].set()

    emr_serverless = aws.client("emr-serverless")
    options = [f"--{name.replace('_', '-')}={value}" for name, value in TEST_JOB.items()]
    block, output = f"signals-{marker}", f"s3://{aws.bucket}/signals/{marker}"
    command = [
        sys.executable,
        "-m",
        "flows.fruit_features",
        "--engine",
        "emr-serverless",
        "--images",
        aws.images,
        "--output",
        output,
        *options,
        "--serverless-block",
        block,
    ]
    log = tmp_path / "serverless.log"
    with serverless.on_started(on_start), log.open("w") as out:
        env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + STEP_WAIT_S
            ids = {}
            while not ids:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"no job run RUNNING (exit {process.poll()}):\n{log.read_text()[-6000:]}")
                if started["event"].wait(0.5):
                    found = {key: started[key] for key in ("applicationId", "jobRunId")}
                    if emr_serverless.get_job_run(**found)["jobRun"]["state"] == "RUNNING":
                        ids = found
            os.killpg(process.pid, signal.SIGHUP)
            process.wait(timeout=EXIT_WAIT_S)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    application = emr_serverless.get_application(applicationId=ids["applicationId"])["application"]
    assert emr_serverless.get_job_run(**ids)["jobRun"]["state"] == "CANCELLED", log.read_text()[-6000:]
    assert application["state"] == "TERMINATED"  # moto's state for a deleted application


@pytest.fixture
def signal_handling() -> Iterator:
    """``flows.signals`` installed for the test; the handlers, ``sys.unraisablehook`` and its state restored after."""
    from flows import signals

    saved = {signum: signal.getsignal(signum) for signum in (*signals.ENDING_SIGNALS, signal.SIGTERM)}
    saved_hook = sys.unraisablehook
    try:
        signals.end_runs_on_hangup_and_interrupt()
        yield signals
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
        sys.unraisablehook = saved_hook
        signals._ending.clear()
        signals._raised.clear()


def _run_for(seconds: float) -> None:
    """Run bytecode for a while: a pending signal's handler runs (and raises) here."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass


def _signal_inside_a_finalizer(signum: int) -> None:
    """Deliver ``signum`` while the main thread is inside ``__del__``, where Python drops the handler's exception."""

    class Finalized:
        def __del__(self):
            os.kill(os.getpid(), signum)  # the handler runs at the next bytecode: here, inside __del__
            _run_for(5)  # the handler raises here, and Python drops its exception

    Finalized()  # no reference kept: __del__ runs at once, and its exception is dropped there


def test_a_signal_whose_exception_python_drops_in_a_finalizer_is_delivered_again(signal_handling, capsys):
    """Seen with SIGINT: the handler ran inside a finalizer, Python printed "Exception ignored in" and dropped the
    exception, and the flow went on waiting for its step. The signal is delivered again outside the finalizer."""
    with pytest.raises(SystemExit) as ended:
        _signal_inside_a_finalizer(signal.SIGHUP)
        _run_for(5)  # the signal delivered again raises here
    assert ended.value.code == 128 + signal.SIGHUP
    # handled twice: dropped in the finalizer, then delivered again (once only, without the fix: nothing raised)
    assert capsys.readouterr().err.count("SIGHUP: ending the run's remote work") == 2


def test_a_sigterm_whose_termination_signal_python_drops_in_a_finalizer_is_delivered_again(signal_handling):
    """Seen in CI with SIGTERM: Prefect's bridge raised ``TerminationSignal`` inside a finalizer, Python dropped it, and
    the flow went on waiting for its step (the cluster left running). It is delivered again outside the finalizer."""
    from prefect.exceptions import TerminationSignal
    from prefect.utilities.engine import _prefect_sigterm_handler

    delivered: list[int] = []

    def bridge(signum, frame):  # Prefect's handler, counted
        delivered.append(signum)
        _prefect_sigterm_handler(signum, frame)

    signal.signal(signal.SIGTERM, bridge)  # as the flow engine installs it while a flow runs
    with pytest.raises(TerminationSignal):
        _signal_inside_a_finalizer(signal.SIGTERM)
        _run_for(5)  # the signal delivered again raises here
    assert delivered == [signal.SIGTERM, signal.SIGTERM]  # dropped in the finalizer, then delivered again
