"""Clusters we create are terminated on cancellation and crash; steps are never added twice; hung steps end."""

from __future__ import annotations

import time
import uuid

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError
from botocore.httpsession import URLLib3Session
from prefect import flow
from prefect.client.schemas.objects import FlowRun
from prefect.states import Cancelled

from blocks.emr_cluster_config import EmrClusterConfig
from flows.fruit_features import end_what_the_run_left, fruit_features
from tasks.aws.backend import Place
from tasks.aws.remote_wait import RemoteRunFailed, WaitTimedOut, watch_run
from tasks.aws.teardown import release
from tasks.emr.cluster import cluster_request, terminate
from tasks.emr.engine import EmrEngine
from tasks.emr.steps import step_definition, step_watch, submit_step
from tasks.engine_settings import EmrSettings
from tests.emr_fixtures import POLL_SECONDS, UNPLAYED_TAG, add_placeholder_step, answer_ok, error_response, moto_clients
from tests.emr_flow import emr_test_flow


def _our_cluster(aws, flow_run_id: str) -> str:
    request = cluster_request(
        EmrClusterConfig(),
        name="fruitflow test",
        log_uri=f"s3://{aws.bucket}/logs/",
        flow_run_id=flow_run_id,
    )
    return aws.client("emr").run_job_flow(**request)["JobFlowId"]


def _plain_cluster(aws) -> str:
    return aws.client("emr").run_job_flow(
        Name="not ours",
        ReleaseLabel="emr-7.13.0",
        Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1, "KeepJobFlowAliveWhenNoSteps": True},
        ServiceRole="EMR_DefaultRole",
        JobFlowRole="EMR_EC2_DefaultRole",
    )["JobFlowId"]


def test_cancellation_hook_terminates_only_the_run_clusters(aws):
    """The hook as Prefect calls it (flow, flow_run, state); a real cancellation needs a deployment (issue 4)."""
    run_id = uuid.uuid4()
    ours, other_run, reused = _our_cluster(aws, str(run_id)), _our_cluster(aws, str(uuid.uuid4())), _plain_cluster(aws)
    flow_run = FlowRun(id=run_id, name="cancelled-run", flow_id=uuid.uuid4(), parameters={"engine": "emr"})

    end_what_the_run_left(fruit_features, flow_run, Cancelled())

    states = aws.clusters()
    assert states[ours] == "TERMINATED"
    assert states[other_run] != "TERMINATED" and states[reused] != "TERMINATED"
    aws.client("emr").terminate_job_flows(JobFlowIds=[other_run, reused])


def test_hook_leaves_local_runs_and_kept_clusters_alone(aws):
    run_id = uuid.uuid4()
    cluster_id = _our_cluster(aws, str(run_id))
    for parameters in ({"engine": "local"}, {"engine": "emr", "keep_cluster": True}):
        flow_run = FlowRun(id=run_id, name="r", flow_id=uuid.uuid4(), parameters=parameters)
        end_what_the_run_left(fruit_features, flow_run, Cancelled())
        assert aws.clusters()[cluster_id] != "TERMINATED"
    aws.client("emr").terminate_job_flows(JobFlowIds=[cluster_id])


def test_step_is_not_added_twice_when_submit_is_retried(aws):
    """A lost reply to AddJobFlowSteps (EMR added the step, the answer never came back): one step, whoever retries.

    The handler really delivers the first request to moto, then raises ConnectionClosedError: an HTTPClientError,
    which botocore's standard retry mode would answer by sending the same request again (a second step).
    """
    cluster_id = _plain_cluster(aws)  # the fake cluster, if running, leaves steps that are not the job alone
    delivered = []

    def deliver_then_lose_the_reply(request, **_kwargs):
        if delivered:
            return None
        delivered.append(URLLib3Session().send(request).status_code)
        raise ConnectionClosedError(endpoint_url=request.url)

    step = step_definition(
        cluster_id=cluster_id,
        script_uri="s3://b/job.py",
        py_files_uri="s3://b/j.zip",
        environment_sha256=64 * "0",
        timeout_minutes=10,
        environment_uri="s3://b/e.tar.gz",
        job_args=["--x"],
        token="t1",
        flow_run_id=str(uuid.uuid4()),
    )

    clients = moto_clients({"before-send.emr.AddJobFlowSteps": deliver_then_lose_the_reply})

    @flow
    def submit_with_retry() -> str:
        return submit_step.with_options(retry_delay_seconds=0)(clients, cluster_id, step)

    step_id = submit_with_retry()

    assert delivered == [200], "the first request must have reached moto"
    steps = aws.client("emr").list_steps(ClusterId=cluster_id)["Steps"]
    assert [s["Id"] for s in steps] == [step_id]
    aws.client("emr").terminate_job_flows(JobFlowIds=[cluster_id])


def test_terminate_accepts_terminated_with_errors(aws, fake_cluster):
    """A cluster that ends TERMINATED_WITH_ERRORS is terminated (boto3's cluster_terminated waiter calls it failure)."""
    cluster_id = _plain_cluster(aws)
    fake_cluster.set_cluster_state(cluster_id, "TERMINATED_WITH_ERRORS")  # as EMR leaves a cluster whose nodes failed
    # moto would rewrite the state to TERMINATED; EMR leaves an ended cluster's state alone: answer 200 instead.
    terminate(moto_clients({"before-call.emr.TerminateJobFlows": answer_ok}), cluster_id, 1, timeout_minutes=0.1)
    assert aws.clusters()[cluster_id] == "TERMINATED_WITH_ERRORS"


def test_an_interrupted_step_ends_the_wait_at_once(aws, fake_cluster):
    """INTERRUPTED is an end state; boto3's step_complete waiter ignores it and would wait out the whole timeout."""
    cluster_id = _plain_cluster(aws)
    step_id = add_placeholder_step(aws, cluster_id, "interrupted")
    fake_cluster.set_step_state(cluster_id, step_id, "INTERRUPTED")  # e.g. a spot core node lost under it

    @flow
    def wait() -> str:
        clients = moto_clients()
        return watch_run(
            clients, step_watch(clients, cluster_id, step_id), timeout_minutes=0.5, poll_seconds=POLL_SECONDS
        )

    started = time.monotonic()
    with pytest.raises(RemoteRunFailed, match="INTERRUPTED"):
        wait()
    assert time.monotonic() - started < 15, "the wait must end on INTERRUPTED, not at the 30 s timeout"
    aws.client("emr").terminate_job_flows(JobFlowIds=[cluster_id])


def test_hung_step_is_cancelled_at_the_timeout(aws):
    cluster_id = _plain_cluster(aws)  # the step is not the job: it stays RUNNING forever, as moto leaves it
    emr = aws.client("emr")
    step_id = add_placeholder_step(aws, cluster_id, "hung")
    cancels = []

    def record_cancel(params, **_kwargs):
        cancels.append(dict(params))

    # moto 5.2.5 answers CancelSteps with HTTP 500 (retried for a minute): answer 200 instead.
    clients = moto_clients(
        {"before-parameter-build.emr.CancelSteps": record_cancel, "before-call.emr.CancelSteps": answer_ok}
    )

    @flow
    def wait_briefly() -> str:
        return watch_run(
            clients, step_watch(clients, cluster_id, step_id), timeout_minutes=0.02, poll_seconds=POLL_SECONDS
        )

    with pytest.raises(WaitTimedOut, match="still RUNNING after 0.02 minutes; cancelled"):
        wait_briefly()
    assert [c["StepIds"] for c in cancels] == [[step_id]]
    emr.terminate_job_flows(JobFlowIds=[cluster_id])


def test_the_hooks_handle_crash_and_cancellation_only():
    """A failure is torn down inside the lifecycle (test_remote_lifecycle.py); the hooks catch what skips it."""
    assert end_what_the_run_left in fruit_features.on_crashed_hooks
    assert end_what_the_run_left in fruit_features.on_cancellation_hooks
    assert end_what_the_run_left not in fruit_features.on_failure_hooks


def test_a_duplicate_cluster_of_the_run_is_terminated_with_it(aws):
    """RunJobFlow has no idempotency token: a retried request may leave a second cluster with the run's tags."""
    run_id = str(uuid.uuid4())
    duplicate, other_run, reused = _our_cluster(aws, run_id), _our_cluster(aws, str(uuid.uuid4())), _plain_cluster(aws)

    @flow
    def teardown() -> None:
        engine = EmrEngine(EmrSettings(), aws=moto_clients())
        engine.__dict__["config"] = EmrClusterConfig(poll_seconds=POLL_SECONDS)
        release(engine, Place(None, created=True), run_id, failure=None)

    teardown()
    states = aws.clusters()
    assert states[duplicate] == "TERMINATED"
    assert states[other_run] != "TERMINATED" and states[reused] != "TERMINATED"
    aws.client("emr").terminate_job_flows(JobFlowIds=[other_run, reused])


def _cancelled_since(aws_calls, start: int) -> list[tuple[str, list[str]]]:
    return [(p["ClusterId"], p["StepIds"]) for _s, op, p in aws_calls.calls[start:] if op == "CancelSteps"]


def test_a_failing_run_on_a_reused_cluster_cancels_its_step(aws, aws_calls, fake_cluster):
    """--cluster-id: the cluster is left running, so the engine's finally cancels the step the run added."""
    emr = aws.client("emr")
    reused = emr.run_job_flow(
        Name="my own cluster",
        ReleaseLabel="emr-7.13.0",
        ServiceRole="EMR_DefaultRole",
        JobFlowRole="EMR_EC2_DefaultRole",
        Tags=[{"Key": UNPLAYED_TAG, "Value": "true"}],  # its steps keep RUNNING
        Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1, "KeepJobFlowAliveWhenNoSteps": True},
    )["JobFlowId"]
    start = len(aws_calls.calls)
    with (
        aws_calls.on("before-send.emr.DescribeStep", error_response("AccessDeniedException")),
        aws_calls.on("before-call.emr.CancelSteps", fake_cluster.answer_cancel_steps),
        pytest.raises(ClientError, match="AccessDenied"),
    ):
        emr_test_flow(
            images=aws.images, output=f"s3://{aws.bucket}/out/reused-{uuid.uuid4().hex[:6]}", cluster_id=reused
        )
    (step,) = emr.list_steps(ClusterId=reused)["Steps"]
    assert _cancelled_since(aws_calls, start) == [(reused, [step["Id"]])]
    assert aws.clusters()[reused] in ("WAITING", "RUNNING"), "a reused cluster is never terminated"
    emr.terminate_job_flows(JobFlowIds=[reused])


def test_the_hook_cancels_the_run_step_on_reused_and_kept_clusters(aws, aws_calls, fake_cluster):
    """Cancelled or crashed with --cluster-id / --keep-cluster: the step is cancelled, the clusters stay up."""
    run_id = uuid.uuid4()
    reused, kept = _plain_cluster(aws), _our_cluster(aws, str(run_id))
    theirs = add_placeholder_step(aws, reused, "someone-else")  # RUNNING: moto runs the first step
    on_reused = add_placeholder_step(aws, reused, "ours", str(run_id))  # PENDING behind it
    on_kept = add_placeholder_step(aws, kept, "kept", str(run_id))
    flow_run = FlowRun(
        id=run_id,
        name="cancelled-run",
        flow_id=uuid.uuid4(),
        parameters={"engine": "emr", "cluster_id": reused, "keep_cluster": True},
    )
    start = len(aws_calls.calls)
    with aws_calls.on("before-call.emr.CancelSteps", fake_cluster.answer_cancel_steps):
        end_what_the_run_left(fruit_features, flow_run, Cancelled())

    assert sorted(_cancelled_since(aws_calls, start)) == sorted([(reused, [on_reused]), (kept, [on_kept])])
    assert theirs != on_reused
    states = aws.clusters()
    assert states[reused] != "TERMINATED" and states[kept] != "TERMINATED"
    aws.client("emr").terminate_job_flows(JobFlowIds=[reused, kept])


def test_teardown_errors_never_replace_the_run_error(aws, fake_cluster, aws_calls):
    """The step fails; then, during teardown, DescribeCluster fails (strays, cost): the flow still raises its error."""
    fake_cluster.fail_next("Step failed with exitCode 3", "Traceback (most recent call last):\nValueError: y\n")
    seen: list[str] = []

    def describe_fails_in_teardown(event_name: str, request=None, **_kwargs):
        operation = event_name.split(".")[2]
        seen.append(operation)
        torn_down = "TerminateJobFlows" in seen and "ListClusters" in seen[seen.index("TerminateJobFlows") :]
        if operation == "DescribeCluster" and torn_down:
            return error_response("AccessDeniedException")(request)
        return None

    with (
        aws_calls.on("before-send.emr", describe_fails_in_teardown),
        pytest.raises(RemoteRunFailed, match="exitCode 3"),
    ):
        emr_test_flow(images=aws.images, output=f"s3://{aws.bucket}/out/teardown-{uuid.uuid4().hex[:6]}")
    teardown = seen[seen.index("TerminateJobFlows") :]
    assert teardown.count("DescribeCluster") >= 2, f"teardown must have described the cluster (failing): {teardown}"
