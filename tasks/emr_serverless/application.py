"""The EMR Serverless application: its request from the block, created (idempotently) and started, found by our tags,
stopped and deleted."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from botocore.exceptions import ClientError, WaiterError

from blocks.emr_serverless_config import EmrServerlessConfig
from tasks.aws.clients import AwsClients, run_logger
from tasks.aws.preflight import error_code
from tasks.aws.tags import ACCESS_DENIED, TAG_MAX_AGE, is_ours, named_as_ours, our_name, run_tags
from tasks.aws.waiting import wait
from tasks.emr_serverless.job_run import cancel_job_runs, live_job_runs
from tasks.emr_serverless.waiters import application_state, waiter
from tasks.errors import FruitflowError

# States in which an application may still run (or start) work: what teardown and the reaper look at.
ACTIVE_STATES = ["CREATING", "CREATED", "STARTING", "STARTED", "STOPPING", "STOPPED"]
# stop_and_delete() waits this long for each state (started, stopped, deleted); a started application bills its
# pre-initialized capacity until it is STOPPED.
STATE_WAIT_MINUTES = 15


class ApplicationError(FruitflowError, RuntimeError):
    """The application did not become ready, or could not be deleted; the message carries its stateDetails."""


def _worker(cores: int, memory_gb: int) -> dict:
    return {"cpu": f"{cores} vCPU", "memory": f"{memory_gb + max(1, round(memory_gb * 0.1))} GB"}


def application_request(config: EmrServerlessConfig, *, name: str, flow_run_id: str, max_age_hours: float) -> dict:
    """The ``create_application`` arguments: Spark, the block's release, capacity and auto-stop, our tags.

    Auto-start stays on (a job run starts a stopped application); auto-stop is the net for a flow that dies.
    """
    request = {
        "name": our_name(name)[:64],
        "releaseLabel": config.release_label,
        "type": "SPARK",
        # Same run, same token: a CreateApplication resent after a lost reply does not make a second application.
        "clientToken": hashlib.sha256(f"fruitflow-application {flow_run_id}".encode()).hexdigest()[:32],
        "architecture": config.architecture,
        "maximumCapacity": {"cpu": f"{config.max_vcpus} vCPU", "memory": f"{config.max_memory_gb} GB"},
        "autoStartConfiguration": {"enabled": True},
        "autoStopConfiguration": {"enabled": True, "idleTimeoutMinutes": config.auto_stop_idle_minutes},
        "tags": {**run_tags(flow_run_id, config.tags), TAG_MAX_AGE: f"{max_age_hours:g}"},
    }
    if config.initial_executors:
        request["initialCapacity"] = {
            "Driver": {"workerCount": 1, "workerConfiguration": _worker(config.driver_cores, config.driver_memory_gb)},
            "Executor": {
                "workerCount": config.initial_executors,
                "workerConfiguration": _worker(config.executor_cores, config.executor_memory_gb),
            },
        }
    return request


def application_summaries(client, states: list[str] | None = None) -> Iterator[dict]:
    """ListApplications summaries (id, name, state: no tags, no configuration) in ``states`` (default: active)."""
    for page in client.get_paginator("list_applications").paginate(states=states or ACTIVE_STATES):
        yield from page["applications"]


def read_if_named_ours(client, summary: dict) -> dict | None:
    """The application of a summary named as ours (GetApplication), or None: another team's application (and its
    configuration) is never read; the policy allows GetApplication only on ours, and a refused read means "not ours"."""
    if not named_as_ours(summary.get("name")):
        return None
    try:
        return client.get_application(applicationId=summary["id"])["application"]
    except ClientError as exc:
        if error_code(exc) not in ACCESS_DENIED:
            raise
        return None


def applications(client, states: list[str] | None = None) -> Iterator[tuple[dict, dict[str, str]]]:
    """(application, its tags) for every application named as ours in ``states`` (default: active), read once here
    (teardown and the reaper both list): ListApplications gives names, not tags."""
    for summary in application_summaries(client, states):
        application = read_if_named_ours(client, summary)
        if application is not None:
            yield application, application.get("tags") or {}


def our_applications(client, states: list[str] | None = None) -> Iterator[tuple[dict, dict[str, str]]]:
    """(application, its tags) for every application fruitflow created, in ``states`` (default: active)."""
    return ((application, tags) for application, tags in applications(client, states) if is_ours(tags))


def find_run_applications(client, flow_run_id: str) -> list[str]:
    """Ids of the active applications fruitflow created for this flow run (by tag)."""
    return [app["applicationId"] for app, tags in our_applications(client) if is_ours(tags, flow_run_id)]


def _wait_state(aws: AwsClients, name: str, application_id: str, what: str, poll: float, timeout: float) -> None:
    wait(
        waiter(name, aws("emr-serverless")),
        what=f"application {application_id} {what}",
        state=application_state,
        delay=poll,
        timeout_minutes=timeout,
        applicationId=application_id,
    )


def not_ready(client, application_id: str) -> ApplicationError:
    application = client.get_application(applicationId=application_id)["application"]
    details = application.get("stateDetails") or "EMR Serverless gave no details"
    return ApplicationError(f"application {application_id} did not become ready: {application['state']}: {details}")


def wait_until_started(aws: AwsClients, application_id: str, config: EmrServerlessConfig) -> None:
    """Wait until the application may be started, start it (unless it already is) and wait until STARTED."""
    client = aws("emr-serverless")
    timeout, poll = config.application_ready_timeout_minutes, config.poll_seconds
    _wait_state(aws, "ApplicationCreated", application_id, "created", poll, timeout)
    if application_state(client.get_application(applicationId=application_id)) != "STARTED":
        client.start_application(applicationId=application_id)
    _wait_state(aws, "ApplicationStarted", application_id, "started", poll, timeout)


def stop_and_delete(
    aws: AwsClients, application_id: str, poll_seconds: float = 15, timeout_minutes: float = STATE_WAIT_MINUTES
) -> None:
    """Stop the application, wait until it may be deleted, delete it (plain function: hooks call it outside tasks)."""
    client = aws("emr-serverless")
    state = application_state(client.get_application(applicationId=application_id))
    if state == "TERMINATED":
        return
    try:
        if state in ("STARTING", "STARTED"):
            _wait_state(aws, "ApplicationStarted", application_id, "started", poll_seconds, timeout_minutes)
            client.stop_application(applicationId=application_id)
        _wait_state(aws, "ApplicationStopped", application_id, "stopped", poll_seconds, timeout_minutes)
        client.delete_application(applicationId=application_id)
        _wait_state(aws, "ApplicationDeleted", application_id, "deleted", poll_seconds, timeout_minutes)
    except (WaiterError, ClientError) as exc:
        code = error_code(exc) if isinstance(exc, ClientError) else "timeout"
        raise ApplicationError(f"application {application_id} was not deleted ({code}): {exc}") from exc


def delete_application(aws: AwsClients, application_id: str, poll_seconds: float, logger=None) -> None:
    """Cancel whatever runs on an application we created, then stop and delete it."""
    logger = logger or run_logger()
    live = [job_run["id"] for job_run in live_job_runs(aws("emr-serverless"), application_id)]
    cancel_job_runs(aws, application_id, live, poll_seconds)
    logger.info("stopping and deleting application %s", application_id)
    stop_and_delete(aws, application_id, poll_seconds)
    logger.info("application %s is deleted", application_id)
