"""What a dead or failed run leaves on EMR Serverless is ended by tag: the flow hooks' cleanup (deletes the run's
applications, cancels its job runs on a reused one, touches nothing else) and the reaper (applications and job runs of
runs that have ended or are too old)."""

from __future__ import annotations

import logging
import uuid

import pytest
from prefect.states import Completed, Running

from blocks.emr_serverless_config import EmrServerlessConfig
from tasks.aws.run_names import run_name
from tasks.aws.tags import run_tags
from tasks.emr_serverless.engine import EmrServerlessEngine
from tasks.engine_settings import EmrServerlessSettings
from tests.emr_fixtures import POLL_SECONDS, UNPLAYED_TAG, flow_run_in


def _application(aws, flow_run_id: str | None = None) -> str:
    """An application, tagged as ours for ``flow_run_id`` (None: someone else's), started."""
    client = aws.client("emr-serverless")
    tags = run_tags(flow_run_id) if flow_run_id else {"team": "someone else"}
    name = "fruitflow t" if flow_run_id else "t"  # fruitflow names what it creates so (tasks/aws/tags.py)
    application_id = client.create_application(name=name, releaseLabel="emr-7.13.0", type="SPARK", tags=tags)
    client.start_application(applicationId=application_id["applicationId"])
    return application_id["applicationId"]


def _job_run(aws, application_id: str, flow_run_id: str | None) -> str:
    """A job run the fake holds RUNNING; ours (named and tagged for ``flow_run_id``) or someone else's."""
    tags = {UNPLAYED_TAG: "true", **(run_tags(flow_run_id) if flow_run_id else {})}
    return aws.client("emr-serverless").start_job_run(
        applicationId=application_id,
        clientToken=uuid.uuid4().hex,
        name=run_name(flow_run_id or "x", "t"),
        executionRoleArn="arn:aws:iam::123456789012:role/EMRServerlessS3RuntimeRole",
        tags=tags,
        jobDriver={"sparkSubmit": {"entryPoint": "s3://b/j.py", "sparkSubmitParameters": "--conf a=b"}},
    )["jobRunId"]


def _states(aws, **ids: tuple[str, str | None]) -> dict[str, str]:
    client = aws.client("emr-serverless")
    found = {}
    for name, (application_id, job_run_id) in ids.items():
        if job_run_id is None:
            found[name] = client.get_application(applicationId=application_id)["application"]["state"]
        else:
            found[name] = client.get_job_run(applicationId=application_id, jobRunId=job_run_id)["jobRun"]["state"]
    return found


def _delete(aws, *application_ids: str) -> None:
    client = aws.client("emr-serverless")
    for application_id in application_ids:
        if client.get_application(applicationId=application_id)["application"]["state"] != "TERMINATED":
            client.stop_application(applicationId=application_id)
            client.delete_application(applicationId=application_id)


def test_the_hook_cleanup_ends_this_runs_resources_and_nothing_else(aws, serverless):
    flow_run_id = str(uuid.uuid4())
    ours, reused, other_run = _application(aws, flow_run_id), _application(aws), _application(aws, str(uuid.uuid4()))
    resources = {
        "our application": (ours, None),
        "job run on it": (ours, _job_run(aws, ours, flow_run_id)),
        "reused application": (reused, None),
        "our job run on the reused one": (reused, _job_run(aws, reused, flow_run_id)),
        "someone's job run on it": (reused, _job_run(aws, reused, None)),
        "another run's application": (other_run, None),
    }
    EmrServerlessConfig(application_id=reused, poll_seconds=POLL_SECONDS).save("sl-hook", overwrite=True)
    engine = EmrServerlessEngine(EmrServerlessSettings(serverless_block="sl-hook"))
    try:
        engine.cleanup(flow_run_id, "Crashed", logging.getLogger("test"))
        assert _states(aws, **resources) == {
            "our application": "TERMINATED",
            "job run on it": "CANCELLED",
            "reused application": "STARTED",
            "our job run on the reused one": "CANCELLED",
            "someone's job run on it": "RUNNING",
            "another run's application": "STARTED",
        }
    finally:
        _delete(aws, ours, reused, other_run)


@pytest.fixture
def reaped(aws, serverless):
    """The reaper against applications and job runs in every situation: (states after, what it reported)."""
    from flows.reap import reap_clusters
    from tasks.emr_serverless.reaper import StaleServerless

    running, finished = flow_run_in(Running()), flow_run_in(Completed())
    foreign = _application(aws)
    resources = {
        "live run's application": (_application(aws, running), None),
        "finished run's application": (_application(aws, finished), None),
        "unknown run's application": (_application(aws, str(uuid.uuid4())), None),
        "old live run's application": (_application(aws, running), None),
        "someone's application": (foreign, None),
        "finished run's job run on it": (foreign, _job_run(aws, foreign, finished)),
        "live run's job run on it": (foreign, _job_run(aws, foreign, running)),
        "someone's job run on it": (foreign, _job_run(aws, foreign, None)),
    }
    serverless.make_older(resources["old live run's application"][0], hours=7)
    report = [e for e in reap_clusters(max_age_hours=6, poll_seconds=1) if isinstance(e, StaleServerless)]
    yield _states(aws, **resources), report, resources
    _delete(aws, *{application_id for application_id, _job in resources.values()})


def test_the_reaper_ends_our_stale_applications_and_job_runs_only(reaped):
    states, report, resources = reaped
    assert states == {
        "live run's application": "STARTED",
        "finished run's application": "TERMINATED",
        "unknown run's application": "STARTED",  # maybe another Prefect server's: left until the age limit
        "old live run's application": "TERMINATED",
        "someone's application": "STARTED",
        "finished run's job run on it": "CANCELLED",
        "live run's job run on it": "RUNNING",
        "someone's job run on it": "RUNNING",
    }
    reasons = {entry.resource_id: entry.reason for entry in report}
    assert reasons[resources["finished run's application"][0]] == "its flow run is COMPLETED"
    assert reasons[resources["old live run's application"][0]].startswith("older than 6 h (7.0 h)")
    assert reasons["/".join(resources["finished run's job run on it"])] == "its flow run is COMPLETED"
    assert len(report) == 3
