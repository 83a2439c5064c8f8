"""EMR Serverless test fixtures: the job's execution role and the EmrServerlessConfig block in moto, and a fake that
plays job runs by running the real job.

moto 5.2.5 accepts EMR Serverless calls but runs nothing: a new application is STARTED at once, a job run SUCCESS at
once with zero billed resources, a clientToken is not honoured, and ListJobRuns on an application without job runs
answers 404. :class:`FakeServerless` plays AWS's part, in moto's in-process backend only: applications start CREATED
(StartApplication starts them), a resent StartJobRun with the same clientToken gets the same job run, and each job
run goes SUBMITTED -> SCHEDULED -> RUNNING -> SUCCESS or FAILED while the real job runs on the images in the moto
bucket (in the EMR parity environment, Python 3.9 + Spark 3.5, or in this process's Spark session), with the
driver's stderr written where EMR Serverless writes it and billed resources from the time it took.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import NO_HEALTH_PARAMETER
from tests.emr_fixtures import (
    POLL_SECONDS,
    UNPLAYED_TAG,
    AwsEnv,
    _download,
    _environment,
    _upload,
    local_staged,
    playing,
    watching,
)
from tests.fake_emr_outputs import as_if_on_s3

ROLE = "EMRServerlessS3RuntimeRole"
SCHEDULED_S = 0.2  # how long a played job run stays SCHEDULED (two of the tests' polls)
SERVICE = {"Service": "emr-serverless.amazonaws.com"}
TRUST = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": SERVICE}]}
JOB_S3_ACCESS = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            "Resource": "arn:aws:s3:::*/*",
        },
    ],
}
LIST_BUCKETS = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::*"}],
}


def moto_serverless_backends():
    """moto's EMR Serverless backends in every account and region."""
    from moto.emrserverless.models import emrserverless_backends

    for account in list(emrserverless_backends.keys()):
        yield from list(emrserverless_backends[account].values())


def create_role(aws: AwsEnv, name: str, trust: dict = TRUST, s3: bool = True) -> str:
    """A role in moto's IAM: ``trust`` as its trust policy; with ``s3``, the job's S3 access (inline + managed)."""
    iam = aws.client("iam")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    if s3:
        iam.put_role_policy(RoleName=name, PolicyName="fruitflow-job-s3", PolicyDocument=json.dumps(JOB_S3_ACCESS))
        managed = iam.create_policy(PolicyName=f"{name}-list", PolicyDocument=json.dumps(LIST_BUCKETS))["Policy"]
        iam.attach_role_policy(RoleName=name, PolicyArn=managed["Arn"])
    return arn


def _confs(parameters: str) -> dict[str, str]:
    tokens = shlex.split(parameters)
    pairs = [tokens[i + 1] for i, token in enumerate(tokens) if token == "--conf"]
    return dict(pair.split("=", 1) for pair in pairs)


@dataclass
class FakeServerless:
    """Plays EMR Serverless in moto: what tests steer (:meth:`fail_next`, :meth:`parity`, :meth:`on_started`) and the
    only places that reach into moto's EMR Serverless backend."""

    aws: AwsEnv
    spark: object
    runs: list[dict] = field(default_factory=list)
    _fail: list[tuple[str, str]] = field(default_factory=list)
    _parity: list = field(default_factory=list)
    _callbacks: list[Callable] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)
    _cache: dict[tuple, Path] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _wake: threading.Event = field(default_factory=threading.Event)

    def fail_next(self, details: str, stderr: str) -> None:
        """The next job run fails with these stateDetails and this driver stderr (no job is run)."""
        self._fail.append((details, stderr))

    @contextlib.contextmanager
    def parity(self, env) -> Iterator[None]:
        """Job runs started in the block run under ``env`` (tests/parity_env.py), the staged script and package
        downloaded from the moto bucket, with spark-submit, as EMR Serverless would; ``None``: in this process."""
        self._parity.append(env)
        try:
            yield
        finally:
            self._parity.pop()

    @contextlib.contextmanager
    def on_started(self, callback: Callable[[str, str, dict], None]) -> Iterator[None]:
        """Call ``callback(application_id, job_run_id, tags)`` in moto's thread for every StartJobRun in the block."""
        self._callbacks.append(callback)
        try:
            yield
        finally:
            self._callbacks.remove(callback)

    def application(self, application_id: str):
        found = [b.applications[application_id] for b in moto_serverless_backends() if application_id in b.applications]
        return found[0]

    def job_run(self, job_run_id: str):
        runs = [run for b in moto_serverless_backends() for runs in b.job_runs.values() for run in runs]
        return next(run for run in runs if run.id == job_run_id)

    def make_older(self, application_id: str, hours: float, job_run_id: str | None = None) -> None:
        """Move an application's (or a job run's) creation time back: the reaper judges by age."""
        from datetime import timedelta

        target = self.job_run(job_run_id) if job_run_id else self.application(application_id)
        target.created_at -= timedelta(hours=hours)

    # -- moto's backend, patched in the fixture (see serverless) --------------------------------------------------
    def _created(self, application) -> None:
        from moto.core.utils import utcnow

        application.state, application.created_at = "CREATED", utcnow()  # AWS: CREATING -> CREATED, not started

    def _started(self, job_run) -> None:
        from moto.core.utils import utcnow

        job_run.state, job_run.created_at = "SUBMITTED", utcnow()
        for callback in list(self._callbacks):
            callback(job_run.application_id, job_run.id, dict(job_run.tags or {}))
        self._wake.set()  # the watcher plays the job run now, not at its next look

    def watch(self) -> None:
        while watching(self):
            for job_run in [r for b in moto_serverless_backends() for runs in b.job_runs.values() for r in runs]:
                if job_run.id in self._seen or job_run.state != "SUBMITTED":
                    continue
                self._seen.add(job_run.id)
                try:
                    self._play(job_run)
                except Exception:  # noqa: BLE001 - keep watching; the job run stays unfinished, the test times out
                    traceback.print_exc()

    def _play(self, job_run) -> None:
        job_run.state = "SCHEDULED"
        if UNPLAYED_TAG in (job_run.tags or {}):
            job_run.state = "RUNNING"  # and nothing ends it but a cancel
            return
        time.sleep(SCHEDULED_S)  # a moment in the queue, as AWS leaves it: the engine sees SCHEDULED, then RUNNING
        job_run.state = "RUNNING"
        started = time.monotonic()
        if self._fail:
            details, stderr = self._fail.pop(0)
            return self._end(job_run, "FAILED", stderr, started, details)
        try:
            stderr = self._run_job(job_run)
        except Exception as exc:  # noqa: BLE001 - a job error becomes a failed job run, as on EMR Serverless
            stderr = getattr(exc, "stderr", None) or traceback.format_exc()
            details = "Job failed, please check complete logs in configured logging destination. ExitCode: 1."
            return self._end(job_run, "FAILED", stderr, started, details)
        self._end(job_run, "SUCCESS", stderr, started)

    def _end(self, job_run, state: str, stderr: str, started: float, details: str | None = None) -> None:
        log_uri = job_run.configuration_overrides["monitoringConfiguration"]["s3MonitoringConfiguration"]["logUri"]
        bucket, _, prefix = log_uri[len("s3://") :].partition("/")
        key = "/".join(
            p.strip("/")
            for p in (prefix, "applications", job_run.application_id, "jobs", job_run.id, "SPARK_DRIVER", "stderr.gz")
            if p.strip("/")
        )
        self.aws.client("s3").put_object(Bucket=bucket, Key=key, Body=gzip.compress(stderr.encode()))
        confs = _confs(job_run.job_driver["sparkSubmit"].get("sparkSubmitParameters", ""))
        hours = max(time.monotonic() - started, 60.0) / 3600  # AWS bills each worker one minute at least
        cores = int(confs.get("spark.driver.cores", 4)) + int(confs.get("spark.executor.cores", 4))
        memory = sum(int(confs.get(f"spark.{worker}.memory", "14g")[:-1]) for worker in ("driver", "executor"))
        job_run.billed_resource_utilization = {
            "vCPUHour": round(cores * hours, 4),
            "memoryGBHour": round(memory * 1.1 * hours, 4),
            "storageGBHour": 0.0,
        }
        job_run.total_execution_duration_seconds = int(hours * 3600)
        if job_run.state == "CANCELLED":  # cancelled while it ran: AWS keeps the cancel
            return
        job_run.state_details = details
        job_run.state = state

    def _run_job(self, job_run) -> str:
        submit = job_run.job_driver["sparkSubmit"]
        job_args, confs = list(submit["entryPointArguments"]), _confs(submit.get("sparkSubmitParameters", ""))
        value = {name: job_args[job_args.index(name) + 1] for name in ("--images", "--output")}
        env = {k.split(".")[-1]: v for k, v in confs.items() if k.startswith("spark.emr-serverless.driverEnv.")}
        parity = self._parity[-1] if self._parity else None
        key = (parity is not None, *[a for a in job_args if a != value["--output"]])
        s3 = self.aws.client("s3")
        local_out, stderr = self._cache.get(key), "fruitflow INFO replayed by the fake (same input and options)\n"
        if local_out is None:  # a job already run with the same input and options is replayed, to spare Spark
            work = Path(tempfile.mkdtemp(prefix="fake-serverless-"))
            images = _download(s3, value["--images"], work / "images")
            local_out = work / "output"
            local_args = local_staged(s3, [str(images) if a == value["--images"] else a for a in job_args], work)
            local_args[local_args.index("--output") + 1] = str(local_out)
            if parity is None:
                stderr = self._in_process(local_args, env)
            else:
                stderr = self._spark_submit(parity, work, submit["entryPoint"], confs, local_args, env)
            self._cache[key] = local_out
        with tempfile.TemporaryDirectory(prefix="fake-serverless-upload-") as staging:
            as_s3 = Path(staging) / "output"
            shutil.copytree(local_out, as_s3)
            as_if_on_s3(
                as_s3,
                {str(local_out.parent / "images"): value["--images"].rstrip("/"), str(local_out): value["--output"]},
            )
            sse = confs.get("spark.hadoop.fs.s3.enableServerSideEncryption") == "true"
            _upload(s3, as_s3, value["--output"], {"ServerSideEncryption": "AES256"} if sse else {})
        self.runs.append({"job_run_id": job_run.id, "args": job_args, "confs": confs, "parity": parity is not None})
        return stderr

    def _in_process(self, local_args: list[str], env: dict[str, str]) -> str:
        from fruitjob.job import run
        from fruitjob.options import parse_options

        with _environment(env):
            run(self.spark, parse_options(local_args))
        return "fruitflow INFO the job ran in the test process's Spark session\n"

    def _spark_submit(self, parity, work: Path, entry_point: str, confs: dict, args: list[str], env: dict) -> str:
        """``spark-submit --py-files <staged zip> <staged script> args`` under the parity environment's Spark, with the
        staged environment archive (``spark.archives``) unpacked in the working directory when there is one."""
        s3 = self.aws.client("s3")
        staged = {}
        archive = confs.get("spark.archives", "").partition("#")
        for name, uri in (("script", entry_point), ("package", confs["spark.submit.pyFiles"]), ("archive", archive[0])):
            if not uri:
                continue
            bucket, _, key = uri[len("s3://") :].partition("/")
            staged[name] = work / "staged" / key.rsplit("/", 1)[-1]
            staged[name].parent.mkdir(exist_ok=True)
            s3.download_file(bucket, key, str(staged[name]))
        if "archive" in staged:  # unpacked beside the driver as EMR Serverless does (./environment, driverEnv's paths)
            shutil.unpack_archive(staged["archive"], work / archive[2])
        command = parity.submit_command(str(staged["script"]), *args, before=["--py-files", str(staged["package"])])
        done = subprocess.run(
            command, env={**parity.environment(), **env}, cwd=work, capture_output=True, text=True, timeout=600
        )
        if done.returncode != 0:
            raise subprocess.CalledProcessError(done.returncode, command, done.stdout, done.stderr)
        return done.stderr


@pytest.fixture(scope="session")
def serverless(aws, spark) -> Iterator[FakeServerless]:
    """The job's execution role, ``EmrServerlessConfig/fruitflow``, and the job run player (a background thread).

    moto's backend is patched here and only here: to see each application and job run as it is created.
    """
    from moto.emrserverless.models import EMRServerlessBackend

    from blocks.emr_serverless_config import EmrServerlessConfig

    create_role(aws, ROLE)
    EmrServerlessConfig(poll_seconds=POLL_SECONDS, auto_stop_idle_minutes=30).save("fruitflow", overwrite=True)
    player = FakeServerless(aws=aws, spark=spark)
    real_create, real_start = EMRServerlessBackend.create_application, EMRServerlessBackend.start_job_run
    real_list = EMRServerlessBackend.list_job_runs

    def create_application(backend, **kwargs):
        application = real_create(backend, **kwargs)
        player._created(application)
        return application

    def start_job_run(backend, application_id, client_token, **kwargs):
        for job_run in backend.job_runs.get(application_id, []):
            if client_token and job_run.client_token == client_token:
                return job_run  # AWS answers a resent request with the job run it started
        job_run = real_start(backend, application_id=application_id, client_token=client_token, **kwargs)
        player._started(job_run)
        return job_run

    def list_job_runs(backend, application_id, *args, **kwargs):
        if application_id in backend.applications and application_id not in backend.job_runs:
            return []  # AWS: an empty list, not ResourceNotFound
        return real_list(backend, application_id, *args, **kwargs)

    patch = pytest.MonkeyPatch()
    patch.setattr(EMRServerlessBackend, "create_application", create_application)
    patch.setattr(EMRServerlessBackend, "start_job_run", start_job_run)
    patch.setattr(EMRServerlessBackend, "list_job_runs", list_job_runs)
    with playing(player, patch, "fake-emr-serverless"):
        yield player


# health off but in the happy path (tests/conftest.py NO_HEALTH says why)
SERVERLESS_JOB = {"weights": "random", "alpha": 0.35, "pca_components": 4, "batch_size": 8, "step_timeout_minutes": 10}
SERVERLESS_JOB |= NO_HEALTH_PARAMETER


def serverless_flow(images: str, output: str, **parameters):
    """The fruit-features flow with ``engine="emr-serverless"`` and the test job options (``return_state`` passes)."""
    from flows.fruit_features import fruit_features

    return fruit_features(images=images, output=output, engine="emr-serverless", **{**SERVERLESS_JOB, **parameters})
