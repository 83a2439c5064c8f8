"""The EMR engine end to end against moto, with the fake cluster running the real Spark job on the steps."""

from __future__ import annotations

import json
import logging

import pytest
from prefect.client.orchestration import get_client

from tasks.aws.remote_wait import RemoteRunFailed
from tasks.aws.tags import TAG_CREATED_BY, TAG_FLOW_RUN
from tasks.markdown import md_text
from tasks.validation import ClassCounts
from tests.emr_flow import emr_test_flow


def _cluster(aws, cluster_id: str) -> dict:
    return aws.client("emr").describe_cluster(ClusterId=cluster_id)["Cluster"]


def _steps(aws, cluster_id: str) -> list[dict]:
    return aws.client("emr").list_steps(ClusterId=cluster_id)["Steps"]


@pytest.mark.slow
@pytest.mark.cluster_stack  # its step runs on Python 3.9, Spark 3.5.6 and the staged archive (fake_cluster_stack.py)
def test_happy_path_outputs_validated_and_cluster_terminated(aws, fake_cluster, caplog):
    output = f"s3://{aws.bucket}/out/happy"
    before = set(aws.clusters())
    with caplog.at_level(logging.INFO):
        result = emr_test_flow(images=aws.images, output=output, health="on")

    cluster_id, step_id = result.ids["cluster_id"], result.ids["step_id"]
    assert cluster_id not in before, "the flow created its own cluster"
    assert _cluster(aws, cluster_id)["Status"]["State"] == "TERMINATED"
    tags = {tag["Key"]: tag["Value"] for tag in _cluster(aws, cluster_id)["Tags"]}
    assert tags[TAG_CREATED_BY] == "fruitflow" and tags[TAG_FLOW_RUN]

    steps = _steps(aws, cluster_id)
    assert [step["Id"] for step in steps] == [step_id]
    assert steps[0]["Config"]["Jar"] == "command-runner.jar"

    assert (result.engine, result.output, result.dry_run) == ("emr", output, False)
    metrics = result.validation.metrics
    assert metrics.images_ok == 24 and metrics.images_failed == 1
    assert metrics.versions["python"].startswith("3.9.") and fake_cluster.runs[-1]["cluster_stack"]  # as on EMR 7
    # The model converted by the flow, staged beside the weights; no TensorFlow in the cluster's environment.
    model = fake_cluster.runs[-1]["args"][fake_cluster.runs[-1]["args"].index("--tflite-model") + 1]
    assert model.startswith(f"s3://{aws.bucket}/") and "/weights/fruitflow-tflite-" in model
    assert metrics.versions["tensorflow"] is None and metrics.versions["litert"] == "2.1.0"
    assert result.validation.per_class["Banana"] == ClassCounts(ok=4, failed=1)
    assert set(result.validation.per_class) >= {"Banana", "Pêche Blanche"}
    body = aws.client("s3").get_object(Bucket=aws.bucket, Key="out/happy/metrics.json")["Body"].read()
    written = json.loads(body)
    assert (written["engine"], written["cluster_id"], written["step_id"]) == ("emr", cluster_id, step_id)
    assert (metrics.engine, metrics.cluster_id, metrics.step_id) == ("emr", cluster_id, step_id)
    assert result.cost_estimate.usd_per_hour == pytest.approx(0.72)
    assert [detail.name for detail in result.details] == ["cluster id", "step id", "console url"]
    assert (result.detail("cluster id"), result.detail("step id")) == (cluster_id, step_id)
    assert result.detail("console url").endswith(f"#/clusterDetails/{cluster_id}")
    summary = aws.client("s3").get_object(Bucket=aws.bucket, Key="out/happy/summary.md")["Body"].read().decode()
    summary = summary.replace("<br>", " ")  # long cells are broken into lines to fit the UI's page
    assert f"| cluster id | {cluster_id} |" in summary and f"| step id | {step_id} |" in summary
    assert f"#/clusterDetails/{cluster_id}> |" in summary
    assert f"| cost (estimate) | {md_text(result.cost_estimate.text)} |" in summary
    step_logs = f"s3://{aws.bucket}/fruitflow/emr-logs/{cluster_id}/steps/{step_id}/"
    assert f"step {step_id} logs: {step_logs}" in caplog.messages
    with get_client(sync_client=True) as client:  # the progress artifact followed the step's state to the end
        completed = f"EMR step {step_id} on {cluster_id}: COMPLETED"  # the end of the description, after the bar
        progress = [a for a in client.read_artifacts() if (a.description or "").endswith(completed)]
    assert [float(artifact.data) for artifact in progress] == [100.0]


def test_failed_step_reports_reason_and_log_tail_and_terminates(aws, fake_cluster):
    fake_cluster.fail_next(
        "Step failed with exitCode 2",
        "starting\nTraceback (most recent call last):\nfruitflow ERROR no images under s3://x (0 files seen)\n",
    )
    before = set(aws.clusters())
    with pytest.raises(RemoteRunFailed) as caught:
        emr_test_flow(images=aws.images, output=f"s3://{aws.bucket}/out/failing")

    message = str(caught.value)
    assert "FAILED: Step failed with exitCode 2" in message
    assert "fruitflow ERROR no images under s3://x" in message  # the tail of stderr.gz, read from the log URI
    assert caught.value.log_uri.endswith("/stderr.gz")
    (cluster_id,) = set(aws.clusters()) - before
    assert aws.clusters()[cluster_id] == "TERMINATED"


@pytest.mark.slow
def test_reused_cluster_runs_the_step_and_is_left_running(aws, fake_cluster):
    emr = aws.client("emr")
    cluster_id = emr.run_job_flow(
        Name="someone else's cluster",
        ReleaseLabel="emr-7.13.0",
        Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1, "KeepJobFlowAliveWhenNoSteps": True},
        ServiceRole="EMR_DefaultRole",
        JobFlowRole="EMR_EC2_DefaultRole",
        LogUri=f"s3://{aws.bucket}/their-logs/",
    )["JobFlowId"]
    try:
        before = set(aws.clusters())
        result = emr_test_flow(images=aws.images, output=f"s3://{aws.bucket}/out/reused", cluster_id=cluster_id)

        assert result.ids["cluster_id"] == result.detail("cluster id") == cluster_id
        assert set(aws.clusters()) == before, "no new cluster when one is given"
        assert aws.clusters()[cluster_id] in ("WAITING", "RUNNING")
        assert result.validation.metrics.images_ok == 24
    finally:
        emr.terminate_job_flows(JobFlowIds=[cluster_id])
