"""EMR test fixtures: moto in server mode, the fruitflow blocks pointed at it, and a fake cluster that runs steps.

moto accepts EMR calls but never runs a step. :class:`FakeCluster` plays the cluster: a background thread watches
moto's in-process EMR backend for new steps, downloads the step's input images from the moto bucket, runs the real
Spark job in this process's session, uploads the output back, and marks the step COMPLETED (or FAILED, with a
stderr.gz at the log URI, as EMR would write it). For tests marked ``cluster_stack`` it runs the step's own command
instead, on Python 3.9 + Spark 3.5.6 with the archive the flow staged (tests/fake_cluster_stack.py).

Everything that reaches into moto's internals (step and cluster states, creation times, a cluster held while it
bootstraps, steps noticed as they are added) is a method of :class:`FakeCluster`, and only there. Our own code is
never patched: a test hands a task :func:`moto_clients`, whose ``customize`` registers the botocore handlers it
needs (:func:`answer_ok`, :func:`error_response`, a recorder) on every client made. The flow, which makes its own
clients from the blocks, is reached through the session's :class:`AwsCallRecorder` (``aws_calls.on(...)``).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.awsrequest import AWSResponse

if TYPE_CHECKING:
    from tasks.aws.clients import AwsClients

from tests.fake_cluster_stack import ClusterStack, StepProcessFailed, delete_absent, download_staged
from tests.fake_emr_outputs import as_if_on_s3
from tests.prefect_server import free_port

BUCKET = "fruitflow-test"
REGION = "us-east-1"
KEY_PAIR = "fruitflow-test-key"
JOB_SCRIPT_NAME = "extract_features.py"
UNPLAYED_TAG = "fruitflow-test:unplayed"  # a cluster tagged so (EmrClusterConfig.tags) keeps its steps RUNNING
# The blocks' delay between status checks in tests: the fakes change states in this process, a check costs a few ms.
POLL_SECONDS = 0.1
WATCH_TICK_S = 0.2  # how often a player looks at moto when no hook woke it


@dataclass
class AwsEnv:
    """What the EMR tests need to reach moto: the endpoint, a boto3 session, the bucket and images prefix."""

    endpoint: str
    session: boto3.Session
    bucket: str = BUCKET
    images: str = f"s3://{BUCKET}/images"

    def client(self, service: str):
        return self.session.client(service, endpoint_url=self.endpoint, region_name=REGION)

    def clusters(self, states: list[str] | None = None) -> dict[str, str]:
        """Every cluster id moto knows -> its state."""
        emr = self.client("emr")
        kwargs = {"ClusterStates": states} if states else {}
        pages = emr.get_paginator("list_clusters").paginate(**kwargs)
        return {c["Id"]: c["Status"]["State"] for page in pages for c in page["Clusters"]}

    def cluster_tags(self) -> dict[str, dict[str, str]]:
        """Every cluster id moto knows -> its tags (as DescribeCluster returns them)."""
        emr = self.client("emr")
        tags = {}
        for cluster_id in self.clusters():
            cluster = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
            tags[cluster_id] = {tag["Key"]: tag["Value"] for tag in cluster.get("Tags", [])}
        return tags

    def clusters_tagged(self, key: str, value: str) -> dict[str, str]:
        """Cluster id -> state of every cluster carrying the tag ``key=value``."""
        states, tagged = self.clusters(), self.cluster_tags()
        return {cluster_id: states[cluster_id] for cluster_id, tags in tagged.items() if tags.get(key) == value}

    def step_arguments(self) -> list[list[str]]:
        """The command line (``HadoopJarStep`` args) of every step of every cluster moto knows."""
        emr = self.client("emr")
        return [
            step["Config"]["Args"]
            for cluster_id in self.clusters()
            for page in emr.get_paginator("list_steps").paginate(ClusterId=cluster_id)
            for step in page["Steps"]
        ]


def moto_clients(handlers: dict[str, Callable] | None = None, block: str = "fruitflow") -> AwsClients:
    """The clients a task is handed: from the ``block`` AwsCredentials (pointed at moto), each with ``handlers``
    (botocore event -> handler, e.g. ``{"before-call.emr.CancelSteps": answer_ok}``) registered when it is made."""
    from prefect_aws import AwsCredentials

    from tasks.aws.clients import AwsClients

    def customize(client) -> None:
        for event, handler in (handlers or {}).items():
            client.meta.events.register(event, handler)

    return AwsClients(AwsCredentials.load(block), customize=customize)


def add_placeholder_step(aws, cluster_id: str, token: str, flow_run_id: str | None = None) -> str:
    """A fruitflow step whose files are placeholders (nothing plays it: moto leaves the first step RUNNING, later
    ones PENDING); its id."""
    from tasks.emr.steps import step_definition

    step = step_definition(
        cluster_id=cluster_id,
        script_uri="s3://b/j.py",
        py_files_uri="s3://b/j.zip",
        job_args=[],
        environment_sha256=64 * "0",
        timeout_minutes=10,
        environment_uri="s3://b/e.tar.gz",
        token=token,
        flow_run_id=flow_run_id or str(uuid.uuid4()),
    )
    return aws.client("emr").add_job_flow_steps(JobFlowId=cluster_id, Steps=[step])["StepIds"][0]


def save_moto_blocks(name: str, endpoint: str) -> None:
    """The AwsCredentials and S3Bucket blocks named ``name``, pointed at the moto server (what the engines load)."""
    from prefect_aws import AwsCredentials, S3Bucket
    from prefect_aws.client_parameters import AwsClientParameters

    credentials = AwsCredentials(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name=REGION,
        aws_client_parameters=AwsClientParameters(endpoint_url=endpoint),
    )
    credentials.save(name, overwrite=True)
    S3Bucket(bucket_name=BUCKET, bucket_folder="fruitflow", credentials=credentials).save(name, overwrite=True)


@contextlib.contextmanager
def playing(player, patch: pytest.MonkeyPatch, name: str) -> Iterator[None]:
    """``player.watch`` in a background thread while moto is patched; then both stopped, and the player's downloads
    (its ``_cache``) removed. The fake EMR cluster's and the fake EMR Serverless's lifecycle."""
    thread = threading.Thread(target=player.watch, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        patch.undo()
        player._stop.set()
        player._wake.set()
        thread.join(timeout=30)
        for folder in {path.parent for path in player._cache.values()}:
            shutil.rmtree(folder, ignore_errors=True)


def watching(player) -> bool:
    """A player's watch loop: wait until its moto hook wakes it (a step added, a job run started) or
    ``WATCH_TICK_S`` passed (what no hook shows: a state a test set); False once the player is stopped."""
    player._wake.wait(WATCH_TICK_S)
    player._wake.clear()
    return not player._stop.is_set()


def flow_run_in(state) -> str:
    """The id of a flow run (of a flow that does nothing) in ``state``: a run the reaper asks Prefect about."""
    from prefect import flow
    from prefect.client.orchestration import get_client

    @flow(name="some-run")
    def some_run() -> None:
        pass

    with get_client(sync_client=True) as prefect:
        return str(prefect.create_flow_run(some_run, state=state).id)


def answer_ok(**_kwargs) -> tuple[AWSResponse, dict]:
    """A ``before-call`` answer: HTTP 200 and an empty reply, where moto cannot answer as EMR does (CancelSteps: 500;
    TerminateJobFlows on an ended cluster: moto rewrites its state)."""
    return AWSResponse("moto", 200, {}, None), {}


def error_response(code: str, status: int = 400) -> Callable:
    """A ``before-send`` answer: AWS refusing the call with ``code`` (not retryable: botocore raises it at once)."""

    def answer(request, **_kwargs) -> AWSResponse:
        body = json.dumps({"__type": code, "message": "injected by the test"}).encode()
        return AWSResponse(request.url, status, {"Content-Type": "application/x-amz-json-1.1"}, _Raw(body))

    return answer


@dataclass
class AwsCallRecorder:
    """Every AWS operation our code calls (through ``AwsCredentials`` blocks), and throttling to inject into them.

    Hooks go on each client through botocore events: ``provide-client-params`` records (service's IAM prefix,
    operation, parameters); ``before-send`` answers armed operations with a throttling error, which botocore's
    standard retry mode retries with backoff (a handler that raised would not be retried).
    """

    calls: list[tuple[str, str, dict]] = field(default_factory=list)
    access_keys: set[str] = field(default_factory=set)
    injected: list[str] = field(default_factory=list)
    _throttle: dict[str, int] = field(default_factory=dict)
    _handlers: list[tuple[str, object]] = field(default_factory=list)

    @contextlib.contextmanager
    def on(self, event: str, handler):
        """Run ``handler`` for botocore ``event`` (e.g. ``before-send.emr.AddJobFlowSteps``) on every client of ours
        while the block is active; its return value is the event's answer (a response, a short-circuit)."""
        entry = (event, handler)
        self._handlers.append(entry)
        try:
            yield self
        finally:
            self._handlers.remove(entry)

    def _dispatch(self, event_name: str, **kwargs):
        for event, handler in list(self._handlers):
            if event_name == event or event_name.startswith(event + "."):
                answer = handler(event_name=event_name, **kwargs)
                if answer is not None:
                    return answer
        return None

    def actions(self) -> set[str]:
        """The IAM-style names of what was called, e.g. ``elasticmapreduce:RunJobFlow``."""
        return {f"{prefix}:{operation}" for prefix, operation, _params in self.calls}

    def params(self, action: str) -> list[dict]:
        return [params for prefix, operation, params in self.calls if f"{prefix}:{operation}" == action]

    @contextlib.contextmanager
    def throttling(self, times: dict[str, int]):
        """Answer the next ``times[action]`` calls of each action with ThrottlingException (S3: 503 SlowDown)."""
        self._throttle = dict(times)
        try:
            yield self
        finally:
            self._throttle = {}

    def _record(self, params, model, **_kwargs) -> None:
        kept = {key: value for key, value in params.items() if key != "Body"}
        self.calls.append((model.service_model.signing_name, model.name, kept))

    def _maybe_throttle(self, request, event_name: str, **_kwargs):
        service, operation = event_name.split(".")[1:3]
        prefix = {"emr": "elasticmapreduce"}.get(service, service)
        action = f"{prefix}:{operation}"
        if self._throttle.get(action, 0) <= 0:
            return None
        self._throttle[action] -= 1
        self.injected.append(action)
        if service == "s3":
            body = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
            return AWSResponse(request.url, 503, {"Content-Type": "application/xml"}, _Raw(body))
        body = b'{"__type": "ThrottlingException", "message": "Rate exceeded"}'
        return AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.1"}, _Raw(body))

    def hook(self, made) -> None:
        made.meta.events.register("provide-client-params", self._record)
        made.meta.events.register("before-send", self._maybe_throttle)
        for stage in ("before-send", "before-call"):
            made.meta.events.register(stage, self._dispatch)
        credentials = made._request_signer._credentials
        if credentials is not None:
            self.access_keys.add(credentials.access_key)


class _Raw:
    """The raw body botocore reads from a response."""

    def __init__(self, data: bytes):
        self._data = data

    def stream(self, **_kwargs):
        yield self._data


def _moto_clusters():
    """moto's cluster objects in every account and region (a bare endpoint files them under us-east-1)."""
    from moto.emr.models import emr_backends

    for account in list(emr_backends.keys()):
        for backend in list(emr_backends[account].values()):
            yield from list(backend.clusters.values())


@dataclass
class FakeCluster:
    """Plays EMR's part in moto: runs the job's steps, and does to clusters and steps what moto never does itself.

    Tests steer the player with :meth:`fail_next`, :meth:`fail_next_bootstrap` and :meth:`ignore`; the other methods
    are the only places a test reaches into moto's backend (a state EMR would reach, a cluster held while it
    bootstraps, a step noticed as it is added, an older creation time).
    """

    aws: AwsEnv
    spark: object
    runs: list[dict] = field(default_factory=list)
    # Set for tests marked ``cluster_stack``: their steps run as on a node (tests/fake_cluster_stack.py).
    stack: ClusterStack | None = None
    _fail: list[tuple[str, str]] = field(default_factory=list)
    _ignored: set[str] = field(default_factory=set)
    _bootstrap_failures: list[str] = field(default_factory=list)
    _holds: list[float | None] = field(default_factory=list)
    _held: list = field(default_factory=list)
    _step_callbacks: list[Callable[[str, dict[str, str]], None]] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)
    _cache: dict[tuple, Path] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _wake: threading.Event = field(default_factory=threading.Event)

    def fail_next(self, reason: str, stderr: str) -> None:
        """The next step fails with this EMR reason, and this text as its stderr.gz in the log URI."""
        self._fail.append((reason, stderr))

    def fail_next_bootstrap(self, message: str) -> None:
        """The next cluster created ends TERMINATED_WITH_ERRORS (BOOTSTRAP_FAILURE) before it is ever ready."""
        self._bootstrap_failures.append(message)

    @contextlib.contextmanager
    def hold_bootstrapping(self, seconds: float | None = None) -> Iterator[None]:
        """Clusters created inside the block stay BOOTSTRAPPING (moto makes them WAITING at once): ``seconds`` after
        their creation, or else until the block ends, they finish bootstrapping (WAITING), as a slow bootstrap would.
        """
        self._holds.append(seconds)
        try:
            yield
        finally:
            self._holds.pop()
            for cluster in self._held:
                self._bootstrapped(cluster)
            self._held.clear()

    @staticmethod
    def _bootstrapped(cluster) -> None:
        if cluster.state == "BOOTSTRAPPING":  # not if it was terminated meanwhile
            cluster.state = "WAITING"

    @contextlib.contextmanager
    def on_step_added(self, callback: Callable[[str, dict[str, str]], None]) -> Iterator[None]:
        """Call ``callback(cluster_id, cluster_tags)`` in moto's server thread each time a step is added, while the
        block is active."""
        self._step_callbacks.append(callback)
        try:
            yield
        finally:
            self._step_callbacks.remove(callback)

    def set_cluster_state(self, cluster_id: str, state: str) -> None:
        """Put a cluster in ``state`` (e.g. TERMINATED_WITH_ERRORS, as EMR leaves one whose nodes failed)."""
        self._cluster(cluster_id).state = state

    def set_step_state(self, cluster_id: str, step_id: str, state: str) -> None:
        """Put a step in ``state`` (e.g. INTERRUPTED: a spot node lost under it)."""
        (step,) = [step for step in self._cluster(cluster_id).steps if step.id == step_id]
        step.state = state

    def make_older(self, cluster_id: str, hours: float) -> None:
        """Move a cluster's creation time ``hours`` back (the reaper judges by age)."""
        self._cluster(cluster_id).creation_datetime -= timedelta(hours=hours)

    def answer_cancel_steps(self, params: dict, **_kwargs) -> tuple[AWSResponse, dict]:
        """A ``before-call.emr.CancelSteps`` answer doing what EMR does (the steps end CANCELLED); moto 5.2.5
        answers CancelSteps with HTTP 500."""
        request = json.loads(params["body"])
        for step in self._cluster(request["ClusterId"]).steps:
            if step.id in request["StepIds"]:
                step.state = "CANCELLED"
        return answer_ok()

    def pass_time(self, minutes: float, cluster_id: str) -> list[str]:
        """Play ``minutes`` of EMR's clock on a cluster's steps that moto leaves RUNNING (unplayed clusters): a step
        whose command runs under ``timeout`` with a deadline within ``minutes`` of its start ends as ``timeout`` ends
        it (exit 124, FAILED), and its ActionOnFailure applies (TERMINATE_CLUSTER ends its cluster). Returns the ids of
        the steps that timed out. The deadline is read from the step's own wrapper (tasks/emr/steps.py).
        """
        timed_out = []
        cluster = self._cluster(cluster_id)
        for step in [step for step in cluster.steps if step.state == "RUNNING"]:
            deadline = _step_deadline_minutes(step.args)
            if deadline is not None and deadline <= minutes:
                self._finish_failed(cluster, step, "Step failed with exitCode 124", "timeout: the step overran\n")
                timed_out.append(step.id)
        return timed_out

    def _cluster(self, cluster_id: str):
        (cluster,) = [cluster for cluster in _moto_clusters() if cluster.id == cluster_id]
        return cluster

    def _created(self, cluster) -> None:
        """Called by moto's run_job_flow (patched in the fixture) for every new cluster."""
        if self._bootstrap_failures:
            cluster.last_state_change_reason = self._bootstrap_failures.pop(0)
            cluster.__class__ = _bootstrap_failed_class()
            cluster.state = "TERMINATED_WITH_ERRORS"
        elif self._holds:
            cluster.state = "BOOTSTRAPPING"
            self._held.append(cluster)
            if self._holds[-1] is not None:
                timer = threading.Timer(self._holds[-1], self._bootstrapped, [cluster])
                timer.daemon = True
                timer.start()

    def _steps_added(self, cluster) -> None:
        """Called by moto's add_job_flow_steps (patched in the fixture) after it added steps to ``cluster``."""
        for callback in list(self._step_callbacks):
            callback(cluster.id, dict(cluster._tags))
        self._wake.set()  # the watcher plays the step now, not at its next look

    def ignore(self, cluster_id: str) -> None:
        """Leave this cluster's steps alone (tests that drive step states themselves).

        A cluster created with the ``UNPLAYED_TAG`` tag is left alone from the start (no race with the watcher).
        """
        self._ignored.add(cluster_id)

    def watch(self) -> None:
        while watching(self):
            for cluster in _moto_clusters():
                if cluster.id in self._ignored or UNPLAYED_TAG in cluster._tags:
                    continue
                for step in list(cluster.steps):
                    if step.id not in self._seen and step.state in ("PENDING", "RUNNING"):
                        self._seen.add(step.id)
                        if any(arg.endswith(JOB_SCRIPT_NAME) for arg in step.args):  # else not a fruitflow job
                            self._play_safely(cluster, step)

    def _play_safely(self, cluster, step) -> None:
        try:
            self._play(cluster, step)
        except Exception:  # noqa: BLE001 - keep watching; the step stays unfinished and the test times out loudly
            traceback.print_exc()

    def _play(self, cluster, step) -> None:
        if self._fail:
            reason, stderr = self._fail.pop(0)
            self._finish_failed(cluster, step, reason, stderr)
            return
        try:
            self._run_job(cluster, step)
        except StepProcessFailed as exc:  # the step's own process failed: its exit code and stderr, as on EMR
            self._finish_failed(cluster, step, f"Step failed with exitCode {exc.returncode}", exc.stderr)
            return
        except Exception:  # noqa: BLE001 - a job error becomes a failed step, as on EMR
            self._finish_failed(cluster, step, "Step failed with exitCode 1", traceback.format_exc())
            return
        step.state = "COMPLETED"

    def _run_job(self, cluster, step) -> None:
        args = list(step.args)
        job_args = args[next(i for i, a in enumerate(args) if a.endswith(JOB_SCRIPT_NAME)) + 1 :]
        value = {name: job_args[job_args.index(name) + 1] for name in ("--images", "--output")}
        s3 = self.aws.client("s3")
        if self.stack is not None:
            local_out, prefixes, _stderr = self.stack.run(s3, step.id, args)
            replayed = False
        else:
            _check_environment(s3, args)
            local_out, replayed = self._run_in_session(cluster, step, job_args, value, s3)
            prefixes = {
                str(local_out.parent / "images"): value["--images"].rstrip("/"),
                str(local_out): value["--output"],
            }
        with tempfile.TemporaryDirectory(prefix="fake-emr-upload-") as staging:
            as_s3 = Path(staging) / "output"
            shutil.copytree(local_out, as_s3)
            as_if_on_s3(as_s3, prefixes)
            if self.stack is not None:  # its local output is the whole output, an incremental run's too
                delete_absent(s3, as_s3, value["--output"])
            _upload(s3, as_s3, value["--output"], _emrfs_upload_args(cluster))
        self.runs.append(
            {
                "cluster_id": cluster.id,
                "step_id": step.id,
                "args": job_args,
                "replayed": replayed,
                "cluster_stack": self.stack is not None,
            }
        )

    def _run_in_session(self, cluster, step, job_args: list[str], value: dict[str, str], s3) -> tuple[Path, bool]:
        """The job in this process's Spark session; a job already run with the same input and options is replayed."""
        from fruitjob.job import run
        from fruitjob.options import parse_options

        key = tuple(a for a in job_args if a != value["--output"])
        local_out = self._cache.get(key)
        if local_out is not None:
            return local_out, True
        work = Path(tempfile.mkdtemp(prefix="fake-emr-"))
        images = _download(s3, value["--images"], work / "images")
        local_out = work / "output"
        local_args = local_staged(s3, [str(images) if a == value["--images"] else a for a in job_args], work)
        local_args[local_args.index("--output") + 1] = str(local_out)
        env = {"FRUITFLOW_STEP_ID": step.id}  # engine and cluster come as job options (--engine, --cluster-id)
        with _environment(env):
            run(self.spark, parse_options(local_args))
        self._cache[key] = local_out
        return local_out, False

    def _finish_failed(self, cluster, step, reason: str, stderr: str) -> None:
        step.failure_details = {"Reason": "Unknown Error.", "Message": reason}
        if cluster.log_uri:  # EMR writes step logs only where the cluster has a log URI
            log_uri = cluster.log_uri.replace("s3n://", "s3://").rstrip("/")
            bucket, _, prefix = log_uri[len("s3://") :].partition("/")
            key = "/".join(p for p in (prefix, cluster.id, "steps", step.id, "stderr.gz") if p)
            self.aws.client("s3").put_object(Bucket=bucket, Key=key, Body=gzip.compress(stderr.encode()))
            step.failure_details["LogFile"] = f"s3://{bucket}/{key}"
        step.last_state_change_reason = reason
        step.__class__ = _failed_step_class()
        step.state = "FAILED"
        if step.action_on_failure in ("TERMINATE_CLUSTER", "TERMINATE_JOB_FLOW"):
            # as EMR does: the steps after it are cancelled and the cluster ends itself, whoever watches it
            for later in cluster.steps:
                if later.state == "PENDING":
                    later.state = "CANCELLED"
            cluster.terminate()


def _wrapper_argument(args: list[str], name: str) -> str | None:
    """The value a step's ``bash -c WRAPPER NAME ARGS...`` command gives its variable ``name`` (``name="$N"`` in the
    wrapper of tasks/emr/steps.py; ``$0`` is NAME); None for another command."""
    if len(args) < 4 or args[:2] != ["bash", "-c"]:
        return None
    found = re.search(rf'\b{name}="\$(\d)"', args[2])
    return args[3 + int(found.group(1))] if found else None


def _step_deadline_minutes(args: list[str]) -> float | None:
    """The minutes after which a step's command ends itself under ``timeout``; None for a command with no deadline."""
    deadline = _wrapper_argument(args, "deadline")
    return float(deadline) if deadline is not None and "exec timeout" in args[2] else None


def _check_environment(s3, args: list[str]) -> None:
    """What the wrapper does before it unpacks the archive: its bytes on S3 must have the sha256 the step names."""
    uri, digest = _wrapper_argument(args, "environment"), _wrapper_argument(args, "digest")
    if uri is None or digest is None:
        return
    bucket, _, key = uri[len("s3://") :].partition("/")
    found = hashlib.sha256(s3.get_object(Bucket=bucket, Key=key)["Body"].read()).hexdigest()
    if found != digest:
        raise StepProcessFailed(1, f"fruitflow: {uri} is not the archive the flow staged (sha256 {digest})\n")


def _failed_step_class():
    """moto's Step has no FailureDetails; a subclass adds them to the status EMR returns."""
    from moto.emr.models import Step

    class FailedStep(Step):
        @property
        def status(self) -> dict:
            return {**super().status, "FailureDetails": self.failure_details}

    return FailedStep


def _bootstrap_failed_class():
    """moto's Cluster status has no reason code; EMR's says BOOTSTRAP_FAILURE."""
    from moto.emr.models import Cluster

    class BootstrapFailedCluster(Cluster):
        @property
        def status(self) -> dict:
            status = super().status
            status["StateChangeReason"] = {"Code": "BOOTSTRAP_FAILURE", "Message": self.last_state_change_reason}
            return status

    return BootstrapFailedCluster


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def _download(s3, uri: str, target: Path) -> Path:
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    prefix = prefix.rstrip("/") + "/"
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            local = target / item["Key"][len(prefix) :]
            local.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, item["Key"], str(local))
    return target


STAGED_FILE_OPTIONS = ("--tflite-model", "--weights")


def local_staged(s3, job_args: list[str], folder: Path) -> list[str]:
    """``job_args`` with each staged file the job reads (``--tflite-model``, ``--weights``) on S3 replaced by a
    local copy (:func:`tests.fake_cluster_stack.download_staged`, its manifest beside it)."""
    args = list(job_args)
    for option in STAGED_FILE_OPTIONS:
        if option not in args or not args[args.index(option) + 1].startswith("s3://"):
            continue
        at = args.index(option) + 1
        args[at] = str(download_staged(s3, args[at], folder))
    return args


def _upload(s3, folder: Path, uri: str, extra: dict | None = None) -> None:
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.endswith(".crc"):
            key = "/".join([prefix.rstrip("/"), path.relative_to(folder).as_posix()])
            s3.upload_file(str(path), bucket, key, ExtraArgs=extra or {})


def _emrfs_upload_args(cluster) -> dict:
    """What EMRFS adds to each PUT under the cluster's emrfs-site classification (SSE-S3 when enabled)."""
    for configuration in getattr(cluster, "configurations", None) or []:
        properties = configuration.get("Properties") or configuration.get("properties") or {}
        classification = configuration.get("Classification") or configuration.get("classification")
        if classification == "emrfs-site" and properties.get("fs.s3.enableServerSideEncryption") == "true":
            return {"ServerSideEncryption": "AES256"}
    return {}


@dataclass
class HttpRequestLog:
    """Every HTTP request moto's server received, with the access key that signed it: what pyarrow sends too.

    pyarrow's S3 file system does not go through botocore, so the botocore recorder cannot see its calls; this
    wraps moto's WSGI application instead.
    """

    requests: list[dict] = field(default_factory=list)

    def wrap(self, app):
        def recorded(environ, start_response):
            self.requests.append(_describe_request(environ))
            return app(environ, start_response)

        return recorded

    def s3_actions(self, access_key: str) -> list[tuple[str, str]]:
        """(IAM action, resource ARN) of each S3 REST request signed with ``access_key``."""
        return [
            mapped
            for request in self.requests
            if request["access_key"] == access_key and request["service"] == "s3"
            if (mapped := s3_iam_action(request))
        ]


def _describe_request(environ) -> dict:
    from urllib.parse import parse_qs, unquote

    authorization = environ.get("HTTP_AUTHORIZATION", "")
    credential = authorization.partition("Credential=")[2].split(",")[0].split("/")
    return {
        "method": environ["REQUEST_METHOD"],
        "path": unquote(environ.get("PATH_INFO", "")),
        "query": parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True),
        "access_key": credential[0] if credential else "",
        "service": credential[3] if len(credential) > 3 else "",
        "copy_source": environ.get("HTTP_X_AMZ_COPY_SOURCE"),
    }


def s3_iam_action(request: dict) -> tuple[str, str] | None:
    """The IAM action and resource ARN an S3 REST request (path style) is authorised as; None if not S3-shaped.

    Example:
        >>> s3_iam_action({"method": "HEAD", "path": "/b", "query": {}, "copy_source": None})
        ('s3:ListBucket', 'arn:aws:s3:::b')
    """
    bucket, _, key = request["path"].lstrip("/").partition("/")
    if not bucket:
        return ("s3:ListAllMyBuckets", "*") if request["method"] == "GET" else None
    method, query = request["method"], request["query"]
    if not key:
        bucket_arn = f"arn:aws:s3:::{bucket}"
        if method in ("GET", "HEAD") and not ({"location", "policy", "acl", "versioning"} & set(query)):
            return "s3:ListBucket", bucket_arn
        if method == "GET" and "location" in query:
            return "s3:GetBucketLocation", bucket_arn
        if method == "POST" and "delete" in query:
            return "s3:DeleteObject", f"{bucket_arn}/*"
        if method == "PUT":
            return "s3:CreateBucket", bucket_arn
        if method == "DELETE":
            return "s3:DeleteBucket", bucket_arn
        return f"s3:{method}Bucket?{'&'.join(query)}", bucket_arn
    object_arn = f"arn:aws:s3:::{bucket}/{key}"
    if method in ("GET", "HEAD"):
        return "s3:GetObject", object_arn
    if method in ("PUT", "POST"):
        return "s3:PutObject", object_arn  # single PUT, copy, and each multipart upload step
    if method == "DELETE":
        return ("s3:AbortMultipartUpload" if "uploadId" in query else "s3:DeleteObject"), object_arn
    return None


@pytest.fixture(scope="session")
def moto_http() -> HttpRequestLog:
    return HttpRequestLog()


@pytest.fixture(scope="session")
def moto_endpoint(moto_http):
    """moto in server mode on a free port: a real HTTP AWS endpoint in this process, every request recorded."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    server._server.app = moto_http.wrap(server._server.app)  # werkzeug's handler reads server.app per request
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session")
def aws_calls():
    """Records every AWS call made through an ``AwsCredentials`` block (all of fruitflow's clients) this session."""
    from prefect_aws import AwsCredentials

    recorder = AwsCallRecorder()
    real_session = AwsCredentials.get_boto3_session

    def recorded_session(self) -> boto3.session.Session:
        session = real_session(self)
        make_client = session.client

        def hooked_client(*args, **kwargs):
            made = make_client(*args, **kwargs)
            recorder.hook(made)
            return made

        session.client = hooked_client
        return session

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(AwsCredentials, "get_boto3_session", recorded_session)
        yield recorder


@pytest.fixture(scope="session")
def aws(moto_endpoint, prefect_harness, fruit_images, aws_calls) -> AwsEnv:
    """The bucket with the test images, default EMR roles, a key pair, and the ``fruitflow`` blocks."""
    from blocks.emr_cluster_config import EmrClusterConfig

    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    env = AwsEnv(endpoint=moto_endpoint, session=session)
    env.client("s3").create_bucket(Bucket=BUCKET)
    _upload(env.client("s3"), fruit_images, env.images)
    iam = env.client("iam")
    trust = '{"Version": "2012-10-17", "Statement": []}'
    iam.create_role(RoleName="EMR_DefaultRole", AssumeRolePolicyDocument=trust)
    iam.create_role(RoleName="EMR_EC2_DefaultRole", AssumeRolePolicyDocument=trust)
    iam.create_instance_profile(InstanceProfileName="EMR_EC2_DefaultRole")
    iam.create_role(RoleName="fruitflow-emr-ec2", AssumeRolePolicyDocument=trust)  # the block's default (docs/emr.md)
    iam.create_instance_profile(InstanceProfileName="fruitflow-emr-ec2")
    iam.add_role_to_instance_profile(InstanceProfileName="fruitflow-emr-ec2", RoleName="fruitflow-emr-ec2")
    env.client("ec2").create_key_pair(KeyName=KEY_PAIR)

    save_moto_blocks("fruitflow", moto_endpoint)
    EmrClusterConfig(key_pair_name=KEY_PAIR, poll_seconds=POLL_SECONDS, idle_timeout_minutes=60).save(
        "fruitflow", overwrite=True
    )
    return env


@pytest.fixture(scope="session")
def shipped_environment() -> Path:
    """The archive the EMR engine ships for the test runs (featurizer tflite, x86_64): built once per pin set and
    cached (the flow finds it there); a skip with the reason where the package index is out of reach."""
    from tasks.aws.environment import EnvironmentBuildError, job_environment

    try:
        return job_environment("tflite", model_shipped=True)  # the flow converts the model: no TensorFlow
    except EnvironmentBuildError as exc:
        if not exc.offline:
            raise
        pytest.skip(f"the job's Python environment for the cluster cannot be built here: {str(exc).splitlines()[0]}")


@pytest.fixture(scope="session")
def cluster_stack(aws, shipped_environment, tmp_path_factory) -> ClusterStack:
    """Python 3.9 + Spark 3.5.6 with nothing else installed, as a node before a step: what ``cluster_stack`` tests'
    steps run on (tests/fake_cluster_stack.py)."""
    from tests.parity_env import base_python, build_bare

    python = base_python()
    if python is None:
        pytest.skip("Python 3.9 (pyenv 3.9.18) is not installed: steps cannot run on the cluster's stack")
    return ClusterStack(env=build_bare(python), endpoint=aws.endpoint, root=tmp_path_factory.mktemp("cluster-stack"))


@pytest.fixture(autouse=True)
def _steps_on_the_cluster_stack(request):
    """For a test marked ``cluster_stack``, the fake cluster runs its steps on the cluster's stack."""
    if request.node.get_closest_marker("cluster_stack") is None:
        yield
        return
    player = request.getfixturevalue("fake_cluster")
    player.stack = request.getfixturevalue("cluster_stack")
    try:
        yield
    finally:
        player.stack = None


@pytest.fixture(scope="session")
def fake_cluster(aws, spark, shipped_environment):
    """The cluster player, watching moto for steps in a background thread for the whole session.

    moto's backend is patched here and only here: to see each new cluster and each added step as it happens, and to
    answer CancelSteps as EMR does.
    """
    from moto.core.responses import ActionResult
    from moto.emr.models import ElasticMapReduceBackend
    from moto.emr.responses import ElasticMapReduceResponse

    player = FakeCluster(aws=aws, spark=spark)
    real_run_job_flow = ElasticMapReduceBackend.run_job_flow
    real_add_job_flow_steps = ElasticMapReduceBackend.add_job_flow_steps

    def run_job_flow(backend, **kwargs):
        cluster = real_run_job_flow(backend, **kwargs)
        player._created(cluster)
        return cluster

    def add_job_flow_steps(backend, job_flow_id, steps):
        added = real_add_job_flow_steps(backend, job_flow_id, steps)
        player._steps_added(backend.clusters[job_flow_id])
        return added

    def cancel_steps(response) -> ActionResult:
        """EMR's CancelSteps, which moto 5.2.5 lacks (HTTP 500): the named pending or running steps end CANCELLED.
        A flow in another process (the signal tests) cancels its step through it."""
        cluster = response.backend.describe_cluster(response._get_param("ClusterId"))
        step_ids = response._get_param("StepIds", [])
        for step in cluster.steps:
            if step.id in step_ids and step.state in ("PENDING", "RUNNING"):
                step.state = "CANCELLED"
        return ActionResult({"CancelStepsInfoList": [{"StepId": i, "Status": "SUBMITTED"} for i in step_ids]})

    patch = pytest.MonkeyPatch()
    patch.setattr(ElasticMapReduceResponse, "cancel_steps", cancel_steps, raising=False)
    patch.setattr(ElasticMapReduceBackend, "run_job_flow", run_job_flow)
    patch.setattr(ElasticMapReduceBackend, "add_job_flow_steps", add_job_flow_steps)
    with playing(player, patch, "fake-emr"):
        yield player
