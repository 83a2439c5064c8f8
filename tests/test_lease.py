"""The output's lease (issue 19, case 9): taking it is atomic, on the local file system and on S3.

Many contenders (threads in several processes) race for one output, free or holding a stale lease, trial after
trial: exactly one wins each time, and the lock on disk names that one. A half-written lock is held, not stale,
until its file is older than the lease; release and renewal touch only a lease that is still ours.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from pathlib import Path

import pytest

PROCESSES = 2
THREADS = 4  # per process: 8 contenders in all
TRIALS = 30
S3_TRIALS = 12  # moto serves every request in this process: fewer trials, same race
LOCK = "_fruitflow.lock"


def _stale_holder() -> dict:
    """A lease last renewed an hour ago by a run on another host: stale for everyone."""
    return {
        "flow_run_id": "crashed-run",
        "host": "elsewhere",
        "pid": 1,
        "token": "old",
        "renewed_at": time.time() - 3600,
    }


def _in_threads(contender, barrier, results) -> None:
    """Run THREADS contenders in this process; one that fails reports it and breaks the barrier for all."""

    def guarded(number: int) -> None:
        try:
            contender(number)
        except BaseException as exc:  # noqa: BLE001 - a failed contender must not leave the others at the barrier
            results.put(("error", os.getpid(), number, repr(exc), False))
            barrier.abort()

    threads = [threading.Thread(target=guarded, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _contend(root: str, trials: int, barrier, results) -> None:
    """One contender per thread; each trial: wait for all, try to take the lease, wait for all, check, release."""
    from fruitjob.errors import JobError
    from fruitjob.lock import Lease

    def contender(number: int) -> None:
        for trial in range(trials):
            output = os.path.join(root, "trial-%02d" % trial, "out")
            lease = Lease(None, output, None)
            barrier.wait()
            try:
                lease.acquire()
                won = True
            except JobError:
                won = False
            barrier.wait()  # every contender has tried: a winner still holds the lease here
            try:
                on_disk = json.loads(Path(output, LOCK).read_text()).get("token")
            except ValueError:  # torn by two writers (what the old read-write-reread lease did)
                on_disk = "unreadable"
            barrier.wait()  # every contender has read the lock: the winner may release it
            if won:
                lease.release()
            results.put((trial, os.getpid(), number, won, on_disk == lease.holder["token"]))

    _in_threads(contender, barrier, results)


def test_threads_in_many_processes_race_for_one_output_and_exactly_one_wins_every_time(tmp_path):
    for trial in range(TRIALS):
        output = tmp_path / ("trial-%02d" % trial) / "out"
        if trial % 2:  # every other trial: all contenders judge the old lease stale and race to take it over
            output.mkdir(parents=True)
            (output / LOCK).write_text(json.dumps(_stale_holder()))
    _race(_contend, str(tmp_path), TRIALS)
    assert not any((tmp_path / ("trial-%02d" % t) / "out" / LOCK).exists() for t in range(TRIALS)), "all released"


def _dead_pid() -> int:
    """The pid of a process of this host that has exited."""
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return dead.pid


def test_a_half_written_lock_is_held_until_its_file_is_older_than_the_lease(tmp_path):
    from fruitjob.errors import JobError
    from fruitjob.lock import LEASE_SECONDS, Lease

    lock = tmp_path / LOCK
    lock.write_text('{"flow_run_id": "writing-now", "host": "els')  # cut short: its writer may be mid-write
    with pytest.raises(JobError, match="holds a lock that cannot be read, written 0 s ago"):
        Lease(None, str(tmp_path), None).acquire()
    assert lock.read_text().endswith('"els'), "left as it was"
    old = time.time() - LEASE_SECONDS - 5
    os.utime(lock, (old, old))
    lease = Lease(None, str(tmp_path), "next-run").acquire()
    assert json.loads(lock.read_text())["token"] == lease.holder["token"]
    lease.release()
    assert not lock.exists()


def test_renewal_and_release_leave_a_lease_another_run_has_taken_over(tmp_path):
    from fruitjob.lock import Lease

    first = Lease(None, str(tmp_path), "first").acquire()
    assert first.renew() is True
    stale = {**json.loads((tmp_path / LOCK).read_text()), "renewed_at": time.time() - 3600}
    (tmp_path / LOCK).write_text(json.dumps(stale))  # as if the first run had stopped renewing an hour ago
    second = Lease(None, str(tmp_path), "second").acquire()
    assert first.renew() is False, "the first run learns it has lost the lease"
    first.release()
    assert json.loads((tmp_path / LOCK).read_text())["flow_run_id"] == "second", "not deleted by the first run"
    second.release()
    assert not (tmp_path / LOCK).exists()


# A holder SIGKILLed inside its renewal, while it holds its lease's takeover marker: the renewal's write announces the
# point (a file appears) and then never returns, so the kill lands between taking the marker and removing it.
_KILLED_WHILE_RENEWING = """
import pathlib, sys, time
from fruitjob.lock import Lease

output, ready = sys.argv[1], pathlib.Path(sys.argv[2])
lease = Lease(None, output, "killed-run").acquire()

def write_then_hang():
    ready.write_text(lease.holder["token"])
    time.sleep(600)
    return b""

lease._local.replace_if_token(lease.holder["token"], write_then_hang)
"""


def test_a_holder_killed_inside_its_renewal_does_not_block_the_output(tmp_path):
    import signal
    import subprocess
    import sys

    from fruitjob.lock import Lease

    output, ready = tmp_path / "out", tmp_path / "inside-the-renewal"
    child = subprocess.Popen([sys.executable, "-c", _KILLED_WHILE_RENEWING, str(output), str(ready)])
    deadline = time.monotonic() + 60
    while not ready.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # polls a real condition (the file), bounded
    assert ready.exists(), "the child reached its renewal"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    killed_token = ready.read_text()
    assert (output / (LOCK + ".takeover-" + killed_token)).exists(), "killed while it held its marker"
    lease = Lease(None, str(output), "next").acquire()  # the holder's process is gone: stale, marker orphaned
    assert json.loads((output / LOCK).read_text())["token"] == lease.holder["token"]
    lease.release()
    assert not (output / LOCK).exists()


def test_the_job_accepts_a_lease_its_own_flow_run_holds_and_leaves_it_to_the_flow(tmp_path):
    from fruitjob.errors import JobError
    from fruitjob.lock import Lease

    flows = {"flow_run_id": "run-1", "taken_by": "flow", "host": "prefect-worker", "pid": 7, "token": "f"}
    (tmp_path / LOCK).write_text(json.dumps({**flows, "renewed_at": time.time()}))
    with pytest.raises(JobError, match=r"being written by another run \(flow run run-1"):
        Lease(None, str(tmp_path), "run-2").acquire()
    with pytest.raises(JobError, match=r"being written by another run \(flow run run-1"):
        Lease(None, str(tmp_path), None).acquire()  # spark-submit without the flow
    job = Lease(None, str(tmp_path), "run-1").acquire()
    job.release()
    assert json.loads((tmp_path / LOCK).read_text())["token"] == "f", "the flow releases its own lease"


S3_BUCKET = "fruitflow-lease-race"


def _s3_client(endpoint: str):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _contend_on_s3(endpoint: str, trials: int, barrier, results) -> None:
    """As :func:`_contend`, for the flow's S3 lease: one boto3 client per contender, all against moto's server."""
    from tasks.aws.output_lease import OutputLeaseError, S3OutputLease

    def contender(number: int) -> None:
        s3 = _s3_client(endpoint)
        for trial in range(trials):
            output = "s3://%s/trial-%02d/out" % (S3_BUCKET, trial)
            lease = S3OutputLease(s3, output, "run-%d-%d" % (os.getpid(), number))
            barrier.wait()
            try:
                lease.acquire()
                won = True
            except OutputLeaseError:
                won = False
            barrier.wait()
            body = s3.get_object(Bucket=S3_BUCKET, Key="trial-%02d/out/%s" % (trial, LOCK))["Body"].read()
            barrier.wait()
            if won:
                lease.release()
            results.put((trial, os.getpid(), number, won, json.loads(body)["token"] == lease.holder["token"]))

    _in_threads(contender, barrier, results)


def _race(target, where: str, trials: int) -> dict[int, list]:
    """Run ``target`` in PROCESSES spawned processes of THREADS contenders each; the winners of each trial."""
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(PROCESSES * THREADS, timeout=60)
    results = spawn.Queue()
    workers = [spawn.Process(target=target, args=(where, trials, barrier, results)) for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    rows: list[tuple] = []
    while len(rows) < PROCESSES * THREADS * trials and not any(row[0] == "error" for row in rows):
        rows.append(results.get(timeout=120))
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert [row for row in rows if row[0] == "error"][:1] == []
    winners = {trial: [row for row in rows if row[0] == trial and row[3]] for trial in range(trials)}
    assert {trial: len(won) for trial, won in winners.items() if len(won) != 1} == {}, "exactly one winner per trial"
    assert all(won[0][4] for won in winners.values()), "the lock names the winner"
    return winners


@pytest.mark.slow
def test_on_s3_threads_in_many_processes_race_for_one_output_and_exactly_one_wins_every_time(moto_endpoint):
    s3 = _s3_client(moto_endpoint)
    s3.create_bucket(Bucket=S3_BUCKET)
    for trial in range(1, S3_TRIALS, 2):  # every other trial: a stale lease that all contenders race to take over
        s3.put_object(Bucket=S3_BUCKET, Key="trial-%02d/out/%s" % (trial, LOCK), Body=json.dumps(_stale_holder()))
    _race(_contend_on_s3, moto_endpoint, S3_TRIALS)
    assert s3.list_objects_v2(Bucket=S3_BUCKET).get("KeyCount") == 0, "every winner released its lease"


def test_on_s3_renewal_and_release_leave_a_lease_another_run_has_taken_over(moto_endpoint):
    from tasks.aws.output_lease import OutputLeaseError, S3OutputLease, lease_problem, read_lock

    s3 = _s3_client(moto_endpoint)
    s3.create_bucket(Bucket=S3_BUCKET)
    output = "s3://%s/renewal/out" % S3_BUCKET
    first = S3OutputLease(s3, output, "first").acquire()
    assert first.renew() is True
    assert lease_problem(s3, output, "first") is None, "a run's own lease is no problem for it"
    assert "being written by another run (flow run first" in lease_problem(s3, output, "second")
    with pytest.raises(OutputLeaseError, match=r"being written by another run \(flow run first"):
        S3OutputLease(s3, output, "second").acquire()
    stale = {**read_lock(s3, output).holder, "renewed_at": time.time() - 3600}
    s3.put_object(Bucket=S3_BUCKET, Key="renewal/out/" + LOCK, Body=json.dumps(stale))  # first stopped renewing
    assert lease_problem(s3, output, "second") is None, "a stale lease is no problem"
    second = S3OutputLease(s3, output, "second").acquire()
    assert first.renew() is False, "the ETag changed: the first run learns it has lost the lease"
    first.release()
    assert read_lock(s3, output).holder["flow_run_id"] == "second", "not deleted by the first run"
    second.release()
    assert read_lock(s3, output) is None
    s3.put_object(Bucket=S3_BUCKET, Key="renewal/out/" + LOCK, Body=b'{"flow_run_id": "cut sh')
    assert "holds a lock that cannot be read" in lease_problem(s3, output, "third"), "unreadable and new: held"


def test_the_emr_flow_holds_the_s3_lease_while_its_step_runs_and_releases_it_when_the_step_fails(aws, fake_cluster):
    from tasks.aws.remote_wait import RemoteRunFailed
    from tests.emr_flow import emr_test_flow

    key = "out/leased-run/" + LOCK
    held_while_step_added: list[dict] = []

    def added(_cluster_id: str, _tags: dict[str, str]) -> None:  # in moto's server thread, as EMR accepts the step
        held_while_step_added.append(json.loads(aws.client("s3").get_object(Bucket=aws.bucket, Key=key)["Body"].read()))

    fake_cluster.fail_next("Step failed with exitCode 1", "fruitflow ERROR the job failed\n")
    with fake_cluster.on_step_added(added), pytest.raises(RemoteRunFailed):
        emr_test_flow(images=aws.images, output=f"s3://{aws.bucket}/out/leased-run")
    (holder,) = held_while_step_added
    assert holder["taken_by"] == "flow"
    steps = aws.step_arguments()  # of every cluster of the session's moto: find this run's step by its id
    assert any(holder["flow_run_id"] in args for args in steps), "the step tells the job its flow run id"
    assert aws.client("s3").list_objects_v2(Bucket=aws.bucket, Prefix=key)["KeyCount"] == 0, "released on failure"
