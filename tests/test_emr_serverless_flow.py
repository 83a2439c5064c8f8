"""The EMR Serverless engine end to end against moto, the fake playing job runs with the real job.

One module fixture plays the scenarios once and the tests read what they left: the happy path (in the EMR parity
environment: Python 3.9, Spark 3.5, the staged script and package run by spark-submit); a failing job run; a reused
application whose GetJobRun is throttled (clients injected with ``customize=``); a StartJobRun whose reply is lost and a
retried start task; a job run that outlives its timeout. The last test checks every AWS call they made against the
EMR Serverless statements of docs/iam-policy.json.
"""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ReadTimeoutError
from botocore.httpsession import URLLib3Session
from prefect import flow
from prefect_aws import AwsCredentials

from blocks.emr_serverless_config import EmrServerlessConfig
from flows.fruit_features import run_engine
from fruitjob.options import JobOptions, job_arguments
from tasks.aws.clients import AwsClients
from tasks.aws.remote_wait import RemoteRunFailed, WaitTimedOut, watch_run
from tasks.aws.tags import TAG_CREATED_BY, TAG_FLOW_RUN, run_tags
from tasks.emr_serverless.engine import EmrServerlessEngine
from tasks.emr_serverless.job_run import job_run_request, job_run_watch, start_job_run
from tasks.engine_settings import EmrServerlessSettings
from tasks.markdown import md_text
from tests.emr_fixtures import POLL_SECONDS, UNPLAYED_TAG, _Raw, moto_clients
from tests.serverless_fixtures import SERVERLESS_JOB, serverless_flow
from tests.test_hardening_emr import PLACEHOLDERS, _allows, _filled_policy, _policy_actions

pytestmark = pytest.mark.slow
# the happy path runs the health stage, as users' runs do (SERVERLESS_JOB turns it off for the other scenarios)
HAPPY_PATH = {"health": "on"}
# Permissions no call of ours shows, with the reason.
IMPLIED = {
    "iam:PassRole": "StartJobRun passes the execution role to emr-serverless.amazonaws.com",
    "emr-serverless:TagResource": "CreateApplication and StartJobRun with tags are authorised as TagResource too",
}


def _throttle(times: int):
    """A ``customize`` for AwsClients: the first ``times`` GetJobRun requests are refused with ThrottlingException."""
    left = {"n": times}

    def answer(request, **_kwargs):
        if left["n"] <= 0:
            return None
        left["n"] -= 1
        body = b'{"__type": "ThrottlingException", "message": "Rate exceeded"}'
        return AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.1"}, _Raw(body))

    return lambda client: client.meta.events.register("before-send.emr-serverless.GetJobRun", answer)


def _lose_first_reply(sent: list):
    """A StartJobRun handler: the first request reaches moto, but its reply is lost (botocore resends it)."""

    def send(request, **_kwargs):
        sent.append(request.url)
        if len(sent) == 1:
            URLLib3Session().send(request)
            raise ReadTimeoutError(endpoint_url=request.url)
        return None

    return send


def _throttled_run(aws, output: str, serverless_block: str) -> dict:
    """The engine with injected clients whose GetJobRun is throttled three times, in a flow of its own."""
    clients = AwsClients(AwsCredentials.load("fruitflow"), customize=_throttle(3))
    settings = EmrServerlessSettings(step_timeout_minutes=10, serverless_block=serverless_block)
    engine = EmrServerlessEngine(settings, aws=clients)
    options = {k: v for k, v in SERVERLESS_JOB.items() if k != "step_timeout_minutes"}

    @flow
    def throttled() -> object:
        return run_engine(engine, JobOptions(images=aws.images, output=output, **options), dry_run=False)

    return throttled()


def _start_twice_then_time_out(aws) -> dict:
    """A lost StartJobRun reply, a retried start task, then a wait past the timeout (the job run is held RUNNING)."""
    client = aws.client("emr-serverless")
    flow_run_id, sent, resent = str(uuid.uuid4()), [], []
    application_id = client.create_application(
        name="fruitflow starts", releaseLabel="emr-7.13.0", type="SPARK", tags=run_tags(flow_run_id)
    )["applicationId"]
    request = job_run_request(
        EmrServerlessConfig(tags={UNPLAYED_TAG: "true"}),
        application_id=application_id,
        role_arn="arn:aws:iam::123456789012:role/EMRServerlessS3RuntimeRole",
        script_uri="s3://b/job.py",
        job_args=["--images", aws.images],
        confs={"spark.executor.cores": "4"},
        token="tok-1",
        flow_run_id=flow_run_id,
        log_uri=f"s3://{aws.bucket}/sl-logs/",
        timeout_minutes=10,
        max_age_hours=1.0,
    )
    lossy = moto_clients({"before-send.emr-serverless.StartJobRun": _lose_first_reply(sent)})
    counting = moto_clients({"before-send.emr-serverless.StartJobRun": lambda **kw: resent.append(1)})

    @flow
    def start_twice() -> tuple[str, str]:
        return start_job_run(lossy, request), start_job_run(counting, request)

    @flow
    def wait_briefly() -> None:
        watch = job_run_watch(counting, application_id, first, f"s3://{aws.bucket}/sl-logs/")
        watch_run(counting, watch, timeout_minutes=0.02, poll_seconds=POLL_SECONDS)

    first, second = start_twice()
    named = [r for r in client.list_job_runs(applicationId=application_id)["jobRuns"] if r["name"] == request["name"]]
    try:
        wait_briefly()
        timed_out = None
    except RemoteRunFailed as exc:
        timed_out = exc
    state = client.get_job_run(applicationId=application_id, jobRunId=first)["jobRun"]["state"]
    client.stop_application(applicationId=application_id)
    client.delete_application(applicationId=application_id)
    return {
        "ids": (first, second),
        "sent": sent,
        "resent": resent,
        "named": named,
        "timed_out": timed_out,
        "state_after_timeout": state,
        "application_id": application_id,
    }


@pytest.fixture(scope="module")
def played(aws, serverless, parity_env, aws_calls):
    """Play every scenario once; what each left, and every AWS call they made."""
    client = aws.client("emr-serverless")
    start = len(aws_calls.calls)
    out: dict = {"parity": parity_env is not None}
    with serverless.parity(parity_env):
        out["happy"] = serverless_flow(aws.images, f"s3://{aws.bucket}/out/sl-happy", return_state=True, **HAPPY_PATH)

    serverless.fail_next(
        "Job failed, please check complete logs in configured logging destination. ExitCode: 1. Last few "
        "exceptions: ValueError: no images under s3://x",
        "starting\nTraceback (most recent call last):\nValueError: no images under s3://x (0 files seen)\n",
    )
    out["failing"] = serverless_flow(aws.images, f"s3://{aws.bucket}/out/sl-failing", return_state=True)

    # one run shows two things: an application given in the block is reused (and left running), and a throttled
    # GetJobRun is retried (each needs a job run that succeeds; the job is the costly part)
    reused = client.create_application(name="someone else's", releaseLabel="emr-7.13.0", type="SPARK")["applicationId"]
    client.start_application(applicationId=reused)
    EmrServerlessConfig(application_id=reused, poll_seconds=POLL_SECONDS).save("sl-reused", overwrite=True)
    before = {app["id"] for app in client.list_applications()["applications"]}
    collect, loggers = _Collect(), [logging.getLogger(), logging.getLogger("prefect")]
    for logger in loggers:
        logger.addHandler(collect)
    try:
        out["throttled"] = _throttled_run(aws, f"s3://{aws.bucket}/out/sl-throttled", serverless_block="sl-reused")
    finally:
        for logger in loggers:
            logger.removeHandler(collect)
    out.update(
        throttle_logs=collect.lines,
        reused_id=reused,
        reused_state=client.get_application(applicationId=reused)["application"]["state"],
        new_after_reuse={app["id"] for app in client.list_applications()["applications"]} - before,
    )
    client.stop_application(applicationId=reused)
    client.delete_application(applicationId=reused)
    out["starts"] = _start_twice_then_time_out(aws)
    out["calls"] = aws_calls.calls[start:]
    return out


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _application(aws, application_id: str) -> dict:
    return aws.client("emr-serverless").get_application(applicationId=application_id)["application"]


def _job_runs(aws, application_id: str) -> list[dict]:
    return aws.client("emr-serverless").list_job_runs(applicationId=application_id)["jobRuns"]


def test_happy_path_outputs_validated_and_application_deleted(aws, played):
    assert played["happy"].is_completed(), played["happy"].message
    result = played["happy"].result()
    application_id, job_run_id = result.ids["application_id"], result.ids["job_run_id"]
    application = _application(aws, application_id)
    assert application["state"] == "TERMINATED", "the application the flow created is deleted"
    assert application["tags"][TAG_CREATED_BY] == "fruitflow" and application["tags"][TAG_FLOW_RUN]
    assert application["autoStopConfiguration"] == {"enabled": True, "idleTimeoutMinutes": 30}
    (job_run,) = _job_runs(aws, application_id)
    assert (job_run["id"], job_run["state"]) == (job_run_id, "SUCCESS")
    assert job_run["name"].startswith(f"fruitflow extract-features {application['tags'][TAG_FLOW_RUN]} ")

    metrics = result.validation.metrics
    assert (metrics.images_ok, metrics.images_failed) == (24, 1)
    written = json.loads(aws.client("s3").get_object(Bucket=aws.bucket, Key="out/sl-happy/metrics.json")["Body"].read())
    assert (written["engine"], written["cluster_id"]) == ("emr-serverless", application_id)
    if played["parity"]:  # the staged script and package ran under the EMR stack, as EMR Serverless runs them
        assert written["versions"]["python"].startswith("3.9.") and written["versions"]["spark"].startswith("3.5.")
    log_key = f"fruitflow/emr-serverless-logs/applications/{application_id}/jobs/{job_run_id}/SPARK_DRIVER/stderr.gz"
    assert aws.client("s3").head_object(Bucket=aws.bucket, Key=log_key)

    assert [detail.name for detail in result.details] == ["application id", "job run id", "console url"]
    assert result.cost_estimate.vcpu_hours > 0 and result.cost_estimate.usd is not None
    assert "billed resources from GetJobRun" in result.cost_estimate.text
    summary = aws.client("s3").get_object(Bucket=aws.bucket, Key="out/sl-happy/summary.md")["Body"].read().decode()
    summary = summary.replace("<br>", " ")  # long cells are broken into lines to fit the UI's page
    assert f"| job run id | {job_run_id} |" in summary
    assert f"| cost (estimate) | {md_text(result.cost_estimate.text)} |" in summary


def test_the_job_run_request_carries_the_staged_job_and_is_idempotent(aws, played):
    result = played["happy"].result()
    (request,) = [
        p
        for prefix, op, p in played["calls"]
        if op == "StartJobRun" and p["applicationId"] == result.ids["application_id"]
    ]
    submit = request["jobDriver"]["sparkSubmit"]
    flow_run_id = _application(aws, result.ids["application_id"])["tags"][TAG_FLOW_RUN]
    staged = f"s3://{aws.bucket}/fruitflow/fruitflow-runs/{flow_run_id}/job/"
    assert submit["entryPoint"] == staged + "extract_features.py"
    assert f"--conf spark.submit.pyFiles={staged}" in submit["sparkSubmitParameters"]
    arguments = submit["entryPointArguments"]
    context = {name: arguments[arguments.index(name) + 1] for name in ("--engine", "--flow-run-id", "--cluster-id")}
    assert context == {
        "--engine": "emr-serverless",
        "--flow-run-id": flow_run_id,
        "--cluster-id": result.ids["application_id"],
    }
    assert "FRUITFLOW_" not in submit["sparkSubmitParameters"]
    job = JobOptions(
        images=aws.images,
        output=f"s3://{aws.bucket}/out/sl-happy",
        **{k: v for k, v in (SERVERLESS_JOB | HAPPY_PATH).items() if k != "step_timeout_minutes"},
    )
    model = f"s3://{aws.bucket}/fruitflow/fruitflow-runs/{flow_run_id}/weights/"
    shipped = submit["entryPointArguments"][submit["entryPointArguments"].index("--tflite-model") + 1]
    assert shipped.startswith(model + "fruitflow-tflite-") and shipped.endswith(".tflite")  # converted by the flow
    context = {"engine": "emr-serverless", "flow_run_id": flow_run_id, "cluster_id": result.ids["application_id"]}
    assert submit["entryPointArguments"] == job_arguments(job, tflite_model=shipped, **context)
    assert "fruitflow-environments/fruitflow-env-py39-x86_64-" in submit["sparkSubmitParameters"]  # the archive
    assert request["clientToken"] == request["name"].rsplit(" ", 1)[1]
    assert request["executionTimeoutMinutes"] == 10 and request["tags"][TAG_FLOW_RUN] == flow_run_id
    log_uri = request["configurationOverrides"]["monitoringConfiguration"]["s3MonitoringConfiguration"]["logUri"]
    assert log_uri == f"s3://{aws.bucket}/fruitflow/emr-serverless-logs/"


def test_a_failed_job_run_reports_its_details_and_log_tail_and_deletes_the_application(aws, played):
    state = played["failing"]
    assert state.is_failed()
    with pytest.raises(RemoteRunFailed) as caught:
        state.result()
    message = str(caught.value)
    assert "FAILED: Job failed, please check complete logs" in message and "Last few exceptions" in message
    assert "ValueError: no images under s3://x (0 files seen)" in message  # the driver's stderr.gz, read back
    assert caught.value.log_uri.endswith("/SPARK_DRIVER/stderr.gz")
    application_id = caught.value.log_uri.split("/applications/")[1].split("/")[0]
    assert _application(aws, application_id)["state"] == "TERMINATED"


def test_a_reused_application_runs_the_job_and_is_left_running(played):
    result = played["throttled"]  # the throttled run is the one on a reused application
    assert result.ids["application_id"] == played["reused_id"] and not played["new_after_reuse"]
    assert played["reused_state"] == "STARTED", "never stopped nor deleted by the flow"
    assert result.validation.metrics.images_ok == 24


def test_throttled_get_job_run_is_retried_and_the_run_succeeds(played):
    result = played["throttled"]
    assert result.validation.metrics.images_ok == 24
    retries = {line for line in played["throttle_logs"] if "emr-serverless.GetJobRun: retry" in line}  # logged twice
    assert [line.split(": ", 1)[1][:7] for line in sorted(retries)] == ["retry 1", "retry 2", "retry 3"], retries
    assert all("after ThrottlingException" in line for line in retries), retries


def test_a_retried_start_never_starts_a_second_job_run(played):
    starts = played["starts"]
    first, second = starts["ids"]
    assert first == second and len(starts["named"]) == 1
    assert len(starts["sent"]) == 2, "botocore resent the request whose reply was lost (same clientToken)"
    assert starts["resent"] == [], "the retried task found the job run by its name and sent nothing"


def test_a_job_run_past_its_timeout_is_cancelled(played):
    starts = played["starts"]
    assert isinstance(starts["timed_out"], WaitTimedOut) and "cancelled (--step-timeout-minutes)" in str(
        starts["timed_out"]
    )
    assert starts["state_after_timeout"] == "CANCELLED"


def _resource(params: dict) -> str:
    arn = "arn:aws:emr-serverless:us-east-1:123456789012:/applications/"
    if "jobRunId" in params:
        return f"{arn}{params['applicationId']}/jobruns/{params['jobRunId']}"
    return f"{arn}{params['applicationId']}" if "applicationId" in params else "*"


def _tags_of(aws, params: dict) -> dict:
    client = aws.client("emr-serverless")
    if "jobRunId" in params:
        return client.get_job_run(applicationId=params["applicationId"], jobRunId=params["jobRunId"])["jobRun"]["tags"]
    if "applicationId" in params:
        return _application(aws, params["applicationId"]).get("tags") or {}
    return {}


def test_the_policy_allows_every_serverless_call_and_nothing_unused(aws, played):
    """docs/iam-policy.json, placeholders filled: each EMR Serverless request (resource ARN, request and resource
    tags) is allowed; every action of its EMR Serverless statements was called (or is IMPLIED)."""
    text = json.dumps(_filled_policy("j-NONE")).replace("YOUR-APPLICATION-ID", played["reused_id"])
    statements = json.loads(text.replace("YOUR-SERVERLESS-ROLE", "EMRServerlessS3RuntimeRole"))
    used = {f"{prefix}:{operation}" for prefix, operation, _params in played["calls"]}
    refused = []
    for prefix, operation, params in played["calls"]:
        if prefix == "emr-serverless":
            args = (f"{prefix}:{operation}", _resource(params), params.get("tags") or {}, _tags_of(aws, params))
            refused += [args[:2]] if not _allows(statements, *args) else []
    assert not refused, f"requests docs/iam-policy.json would refuse: {sorted(set(refused))[:10]}"
    assert PLACEHOLDERS["YOUR-REGION"] == "us-east-1"
    serverless_only = _policy_actions(serverless=True) - _policy_actions(serverless=False)
    assert not serverless_only - used - set(IMPLIED), f"allowed, never called: {serverless_only - used - set(IMPLIED)}"
    assert not {a for a in used if a.startswith("emr-serverless:")} - _policy_actions(), "called, not allowed"
    foreign = "arn:aws:emr-serverless:us-east-1:123456789012:/applications/someoneelse"
    assert not _allows(statements, "emr-serverless:DeleteApplication", foreign, {}, {"team": "x"})
    assert not _allows(statements, "emr-serverless:CreateApplication", "*", {"team": "x"}, {})
    assert not _allows(statements, "emr-serverless:CancelJobRun", foreign + "/jobruns/j", {}, {})
