"""The reaper and the search for our clusters, against moto (issue 20 cases 3 and 4).

Case 3: finding our clusters (the failed run's hook, the reaper) never describes another team's cluster: only
clusters named as ours are described, and a describe the policy refuses (a look-alike name without our tag) means
"not ours". Case 4: the reaper never terminates a cluster that has a live step of a live flow run, whoever created
the cluster and however old it is.
"""

from __future__ import annotations

import json
import uuid

import pytest
from prefect.states import Completed, Running

from blocks.emr_cluster_config import EmrClusterConfig
from tasks.aws.run_names import run_name
from tasks.aws.tags import run_tags
from tasks.emr.cluster import cluster_request, find_run_clusters
from tests.emr_fixtures import UNPLAYED_TAG, FakeCluster, error_response, flow_run_in, moto_clients
from tests.serverless_fixtures import FakeServerless

SECRET = "hive-metastore-password-of-another-team-7d41"


def _foreign(aws, name: str) -> str:
    """Another team's cluster: not created by fruitflow, with a secret in its configurations."""
    secret = {"Classification": "hive-site", "Properties": {"javax.jdo.option.ConnectionPassword": SECRET}}
    return aws.client("emr").run_job_flow(
        Name=name,
        ReleaseLabel="emr-7.13.0",
        ServiceRole="EMR_DefaultRole",
        JobFlowRole="EMR_EC2_DefaultRole",
        Configurations=[secret],
        Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1, "KeepJobFlowAliveWhenNoSteps": True},
        Tags=[{"Key": "team", "Value": "analytics"}, {"Key": UNPLAYED_TAG, "Value": "true"}],
    )["JobFlowId"]


def _ours(aws, flow_run_id: str, keep: bool = False) -> str:
    config = EmrClusterConfig(tags={UNPLAYED_TAG: "true"})
    log_uri = f"s3://{aws.bucket}/l/"
    request = cluster_request(config, name="reaper test", log_uri=log_uri, flow_run_id=flow_run_id, keep=keep)
    return aws.client("emr").run_job_flow(**request)["JobFlowId"]


def _with_step(aws, moto: FakeCluster, cluster_id: str, flow_run_id: str, state: str) -> str:
    """A fruitflow step of ``flow_run_id`` (named as the engine names it) on the cluster, put in ``state``."""
    step = {
        "Name": run_name(flow_run_id, "t0"),
        "ActionOnFailure": "CONTINUE",
        "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["true"]},
    }
    step_id = aws.client("emr").add_job_flow_steps(JobFlowId=cluster_id, Steps=[step])["StepIds"][0]
    moto.set_step_state(cluster_id, step_id, state)
    return step_id


def _described(aws_calls, since: int) -> set[str]:
    return {params["ClusterId"] for prefix, op, params in aws_calls.calls[since:] if op == "DescribeCluster"}


def _deny_describe_of(cluster_id: str):
    """IAM's answer to DescribeCluster on a cluster without our tag (docs/iam-policy.json): AccessDenied."""
    deny = error_response("AccessDeniedException")

    def answer(request, **kwargs):
        if json.loads(request.body or b"{}").get("ClusterId") == cluster_id:
            return deny(request, **kwargs)
        return None

    return answer


def test_finding_our_clusters_never_describes_another_teams_cluster(aws, aws_calls):
    run = str(uuid.uuid4())
    foreign, lookalike, ours = _foreign(aws, "analytics nightly"), _foreign(aws, "fruitflow look-alike"), None
    try:
        ours = _ours(aws, run)
        since = len(aws_calls.calls)
        with aws_calls.on("before-send.emr.DescribeCluster", _deny_describe_of(lookalike)):
            found = find_run_clusters(moto_clients()("emr"), run)
        assert found == [ours]
        described = _described(aws_calls, since)
        assert foreign not in described, "another team's cluster (and its hive-site password) was read"
        assert described <= {ours, lookalike}, described
    finally:
        aws.client("emr").terminate_job_flows(JobFlowIds=[c for c in (foreign, lookalike, ours) if c])


@pytest.fixture
def moto(aws) -> FakeCluster:
    """moto's cluster and step states, set by the test (no player: the steps here run nothing)."""
    return FakeCluster(aws=aws, spark=None)


def test_reaper_never_ends_a_cluster_with_a_live_step_of_a_live_run(aws, aws_calls, moto):
    """--keep-cluster, then another run with --cluster-id whose step is RUNNING, cluster 6.5 h old, reap at 6 h."""
    from flows.reap import reap_clusters

    live, finished = flow_run_in(Running()), flow_run_in(Completed())
    clusters = {
        "kept, old, live step of another live run": _ours(aws, finished, keep=True),
        "young, creator finished, live step of another live run": _ours(aws, finished),
        "old, all steps finished": _ours(aws, finished),
        "kept, old, running step of a finished run": _ours(aws, finished, keep=True),
    }
    foreign = _foreign(aws, "analytics nightly")
    try:
        _with_step(aws, moto, clusters["kept, old, live step of another live run"], finished, "COMPLETED")
        _with_step(aws, moto, clusters["kept, old, live step of another live run"], live, "RUNNING")
        _with_step(aws, moto, clusters["young, creator finished, live step of another live run"], live, "PENDING")
        _with_step(aws, moto, clusters["old, all steps finished"], live, "COMPLETED")
        _with_step(aws, moto, clusters["kept, old, running step of a finished run"], finished, "RUNNING")
        for name, cluster_id in clusters.items():
            if name.startswith(("kept, old", "old")):
                moto.make_older(cluster_id, hours=6.5)
        since = len(aws_calls.calls)
        report = reap_clusters(aws_credentials_block="fruitflow", max_age_hours=6, poll_seconds=1)
        states = aws.clusters()
        ended = {name for name, cluster_id in clusters.items() if states[cluster_id] == "TERMINATED"}
        assert ended == {"old, all steps finished", "kept, old, running step of a finished run"}
        reasons = {entry.cluster_id: entry.reason for entry in report}
        assert reasons[clusters["old, all steps finished"]].startswith("older than 6 h")
        assert foreign not in _described(aws_calls, since), "the reaper read another team's cluster"
    finally:
        aws.client("emr").terminate_job_flows(JobFlowIds=[*clusters.values(), foreign])


def _application(aws, flow_run_id: str) -> str:
    client = aws.client("emr-serverless")
    request = {"name": "fruitflow reaper test", "releaseLabel": "emr-7.13.0", "type": "SPARK"}
    return client.create_application(**request, tags=run_tags(flow_run_id))["applicationId"]


def _running_job_run(aws, application_id: str, flow_run_id: str) -> str:
    """A job run of ``flow_run_id`` (named as the engine names it), held RUNNING in moto."""
    job_run_id = aws.client("emr-serverless").start_job_run(
        applicationId=application_id,
        clientToken=uuid.uuid4().hex,
        name=run_name(flow_run_id, "t0"),
        executionRoleArn="arn:aws:iam::123456789012:role/EMRServerlessS3RuntimeRole",
        tags={UNPLAYED_TAG: "true", **run_tags(flow_run_id)},
        jobDriver={"sparkSubmit": {"entryPoint": "s3://b/j.py"}},
    )["jobRunId"]
    FakeServerless(aws=aws, spark=None).job_run(job_run_id).state = "RUNNING"
    return job_run_id


def test_reaper_never_deletes_an_application_with_a_running_job_run_of_a_live_run(aws):
    """The same rule on EMR Serverless: the creator's run is over, but another live run's job run is RUNNING on it."""
    from flows.reap import reap_clusters

    live, finished = flow_run_in(Running()), flow_run_in(Completed())
    used, unused = _application(aws, finished), _application(aws, finished)
    _running_job_run(aws, used, live)
    _running_job_run(aws, unused, finished)
    client = aws.client("emr-serverless")
    before = client.get_application(applicationId=used)["application"]["state"]  # CREATED or STARTED: moto's choice
    reap_clusters(aws_credentials_block="fruitflow", max_age_hours=6, poll_seconds=1)
    states = {app: client.get_application(applicationId=app)["application"]["state"] for app in (used, unused)}
    assert states == {used: before, unused: "TERMINATED"}, "the used application is left as it was"
    job_runs = client.list_job_runs(applicationId=used)["jobRuns"]
    assert [run["state"] for run in job_runs] == ["RUNNING"], "its live job run goes on"
    client.stop_application(applicationId=used)
    client.delete_application(applicationId=used)


def test_finding_our_applications_never_reads_another_teams_application(aws, aws_calls):
    """Case 3 on EMR Serverless: the run's hook search and the reaper read only applications named as ours."""
    from flows.reap import reap_clusters
    from tasks.emr_serverless.application import find_run_applications

    client = aws.client("emr-serverless")
    secret = {"classification": "spark-defaults", "properties": {"spark.hadoop.javax.jdo.option.Password": SECRET}}
    request = {"releaseLabel": "emr-7.13.0", "type": "SPARK", "runtimeConfiguration": [secret]}
    foreign = client.create_application(name="analytics", tags={"team": "analytics"}, **request)["applicationId"]
    their_job = client.start_job_run(
        applicationId=foreign,
        clientToken=uuid.uuid4().hex,
        name="nightly ETL",
        executionRoleArn="arn:aws:iam::123456789012:role/analytics",
        jobDriver={"sparkSubmit": {"entryPoint": "s3://theirs/etl.py"}},
    )["jobRunId"]
    FakeServerless(aws=aws, spark=None).job_run(their_job).state = "RUNNING"
    run = str(uuid.uuid4())
    ours = _application(aws, run)
    try:
        since = len(aws_calls.calls)
        assert find_run_applications(moto_clients()("emr-serverless"), run) == [ours]
        # 48 h: moto gives createdAt to the day, so a new application can look hours old.
        reap_clusters(aws_credentials_block="fruitflow", max_age_hours=48, poll_seconds=1, dry_run=True)
        read = {params.get("applicationId") for _p, op, params in aws_calls.calls[since:] if op.startswith("Get")}
        assert foreign not in read, "another team's application, or its job run, was read"
        assert ours in read
    finally:
        for application_id in (foreign, ours):
            client.stop_application(applicationId=application_id)
            client.delete_application(applicationId=application_id)
