"""EMR Serverless resources a dead flow left behind, found by our tags: applications fruitflow created, and our job runs
on applications it did not create (a reused ``application_id``), each older than a limit or of a flow run that ended.

A SIGKILLed flow runs no cleanup: a job run still ends at its ``executionTimeoutMinutes`` and the application stops
after its idle minutes, but a stopped application stays (free without initial capacity, yet clutter); this deletes
it, and cancels a job run whose flow is gone, with the same rules as the cluster reaper (tasks/emr/reaper.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from botocore.exceptions import ClientError
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.aws.clients import AwsClients
from tasks.aws.preflight import error_code
from tasks.aws.reaping import LiveRun, flow_run_state, run_in_use, run_limit_hours, stale_reason
from tasks.aws.run_names import named_flow_run
from tasks.aws.tags import ACCESS_DENIED, TAG_FLOW_RUN, is_ours
from tasks.emr_serverless.application import application_summaries, delete_application, read_if_named_ours
from tasks.emr_serverless.job_run import cancel_job_runs, live_job_runs


@dataclass(frozen=True)
class StaleServerless:
    """An application to delete, or a job run (on an application that is not ours) to cancel."""

    kind: str  # "application" or "job run"
    application_id: str
    job_run_id: str | None
    name: str
    flow_run_id: str
    age_hours: float
    reason: str

    @property
    def resource_id(self) -> str:
        return self.application_id if self.job_run_id is None else f"{self.application_id}/{self.job_run_id}"


def _age_hours(resource: dict, now: datetime) -> float:
    created = resource.get("createdAt") or now
    return max((now - created).total_seconds(), 0.0) / 3600


def _verdict(tags: dict[str, str], age_hours: float, max_age_hours: float) -> tuple[str, str | None]:
    run_id = tags.get(TAG_FLOW_RUN, "")
    return run_id, stale_reason(tags, age_hours, max_age_hours, flow_run_state(run_id))


def _stale_job_runs(client, application_id: str, max_age_hours: float, now: datetime) -> list[StaleServerless]:
    stale = []
    for summary in live_job_runs(client, application_id):
        if not named_flow_run(summary.get("name")):
            continue  # not named as ours: never read (nor allowed: GetJobRun only on job runs with our tag)
        try:
            job_run = client.get_job_run(applicationId=application_id, jobRunId=summary["id"])["jobRun"]
        except ClientError as exc:
            if error_code(exc) not in ACCESS_DENIED:
                raise
            continue
        tags = job_run.get("tags") or {}
        if not is_ours(tags):
            continue
        age = _age_hours(job_run, now)
        run_id, reason = _verdict(tags, age, max_age_hours)
        if reason:
            stale.append(
                StaleServerless(
                    "job run", application_id, summary["id"], job_run.get("name") or "", run_id, round(age, 2), reason
                )
            )
    return stale


def _job_run_in_use(client, application_id: str, limit_hours: float, now: datetime) -> LiveRun | None:
    """A queued or running job run of a live flow run on the application (whoever created it), if any: the reaper
    never deletes an application under it (the rule of tasks/emr/reaper.py for a cluster's live steps)."""
    for summary in live_job_runs(client, application_id):
        job_run = LiveRun(summary["id"], named_flow_run(summary.get("name")), _age_hours(summary, now))
        if run_in_use(job_run, limit_hours, flow_run_state(job_run.flow_run_id)):
            return job_run
    return None


@task(name="find-stale-serverless", cache_policy=NO_CACHE)
def find_stale_serverless(aws: AwsClients, max_age_hours: float) -> list[StaleServerless]:
    """Our applications, and our job runs on other applications, that are too old or whose flow run has ended.

    Where these credentials may not list EMR Serverless applications (a cluster-only setup), nothing is reaped.
    """
    logger = get_run_logger()
    client = aws("emr-serverless")
    now = datetime.now(UTC)
    stale: list[StaleServerless] = []
    try:
        for summary in application_summaries(client):
            application_id = summary["id"]
            application = read_if_named_ours(client, summary)
            tags = (application or {}).get("tags") or {}
            if application is None or not is_ours(tags):
                stale += _stale_job_runs(client, application_id, max_age_hours, now)
                continue
            age = _age_hours(application, now)
            run_id, reason = _verdict(tags, age, max_age_hours)
            if reason is None:
                logger.info("application %s (flow run %s) is left alone", application_id, run_id)
                continue
            using = _job_run_in_use(client, application_id, max(max_age_hours, run_limit_hours(tags)), now)
            if using is not None:
                why = f"job run {using.run_id} of flow run {using.flow_run_id or 'unknown'} is live"
                logger.info("application %s (%s) is left alone: %s", application_id, reason, why)
                continue
            stale.append(
                StaleServerless(
                    "application", application_id, None, application.get("name", ""), run_id, round(age, 2), reason
                )
            )
    except ClientError as exc:
        if error_code(exc) not in ("AccessDeniedException", "AccessDenied", "UnrecognizedClientException"):
            raise
        logger.warning("EMR Serverless not reaped: these credentials may not list its applications (%s)", exc)
    return stale


def reap_serverless(aws: AwsClients, entry: StaleServerless, poll_seconds: float) -> None:
    """Delete a stale application (its job runs cancelled first), or cancel a stale job run."""
    if entry.job_run_id is None:
        delete_application(aws, entry.application_id, poll_seconds)
    else:
        cancel_job_runs(aws, entry.application_id, [entry.job_run_id], poll_seconds)
