"""The EMR Serverless backend of the remote lifecycle (tasks/aws/remote.py): an application the flow creates, starts
and deletes (or the block's ``application_id``, left as it is), the job as one job run, billed resources priced.

A SIGKILLed flow leaves the job run to its ``executionTimeoutMinutes``, the application to its auto-stop and both
to the reaper.
"""

from __future__ import annotations

from typing import Any, ClassVar

from prefect import runtime

from blocks.emr_serverless_config import EmrServerlessConfig
from fruitjob.options import JobOptions
from tasks.aws.backend import ConfigBlock, Place, Staged, Words
from tasks.aws.remote import RemoteEngine
from tasks.aws.remote_wait import RunWatch
from tasks.aws.s3_uris import s3_uri
from tasks.contract import Preflight
from tasks.emr_serverless.application import (
    ApplicationError,
    application_request,
    delete_application,
    find_run_applications,
    not_ready,
    wait_until_started,
)
from tasks.emr_serverless.job_run import (
    cancel_job_runs,
    driver_log_uri,
    environment_confs,
    job_run_request,
    job_run_watch,
    run_job_runs,
    spark_confs,
    start_job_run,
)
from tasks.emr_serverless.preflight import preflight
from tasks.emr_serverless.pricing import ServerlessCost, ServerlessEstimate, billed_cost, estimate_job

# EMR Serverless' architecture names -> pip's, for the environment archive (tasks/aws/environment.py)
PIP_ARCHITECTURE = {"X86_64": "x86_64", "ARM64": "aarch64"}


class EmrServerlessEngine(RemoteEngine):
    """S3 in, S3 out, as one job run on an EMR Serverless application the flow creates and deletes (or reuses)."""

    name: ClassVar[str] = "emr-serverless"
    words = Words(label="EMR Serverless", place="application", run="job run", console="serverless-applications")
    config_block = ConfigBlock(EmrServerlessConfig, setting="serverless_block")

    @property
    def reused_id(self) -> str | None:
        return self.config.application_id

    def check(self, job: JobOptions) -> Preflight:
        staging = s3_uri(self.bucket.bucket_name, self.staging_prefix(str(runtime.flow_run.id or "preflight")))
        checked = preflight(
            job,
            self.aws,
            self.bucket.bucket_name,
            self.config,
            staging_uri=staging,
            log_uri=self.log_uri,
            cluster_id=None,  # --cluster-id is EMR's: the settings model refuses it here
            timeout_minutes=self.settings.step_timeout_minutes,
        )
        return Preflight.from_aws_checks(checked)

    def expected_cost(self, images: int) -> ServerlessEstimate:
        """Images / the measured per-vCPU rate, priced; the upper bound is every term a run can bill
        (tasks/emr_serverless/pricing.py)."""
        return estimate_job(self.config, images, self.aws.region, self.settings.step_timeout_minutes)

    def pip_architecture(self) -> str:
        return PIP_ARCHITECTURE[self.config.architecture]

    def ready_timeout_minutes(self) -> float:
        return self.config.application_ready_timeout_minutes

    def create_place(self, flow_run_id: str, name: str, max_age_hours: float) -> str:
        request = application_request(self.config, name=name, flow_run_id=flow_run_id, max_age_hours=max_age_hours)
        return self.aws("emr-serverless").create_application(**request)["applicationId"]

    def wait_until_ready(self, place_id: str) -> None:
        wait_until_started(self.aws, place_id, self.config)

    def not_ready(self, place_id: str) -> ApplicationError:
        return not_ready(self.aws("emr-serverless"), place_id)

    def submit(self, place: Place, staged: Staged, flow_run_id: str, checked: Preflight) -> str:
        confs = spark_confs(self.config, py_files_uri=staged.py_files)
        if staged.environment:  # the shipped Python environment (tasks/aws/environment.py), when staged
            confs |= environment_confs(staged.environment)
        request = job_run_request(
            self.config,
            application_id=place.id,
            role_arn=checked.execution_role_arn,
            script_uri=staged.script,
            job_args=staged.job_args,
            confs=confs,
            token=staged.token,
            flow_run_id=flow_run_id,
            log_uri=self.log_uri,
            timeout_minutes=self.settings.step_timeout_minutes,
            max_age_hours=self.max_age_hours(),
        )
        return start_job_run(self.aws, request)

    def watch(self, place_id: str, run_id: str) -> RunWatch:
        return job_run_watch(self.aws, place_id, run_id, self.log_uri)

    def log_hint(self, place_id: str, run_id: str) -> str:
        return f"driver log: {driver_log_uri(self.log_uri, place_id, run_id)}"

    def find_run_places(self, flow_run_id: str) -> list[str]:
        return find_run_applications(self.aws("emr-serverless"), flow_run_id)

    def end_place(self, place_id: str, logger: Any) -> None:
        delete_application(self.aws, place_id, self.poll_seconds, logger)

    def cancel_run_work(self, place_id: str, flow_run_id: str) -> list[str]:
        job_run_ids = run_job_runs(self.aws("emr-serverless"), place_id, flow_run_id)
        return cancel_job_runs(self.aws, place_id, job_run_ids, self.poll_seconds)

    def cost(self, place: Place, run_id: str | None, started: float) -> ServerlessCost | None:
        """The job run's billed resources, priced; None before a job run exists."""
        if not run_id:
            return None
        job_run = self.aws("emr-serverless").get_job_run(applicationId=place.id, jobRunId=run_id)
        return billed_cost(self.config, job_run["jobRun"], self.aws.region)
