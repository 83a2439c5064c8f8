"""Clusters we create are terminated on cancellation and crash; steps are never added twice; hung steps end."""

from __future__ import annotations

import uuid

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ConnectionClosedError
from prefect import flow
from prefect.client.schemas.objects import FlowRun
from prefect.states import Cancelled

import tasks.emr_steps as emr_steps
from blocks.emr_cluster import EmrClusterConfig
from flows.fruit_features import fruit_features
from tasks.emr_cluster import cluster_request
from tasks.emr_engine import terminate_on_cancel_or_crash
from tasks.emr_steps import StepFailed, step_definition, submit_step, wait_for_step


def _our_cluster(aws, flow_run_id: str) -> str:
    request = cluster_request(
        EmrClusterConfig(),
        name="fruitflow test",
        log_uri=f"s3://{aws.bucket}/logs/",
        bootstrap_uri=f"s3://{aws.bucket}/b.sh",
        requirements_uri=f"s3://{aws.bucket}/r.txt",
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

    terminate_on_cancel_or_crash(fruit_features, flow_run, Cancelled())

    states = aws.clusters()
    assert states[ours] == "TERMINATED"
    assert states[other_run] != "TERMINATED" and states[reused] != "TERMINATED"
    aws.client("emr").terminate_job_flows(JobFlowIds=[other_run, reused])


def test_hook_leaves_local_runs_and_kept_clusters_alone(aws):
    run_id = uuid.uuid4()
    cluster_id = _our_cluster(aws, str(run_id))
    for parameters in ({"engine": "local"}, {"engine": "emr", "keep_cluster": True}):
        flow_run = FlowRun(id=run_id, name="r", flow_id=uuid.uuid4(), parameters=parameters)
        terminate_on_cancel_or_crash(fruit_features, flow_run, Cancelled())
        assert aws.clusters()[cluster_id] != "TERMINATED"
    aws.client("emr").terminate_job_flows(JobFlowIds=[cluster_id])


def test_step_is_not_added_twice_when_submit_is_retried(aws, monkeypatch):
    cluster_id = _plain_cluster(aws)  # the fake cluster, if running, leaves steps that are not the job alone
    real_client = emr_steps.client
    dropped = []

    def drop_first_response(**_kwargs):
        if not dropped:  # EMR added the step, but the answer never reached us
            dropped.append(True)
            raise ConnectionClosedError(endpoint_url="moto")

    def flaky_client(credentials, service):
        made = real_client(credentials, service)
        made.meta.events.register("after-call.emr.AddJobFlowSteps", drop_first_response)
        return made

    monkeypatch.setattr(emr_steps, "client", flaky_client)
    step = step_definition(
        cluster_id=cluster_id, script_uri="s3://b/job.py", py_files_uri="s3://b/j.zip", job_args=["--x"], token="t1"
    )

    @flow
    def submit_with_retry() -> str:
        from prefect_aws import AwsCredentials

        return submit_step.with_options(retry_delay_seconds=0)(AwsCredentials.load("fruitflow"), cluster_id, step)

    step_id = submit_with_retry()

    assert dropped, "the first attempt must have failed"
    steps = aws.client("emr").list_steps(ClusterId=cluster_id)["Steps"]
    assert [s["Id"] for s in steps] == [step_id]
    aws.client("emr").terminate_job_flows(JobFlowIds=[cluster_id])


def test_hung_step_is_cancelled_at_the_timeout(aws):
    cluster_id = _plain_cluster(aws)  # the step is not the job: it stays RUNNING forever, as moto leaves it
    step = step_definition(cluster_id=cluster_id, script_uri="s3://b/j.py", py_files_uri="s3://b/j.zip", job_args=[],
                           token="hung")  # fmt: skip
    emr = aws.client("emr")
    step_id = emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=[step])["StepIds"][0]
    cancels = []

    def record_cancel(params, **_kwargs):
        cancels.append(dict(params))

    def answer_cancel(**_kwargs):
        # moto 5.2.5 answers CancelSteps with HTTP 500 (retried for a minute): answer 200 here instead.
        return AWSResponse("moto", 200, {}, None), {}

    real_client = emr_steps.client

    def recording_client(credentials, service):
        made = real_client(credentials, service)
        made.meta.events.register("before-parameter-build.emr.CancelSteps", record_cancel)
        made.meta.events.register("before-call.emr.CancelSteps", answer_cancel)
        return made

    @flow
    def wait_briefly() -> str:
        from prefect_aws import AwsCredentials

        return wait_for_step(
            AwsCredentials.load("fruitflow"), cluster_id, step_id, timeout_minutes=0.05, poll_seconds=1
        )

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(emr_steps, "client", recording_client)
        with pytest.raises(StepFailed, match="still RUNNING after 0.05 minutes; cancelled"):
            wait_briefly()
    assert [c["StepIds"] for c in cancels][-1:] == [[step_id]]
    emr.terminate_job_flows(JobFlowIds=[cluster_id])


def test_the_flow_tears_down_on_failure_crash_and_cancellation():
    from tasks.emr_engine import terminate_on_cancel_or_crash

    for hooks in (
        fruit_features.on_failure_hooks,
        fruit_features.on_crashed_hooks,
        fruit_features.on_cancellation_hooks,
    ):
        assert terminate_on_cancel_or_crash in hooks


def test_a_duplicate_cluster_of_the_run_is_terminated_with_it(aws):
    """RunJobFlow has no idempotency token: a retried request may leave a second cluster with the run's tags."""
    from prefect_aws import AwsCredentials

    from tasks.emr_engine import _terminate_strays

    run_id = str(uuid.uuid4())
    duplicate, other_run, reused = _our_cluster(aws, run_id), _our_cluster(aws, str(uuid.uuid4())), _plain_cluster(aws)

    @flow
    def teardown() -> None:
        _terminate_strays(AwsCredentials.load("fruitflow"), run_id, 1)

    teardown()
    states = aws.clusters()
    assert states[duplicate] == "TERMINATED"
    assert states[other_run] != "TERMINATED" and states[reused] != "TERMINATED"
    aws.client("emr").terminate_job_flows(JobFlowIds=[other_run, reused])
