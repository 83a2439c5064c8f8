"""The EMR flow under injected faults, with sentinel credentials, against least privilege (moto + the fake cluster).

One module fixture plays the scenarios once and the tests read what they left: a run with throttling injected into
boto3 and sentinel credentials; the same with a failing step (exception messages); a step that hangs until its
timeout (the cancel path); a cluster whose bootstrap fails. Every AWS call goes through the session's recorder
(tests/emr_fixtures.py ``aws_calls``), which the least-privilege policy test compares with docs/iam-policy.json.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import traceback
import uuid
from pathlib import Path

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId
from prefect_aws import AwsCredentials
from prefect_aws.client_parameters import AwsClientParameters

from blocks.emr_cluster_config import EmrClusterConfig
from flows.fruit_features import fruit_features
from tasks.aws.remote import provision as provision_place
from tasks.aws.remote_wait import WaitTimedOut, watch_run
from tasks.aws.tags import TAG_FLOW_RUN
from tasks.emr.cluster import ClusterError, cluster_request
from tasks.emr.engine import EmrEngine
from tasks.emr.steps import step_watch
from tasks.engine_settings import EmrSettings
from tests.emr_fixtures import (
    KEY_PAIR,
    POLL_SECONDS,
    REGION,
    add_placeholder_step,
    answer_ok,
    flow_run_in,
    moto_clients,
)
from tests.emr_flow import TEST_JOB
from tests.iam_evaluator import allows, request_context

REPO = Path(__file__).resolve().parent.parent
SENTINEL_KEY = "AKIAFRUITFLOWSENTINEL7"
SENTINEL_SECRET = "sentinel/Secret+Never-Printed-3f9c1e7a"
BLOCK = "hardening"
# Throttling injected into the flow's own clients: each is retried by botocore's standard mode.
THROTTLES = {
    "elasticmapreduce:RunJobFlow": 1,
    "elasticmapreduce:DescribeCluster": 2,
    "elasticmapreduce:AddJobFlowSteps": 1,
    "elasticmapreduce:DescribeStep": 1,
    "elasticmapreduce:TerminateJobFlows": 1,
    "s3:PutObject": 1,
}


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def _run(**parameters) -> tuple[object, str]:
    """The flow with the test job options; returns (final state, flow run id)."""
    state = fruit_features(engine="emr", **{**TEST_JOB, **parameters}, return_state=True)
    return state, str(state.state_details.flow_run_id)


def _hang_until_cancelled(aws) -> str:
    """A step that never ends: watch_run cancels it at its timeout (moto answers CancelSteps 500: answer 200)."""
    cluster_id = aws.client("emr").run_job_flow(
        Name="hung",
        ReleaseLabel="emr-7.13.0",
        ServiceRole="EMR_DefaultRole",
        JobFlowRole="EMR_EC2_DefaultRole",
        Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1, "KeepJobFlowAliveWhenNoSteps": True},
    )["JobFlowId"]
    step_id = add_placeholder_step(aws, cluster_id, "hardening-hung")
    clients = moto_clients({"before-call.emr.CancelSteps": answer_ok}, block=BLOCK)  # sentinel credentials

    @flow
    def wait_briefly() -> str:
        return watch_run(
            clients, step_watch(clients, cluster_id, step_id), timeout_minutes=0.02, poll_seconds=POLL_SECONDS
        )

    with pytest.raises(WaitTimedOut, match="cancelled"):
        wait_briefly()
    aws.client("emr").terminate_job_flows(JobFlowIds=[cluster_id])
    return cluster_id


@pytest.fixture(scope="module")
def scenarios(aws, fake_cluster, aws_calls) -> dict:
    """Play every scenario once, with sentinel credentials, collecting logs, states and exceptions."""
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.7.1.0/24")["Subnet"]["SubnetId"]
    AwsCredentials(
        aws_access_key_id=SENTINEL_KEY,
        aws_secret_access_key=SENTINEL_SECRET,
        region_name=REGION,
        aws_client_parameters=AwsClientParameters(endpoint_url=aws.endpoint),
    ).save(BLOCK, overwrite=True)
    EmrClusterConfig(key_pair_name=KEY_PAIR, subnet_id=subnet, poll_seconds=POLL_SECONDS, idle_timeout_minutes=45).save(
        BLOCK, overwrite=True
    )
    names = {"aws_credentials_block": BLOCK, "cluster_block": BLOCK}
    collect = _Collect()
    loggers = [logging.getLogger(), logging.getLogger("prefect")]
    for logger in loggers:
        logger.addHandler(collect)
    result: dict = {"exceptions": [], "flow_runs": [], "logs": collect.lines, "subnet": subnet}
    calls_before = len(aws_calls.calls)
    try:
        with aws_calls.throttling(THROTTLES):
            state, run_id = _run(images=aws.images, output=f"s3://{aws.bucket}/out/hardened", **names)
        result.update(state=state, flow_run_id=run_id, injected=list(aws_calls.injected))
        result["flow_runs"].append(run_id)

        fake_cluster.fail_next("Step failed with exitCode 1", "Traceback (most recent call last):\nValueError: x\n")
        failed, failed_run = _run(images=aws.images, output=f"s3://{aws.bucket}/out/hardened-failing", **names)
        result["flow_runs"].append(failed_run)
        result["step_failure"] = failed

        fake_cluster.fail_next_bootstrap(
            "On the master instance (i-0f00ba5), bootstrap action 1 returned a non-zero return code"
        )
        before = set(aws.clusters())
        bootstrap, bootstrap_run = _run(images=aws.images, output=f"s3://{aws.bucket}/out/hardened-boot", **names)
        result["flow_runs"].append(bootstrap_run)
        result.update(bootstrap=bootstrap, bootstrap_clusters=set(aws.clusters()) - before)

        result["own_cluster"] = _hang_until_cancelled(aws)  # a cluster not ours: what --cluster-id runs on
    finally:
        for logger in loggers:
            logger.removeHandler(collect)
    for state in (result["step_failure"], result["bootstrap"]):
        try:
            state.result()
        except Exception as exc:  # noqa: BLE001 - the message and traceback are what the tests read
            result["exceptions"].append("".join(traceback.format_exception(exc)))
    result["calls"] = aws_calls.calls[calls_before:]
    return result


@pytest.mark.slow
def test_throttled_calls_are_retried_the_run_succeeds_and_retries_are_logged(scenarios):
    assert scenarios["state"].is_completed(), scenarios["state"].message
    injected = scenarios["injected"]
    assert sorted(set(injected)) == sorted(THROTTLES) and len(injected) == sum(THROTTLES.values())
    retries = [line for line in scenarios["logs"] if "retry 1 after" in line or "retry 2 after" in line]
    assert any("emr.DescribeCluster: retry 2 after ThrottlingException" in line for line in retries), retries
    assert any("emr.RunJobFlow: retry 1 after ThrottlingException" in line for line in retries)
    assert any("s3.PutObject: retry 1 after SlowDown" in line for line in retries)
    assert len(retries) >= len(injected)
    assert scenarios["state"].result().validation.metrics.images_ok == 24


@pytest.mark.slow
def test_bootstrap_failure_is_named_and_nothing_is_left_running(aws, scenarios):
    state = scenarios["bootstrap"]
    assert state.is_failed()
    with pytest.raises(ClusterError) as caught:
        state.result()
    message = str(caught.value)
    assert "TERMINATED_WITH_ERRORS: BOOTSTRAP_FAILURE" in message
    assert "bootstrap action 1 returned a non-zero return code" in message
    assert f"/fruitflow/emr-logs/{next(iter(scenarios['bootstrap_clusters']))}/node/" in message  # where to look
    (cluster_id,) = scenarios["bootstrap_clusters"]
    assert aws.clusters()[cluster_id] == "TERMINATED_WITH_ERRORS"
    assert not [c for c, s in aws.clusters().items() if c == cluster_id and s not in ("TERMINATED_WITH_ERRORS",)]


def _engine(aws, **config) -> EmrEngine:
    """The EMR engine on moto, with a cluster block of ``config`` (its other fields at their defaults)."""
    engine = EmrEngine(EmrSettings(), aws=moto_clients())
    engine.__dict__["config"] = EmrClusterConfig.model_construct(log_uri=f"s3://{aws.bucket}/l/", **config)
    return engine


def test_cluster_stuck_before_ready_is_terminated(aws, fake_cluster):
    """Not ready in time (stuck bootstrapping): the error says so and the cluster is terminated, not left running."""
    flow_run_id = str(uuid.uuid4())
    stuck = _engine(aws, poll_seconds=POLL_SECONDS, cluster_ready_timeout_minutes=0.01)

    @flow
    def provision() -> str:
        return provision_place(stuck, flow_run_id, "fruitflow stuck")

    with (
        fake_cluster.hold_bootstrapping(),
        pytest.raises(ClusterError, match="did not become ready: BOOTSTRAPPING.*terminated it"),
    ):
        provision()
    assert list(aws.clusters_tagged(TAG_FLOW_RUN, flow_run_id).values()) == ["TERMINATED"]


def test_the_wait_for_a_cluster_logs_its_state_and_the_time_waited(aws, fake_cluster, caplog):
    """Waits talk (botocore waiters are silent): each state the cluster shows, and how long the wait has lasted."""
    flow_run_id = str(uuid.uuid4())
    engine = _engine(aws, poll_seconds=POLL_SECONDS, cluster_ready_timeout_minutes=1)

    @flow
    def provision() -> str:
        return provision_place(engine, flow_run_id, "fruitflow slow")

    with fake_cluster.hold_bootstrapping(seconds=1.5), caplog.at_level(logging.INFO):
        cluster_id = provision()
    aws.client("emr").terminate_job_flows(JobFlowIds=[cluster_id])
    said = [message for message in caplog.messages if message.startswith(f"cluster {cluster_id} ready: ")]
    assert len(said) == 2, f"one line for the one state the cluster showed (not one per poll), then the end: {said}"
    assert re.fullmatch(rf"cluster {cluster_id} ready: BOOTSTRAPPING, waiting for \d s", said[0]), said
    waited = re.fullmatch(rf"cluster {cluster_id} ready: done after (\d+) s", said[1])
    assert waited and 1 <= int(waited.group(1)) < 30, said


def _texts_that_could_leak(aws, scenarios) -> dict[str, str]:
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # logs are sent in batches: send what is queued before reading them back
    texts = {"captured logs": "\n".join(scenarios["logs"]), "exceptions": "\n".join(scenarios["exceptions"])}
    with get_client(sync_client=True) as prefect:
        for run_id in scenarios["flow_runs"]:
            run_uuid = uuid.UUID(run_id)
            flow_run = prefect.read_flow_run(run_uuid)
            texts[f"parameters of {run_id}"] = json.dumps(flow_run.parameters, default=str)
            logs = prefect.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_uuid])))
            texts[f"API logs of {run_id}"] = "\n".join(log.message for log in logs)
            artifacts = prefect.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_uuid]))
            )
            texts[f"artifacts of {run_id}"] = "\n".join(f"{a.key} {a.description} {a.data}" for a in artifacts)
    texts["step arguments"] = json.dumps(aws.step_arguments())
    s3 = aws.client("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=aws.bucket):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=aws.bucket, Key=item["Key"])["Body"].read()
            if body[:2] == b"\x1f\x8b":
                body = gzip.decompress(body)
            texts[f"s3://{aws.bucket}/{item['Key']}"] = body.decode("latin-1")
    return texts


@pytest.mark.slow
def test_sentinel_credentials_appear_nowhere(aws, aws_calls, scenarios):
    assert SENTINEL_KEY in aws_calls.access_keys, "the flow must really have used the sentinel credentials"
    texts = _texts_that_could_leak(aws, scenarios)
    assert any("API logs" in name and text for name, text in texts.items())
    assert len(scenarios["exceptions"]) == 2
    for secret in (SENTINEL_KEY, SENTINEL_SECRET, SENTINEL_SECRET.split("/")[1]):
        leaks = [name for name, text in texts.items() if secret in text]
        assert not leaks, f"{secret[:8]}... leaked into {leaks}"


@pytest.mark.slow
def test_every_created_cluster_has_idle_auto_termination_and_sse_and_no_public_ssh(aws, aws_calls, scenarios):
    """SIGKILL runs no cleanup: the idle policy is the net. Checked on every RunJobFlow our code sent this session."""
    requests = aws_calls.params("elasticmapreduce:RunJobFlow")
    assert len(requests) >= 2
    for request in requests:
        assert request["AutoTerminationPolicy"]["IdleTimeout"] >= 60
        tags = {tag["Key"] for tag in request["Tags"]}
        assert {"fruitflow:created-by", "fruitflow:flow-run-id"} <= tags
        assert {"Classification": "emrfs-site", "Properties": {"fs.s3.enableServerSideEncryption": "true"}} in request[
            "Configurations"
        ]
        instances = request["Instances"]
        assert not any("SecurityGroup" in key for key in instances), "we never choose or open security groups"
    (ours, *_rest) = [params for _prefix, operation, params in scenarios["calls"] if operation == "RunJobFlow"]
    assert ours["Instances"]["Ec2SubnetId"] == scenarios["subnet"]
    # The reaper's floor for this run: provisioning (30 min) + the step timeout (TEST_JOB: 10 min) + teardown (30).
    assert {"Key": "fruitflow:max-age-hours", "Value": f"{(30 + 10 + 30) / 60:g}"} in ours["Tags"]
    assert not [a for a in aws_calls.actions() if a.startswith("ec2:") and not a.startswith("ec2:Describe")]
    for group in aws.client("ec2").describe_security_groups()["SecurityGroups"]:
        for rule in group["IpPermissions"]:
            opens_ssh = rule.get("IpProtocol") == "-1" or rule.get("FromPort", 0) <= 22 <= rule.get("ToPort", -1)
            world = any(r["CidrIp"] == "0.0.0.0/0" for r in rule.get("IpRanges", []))
            assert not (opens_ssh and world), f"{group['GroupId']} lets the world in on port 22"


@pytest.mark.slow
def test_everything_we_upload_is_encrypted_at_rest(aws, aws_calls, scenarios):
    puts = aws_calls.params("s3:PutObject")
    assert puts and all(put.get("ServerSideEncryption") == "AES256" for put in puts)
    s3 = aws.client("s3")
    run_prefix = f"fruitflow/fruitflow-runs/{scenarios['flow_run_id']}/"
    staged = s3.list_objects_v2(Bucket=aws.bucket, Prefix=run_prefix)["Contents"]
    outputs = s3.list_objects_v2(Bucket=aws.bucket, Prefix="out/hardened/features/")["Contents"]
    for item in staged + outputs:  # the job's output, as EMRFS writes it under the emrfs-site classification
        assert s3.head_object(Bucket=aws.bucket, Key=item["Key"]).get("ServerSideEncryption") == "AES256", item["Key"]


# Permissions no botocore call shows, each with the reason it is needed.
IMPLIED = {
    "iam:PassRole": "RunJobFlow passes the EMR service role and the dedicated instance profile's role",
    "elasticmapreduce:AddTags": "RunJobFlow with Tags may be authorised as AddTags on the new cluster (tag on create)",
}
# s3:GetObject and s3:ListBucket are also used by pyarrow (validation, summary), which bypasses botocore; botocore
# calls use them as well, so they are recorded. HeadBucket/HeadObject/ListObjectsV2 are authorised as these actions:
AS_IAM_ACTION = {
    "s3:HeadBucket": "s3:ListBucket",
    "s3:ListObjectsV2": "s3:ListBucket",
    "s3:HeadObject": "s3:GetObject",
    "s3:CreateMultipartUpload": "s3:PutObject",
    "s3:UploadPart": "s3:PutObject",
    "s3:CompleteMultipartUpload": "s3:PutObject",
}


def _policy_actions(serverless: bool | None = None) -> set[str]:
    """The actions the policy allows: all of them, or only those of the EMR Serverless statements (Sid *Serverless*:
    their calls are checked by tests/test_emr_serverless_flow.py) or only the others."""
    policy = json.loads((REPO / "docs" / "iam-policy.json").read_text())
    actions = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        if serverless is not None and ("Serverless" in statement["Sid"]) != serverless:
            continue
        listed = statement["Action"]
        actions.update([listed] if isinstance(listed, str) else listed)
    return actions


@pytest.mark.slow
def test_iam_policy_is_exactly_what_the_flows_call(aws_calls, moto_http, scenarios, reaped):
    """Every action called (botocore's calls, and pyarrow's S3 requests as moto's server saw them) is allowed, and
    everything allowed is called (or IMPLIED)."""
    from_pyarrow_too = {action for action, _resource in moto_http.s3_actions(SENTINEL_KEY)}
    assert from_pyarrow_too, "moto's server must have recorded the sentinel credentials' S3 requests"
    used = {AS_IAM_ACTION.get(action, action) for action in aws_calls.actions()} | from_pyarrow_too
    allowed = _policy_actions()
    assert not [a for a in allowed if "*" in a], "no wildcard actions"
    assert not used - allowed, f"called but not allowed by docs/iam-policy.json: {sorted(used - allowed)}"
    unused = allowed - used - set(IMPLIED) - (_policy_actions(serverless=True) - _policy_actions(serverless=False))
    assert not unused, f"allowed but never called (remove, or add to IMPLIED with a reason): {sorted(unused)}"
    assert set(IMPLIED) <= allowed


# The policy's placeholders as the hardening scenarios fill them (blocks: bucket fruitflow-test, folder fruitflow).
PLACEHOLDERS = {
    "YOUR-FRUITFLOW-BUCKET": "fruitflow-test",
    "YOUR-BUCKET-FOLDER": "fruitflow",
    "YOUR-IMAGES-PREFIX": "images",
    "YOUR-OUTPUT-PREFIX": "out",
    "YOUR-REGION": REGION,
    "YOUR-ACCOUNT-ID": "123456789012",
    "YOUR-EMR-SERVICE-ROLE": "EMR_DefaultRole",
    "YOUR-EMR-INSTANCE-ROLE": "fruitflow-emr-ec2",
}
_CLUSTER_PARAMS = ("ClusterId", "JobFlowId", "ResourceId")


def _filled_policy(own_cluster: str) -> list[dict]:
    text = (REPO / "docs" / "iam-policy.json").read_text()
    for placeholder, value in {**PLACEHOLDERS, "YOUR-CLUSTER-ID": own_cluster}.items():
        text = text.replace(placeholder, value)
    return json.loads(text)["Statement"]


def _allows(statements: list[dict], action: str, resource: str, request_tags=None, resource_tags=None) -> bool:
    """IAM's answer for this request (tests/iam_evaluator.py)."""
    return allows(statements, action, resource, request_context(request_tags, resource_tags))


def _requests_to_check(scenarios, moto_http, tags_of: dict[str, dict]) -> list[tuple[str, str, dict, dict]]:
    """(action, resource ARN, request tags, resource tags) of everything the sentinel credentials did."""
    cluster_arn = f"arn:aws:elasticmapreduce:{REGION}:123456789012:cluster/"
    checked = [(action, resource, {}, {}) for action, resource in moto_http.s3_actions(SENTINEL_KEY)]
    for prefix, operation, params in scenarios["calls"]:
        if prefix == "s3":
            continue  # every S3 request is in moto_http's log, with its resource
        action = f"{prefix}:{operation}"
        ids = [params[name] for name in _CLUSTER_PARAMS if name in params] + list(params.get("JobFlowIds", []))
        if operation == "RunJobFlow":
            request_tags = {tag["Key"]: tag["Value"] for tag in params.get("Tags", [])}
            checked.append((action, "*", request_tags, {}))
            # Tag on create: the new cluster carries the tags of the request that creates it.
            checked.append((f"{prefix}:AddTags", cluster_arn + "j-NEW", request_tags, request_tags))
        elif ids:
            checked += [(action, cluster_arn + cluster_id, {}, tags_of.get(cluster_id, {})) for cluster_id in ids]
        else:
            checked.append((action, "*", {}, {}))
    return checked


@pytest.mark.slow
def test_the_policy_conditions_allow_every_request_the_flows_made(aws, moto_http, scenarios):
    """Resources and tag conditions, not just action names: each request of the scenarios (sentinel credentials) is
    allowed by docs/iam-policy.json with its placeholders filled; and the scoping really bites."""
    statements = _filled_policy(scenarios["own_cluster"])
    checked = _requests_to_check(scenarios, moto_http, aws.cluster_tags())
    refused = sorted(
        {(a, r) for a, r, request_tags, tags in checked if not _allows(statements, a, r, request_tags, tags)}
    )
    assert not refused, f"requests docs/iam-policy.json would refuse: {refused[:10]}"
    actions = {action for action, *_rest in checked}
    assert {
        "s3:GetObject",
        "s3:PutObject",
        "elasticmapreduce:TerminateJobFlows",
        "elasticmapreduce:CancelSteps",
    } <= actions
    # The scoping bites: a foreign cluster, an untagged creation, another bucket, a key outside the named prefixes.
    foreign = f"arn:aws:elasticmapreduce:{REGION}:123456789012:cluster/j-SOMEONEELSE"
    assert not _allows(statements, "elasticmapreduce:TerminateJobFlows", foreign, {}, {"team": "x"})
    assert not _allows(statements, "elasticmapreduce:AddJobFlowSteps", foreign, {}, {})
    assert not _allows(statements, "elasticmapreduce:RunJobFlow", "*", {"team": "x"}, {})
    assert not _allows(statements, "elasticmapreduce:AddTags", foreign, {"team": "x"}, {})
    assert not _allows(statements, "s3:GetObject", "arn:aws:s3:::another-bucket/images/a.jpg")
    assert not _allows(statements, "s3:PutObject", "arn:aws:s3:::fruitflow-test/images/Apple/planted.jpg")


@pytest.fixture(scope="module")
def reaped(aws, fake_cluster):
    """The reaper against clusters in every situation; returns (states before/after, what it reported)."""
    from prefect.states import Completed, Running

    from flows.reap import reap_clusters

    running, finished = flow_run_in(Running()), flow_run_in(Completed())

    def ours(run_id: str, keep: bool = False, max_age_hours: float | None = None) -> str:
        request = cluster_request(
            EmrClusterConfig(),
            name="reap",
            log_uri=f"s3://{aws.bucket}/l/",
            flow_run_id=run_id,
            keep=keep,
            max_age_hours=max_age_hours,
        )
        return aws.client("emr").run_job_flow(**request)["JobFlowId"]

    clusters = {
        "live run": ours(running),
        "finished run": ours(finished),
        "unknown run": ours(str(uuid.uuid4())),
        "kept, finished run": ours(finished, keep=True),
        "old, live run": ours(running),
        "old, live run, 8 h step timeout": ours(running, max_age_hours=9.0),  # 8 h step + provisioning + teardown
        "not ours": aws.client("emr").run_job_flow(
            Name="not ours",
            ReleaseLabel="emr-7.13.0",
            ServiceRole="EMR_DefaultRole",
            JobFlowRole="EMR_EC2_DefaultRole",
            Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1, "KeepJobFlowAliveWhenNoSteps": True},
        )["JobFlowId"],
    }
    for name in ("old, live run", "old, live run, 8 h step timeout"):
        fake_cluster.make_older(clusters[name], hours=7)
    report = reap_clusters(aws_credentials_block="fruitflow", max_age_hours=6, poll_seconds=1)
    states = aws.clusters()
    yield {name: states[cluster_id] for name, cluster_id in clusters.items()}, report, clusters
    aws.client("emr").terminate_job_flows(JobFlowIds=list(clusters.values()))


def test_reaper_terminates_our_old_or_orphaned_clusters_only(reaped):
    states, report, clusters = reaped
    terminated = {name for name, state in states.items() if state == "TERMINATED"}
    assert terminated == {"finished run", "old, live run"}
    reasons = {entry.cluster_id: entry.reason for entry in report}
    assert reasons[clusters["finished run"]] == "its flow run is COMPLETED"
    assert reasons[clusters["old, live run"]].startswith("older than 6 h (7.0 h)")
    assert states["old, live run, 8 h step timeout"] != "TERMINATED", "its own limit (9 h) outranks --max-age-hours 6"
