"""The EMR Serverless engine: preflight -> stage -> application (created and started, or reused) -> StartJobRun ->
wait -> teardown, as tasks.

It must run inside a flow run: the flow run id tags the application and the job run, names the staging prefix and
makes the start idempotent. :meth:`EmrServerlessEngine.run`'s ``finally`` ends what the run started on every path:
on failure, cancellation (SIGTERM reaches the flow as an exception) or a timeout it cancels the run's job run, then
stops and deletes an application the flow created (a reused one is left alone); the flow's hooks call
:meth:`cleanup` for crashes that skip it. A SIGKILL runs neither: the job run's ``executionTimeoutMinutes``, the
application's auto-stop and the reaper are left. Nothing in the ``finally`` replaces the run's own error.
"""

from __future__ import annotations

import sys
from functools import cached_property
from typing import Any, ClassVar

from prefect import get_run_logger, runtime
from prefect_aws import S3Bucket
from pyarrow import fs as pafs

from blocks.emr_serverless_config import EmrServerlessConfig
from fruitjob.options import JobOptions, job_arguments
from tasks.aws.clients import AwsClients, run_logger
from tasks.aws.environment import job_environment
from tasks.aws.model_export import model_for_cluster
from tasks.aws.s3_uris import s3_uri
from tasks.aws.staging import environments_prefix, run_prefix, stage_job
from tasks.contract import Detail, EngineSettings, RunResult
from tasks.emr.steps import run_token
from tasks.emr_serverless.application import (
    application_request,
    console_url,
    find_run_applications,
    provision_application,
    run_max_age_hours,
)
from tasks.emr_serverless.job_run import environment_confs, job_run_request, spark_confs, start_job_run
from tasks.emr_serverless.job_wait import driver_log_uri, wait_for_job_run
from tasks.emr_serverless.preflight import preflight
from tasks.emr_serverless.pricing import ServerlessCost, ServerlessEstimate, billed_cost, estimate_job
from tasks.emr_serverless.teardown import delete_application, end_run_on, end_what_the_run_left, quietly
from tasks.errors import UsageError, load_block

# EMR Serverless' architecture names -> pip's, for the environment archive (tasks/aws/environment.py)
PIP_ARCHITECTURE = {"X86_64": "x86_64", "ARM64": "aarch64"}


class EmrServerlessEngine:
    """S3 in, S3 out, as one job run on an EMR Serverless application the flow creates and deletes (or reuses)."""

    name: ClassVar[str] = "emr-serverless"

    def __init__(self, settings: EngineSettings, aws: AwsClients | None = None) -> None:
        self.settings = settings
        if aws is not None:
            self.__dict__["aws"] = aws

    @cached_property
    def aws(self) -> AwsClients:
        return AwsClients.from_block(self.settings.aws_credentials_block)

    @cached_property
    def bucket(self) -> S3Bucket:
        return load_block(S3Bucket, self.settings.s3_bucket_block, "--s3-bucket-block")

    @cached_property
    def config(self) -> EmrServerlessConfig:
        return load_block(EmrServerlessConfig, self.settings.serverless_block, "--serverless-block")

    @property
    def log_uri(self) -> str:
        default = s3_uri(self.bucket.bucket_name, self.bucket.bucket_folder, "emr-serverless-logs") + "/"
        return self.config.log_uri or default

    def _staging(self, flow_run_id: str) -> str:
        return run_prefix(self.bucket.bucket_folder, flow_run_id)

    def complete(self, images: str | None, output: str | None, stamp: str) -> tuple[str, str]:
        if images is None:
            raise UsageError("the EMR Serverless engine needs --images s3://bucket/prefix (upload with `aws s3 sync`)")
        default = s3_uri(self.bucket.bucket_name, self.bucket.bucket_folder, "fruitflow-output", f"run-{stamp}")
        return images, output or default

    def check(self, job: JobOptions) -> dict[str, Any]:
        staging = s3_uri(self.bucket.bucket_name, self._staging(str(runtime.flow_run.id or "preflight")))
        return preflight(job, self.aws, self.bucket.bucket_name, self.config, staging_uri=staging,
                         log_uri=self.log_uri, cluster_id=self.settings.cluster_id,
                         timeout_minutes=self.settings.step_timeout_minutes)  # fmt: skip

    def estimate(self, job: JobOptions, checked: dict[str, Any]) -> ServerlessEstimate:
        """For this input: images / the measured per-vCPU rate, priced; the upper bound is the job run's timeout."""
        estimate = estimate_job(self.config, checked["images"], self.aws.region, self.settings.step_timeout_minutes)
        get_run_logger().info("estimate: %s", estimate.text)
        return estimate

    def filesystem(self) -> pafs.FileSystem:
        return self.aws.s3_filesystem()

    def run(self, job: JobOptions, result: RunResult) -> None:
        """Run the job as one EMR Serverless job run; end it and delete the application we created on every path."""
        logger = get_run_logger()
        settings, config = self.settings, self.config
        if not runtime.flow_run.id:
            raise RuntimeError("the EMR Serverless engine runs inside a flow run (its id tags the application)")
        flow_run_id = str(runtime.flow_run.id)
        bucket = self.bucket
        model = model_for_cluster(job)  # converted here: no TensorFlow in the job run unless --featurizer keras
        environment = job_environment(job.featurizer, PIP_ARCHITECTURE[config.architecture],
                                      model_shipped=model is not None)  # fmt: skip
        shared = environments_prefix(bucket.bucket_folder)  # archives named by their bytes: runs share them
        staged = stage_job(self.aws, bucket.bucket_name, self._staging(flow_run_id), job.weights,
                           environment=environment, environment_prefix=shared, model=model)  # fmt: skip
        application_id, created, job_run_id = config.application_id, config.application_id is None, None
        max_age = run_max_age_hours(config, settings.step_timeout_minutes)
        try:
            if created:
                request = application_request(config, name=f"fruitflow {runtime.flow_run.name}",
                                              flow_run_id=flow_run_id, max_age_hours=max_age)  # fmt: skip
                application_id = provision_application(self.aws, request, flow_run_id, config)
            else:
                logger.info("running on existing application %s; it will be left as it is", application_id)
            console = console_url(self.aws.region, application_id)
            result.ids["application_id"] = application_id
            result.details += [Detail("application id", application_id), Detail("console url", console, link=True)]
            job_args = job_arguments(job, weights=staged["weights"] or job.weights, tflite_model=staged["model"])
            confs = spark_confs(config, py_files_uri=staged["py_files"], application_id=application_id,
                                flow_run_id=flow_run_id)  # fmt: skip
            if staged.get("environment"):  # the shipped Python environment (tasks/aws/environment.py), when staged
                confs |= environment_confs(staged["environment"])
            token = run_token(flow_run_id, job_args)
            request = job_run_request(
                config, application_id=application_id, role_arn=result.checked["execution_role_arn"],
                script_uri=staged["script"], job_args=job_args, confs=confs, token=token, flow_run_id=flow_run_id,
                log_uri=self.log_uri, timeout_minutes=settings.step_timeout_minutes, max_age_hours=max_age,
            )  # fmt: skip
            job_run_id = start_job_run(self.aws, request)
            result.ids["job_run_id"] = job_run_id
            result.details.insert(1, Detail("job run id", job_run_id))
            logger.info("job run %s driver log: %s", job_run_id,
                        driver_log_uri(self.log_uri, application_id, job_run_id))  # fmt: skip
            wait_for_job_run(self.aws, application_id, job_run_id, log_uri=self.log_uri,
                             timeout_minutes=settings.step_timeout_minutes,
                             poll_seconds=config.poll_seconds)  # fmt: skip
        finally:
            self._end(application_id, created, flow_run_id, failing=sys.exc_info()[0] is not None)
            result.cost_estimate = self._cost(application_id, job_run_id)

    def _end(self, application_id: str | None, created: bool, flow_run_id: str, *, failing: bool) -> None:
        """Cancel the run's job run when the run is failing (a reused application is never stopped); delete ours."""
        poll = self.config.poll_seconds
        if failing and application_id:
            quietly(f"cancel this run's job runs on application {application_id}",
                    lambda: end_run_on(self.aws, application_id, flow_run_id, poll))  # fmt: skip
        if not created:
            return
        ours = [application_id] if application_id else []
        client = self.aws("emr-serverless")
        quietly("look for other applications of this run",  # never fails a run: the reaper is the net
                lambda: ours.extend(find_run_applications(client, flow_run_id)), always=True)  # fmt: skip
        for app in dict.fromkeys(ours):  # a CreateApplication whose reply was lost may have made another one
            quietly(f"delete application {app}", lambda app=app: delete_application(self.aws, app, poll))

    def _cost(self, application_id: str | None, job_run_id: str | None) -> ServerlessCost | None:
        """The job run's billed resources, priced; None before a job run exists. Never raises (called in the
        ``finally``: an estimate must not replace the run's error or fail a finished run)."""
        if not job_run_id:
            return None
        try:
            job_run = self.aws("emr-serverless").get_job_run(applicationId=application_id, jobRunId=job_run_id)
            return billed_cost(self.config, job_run["jobRun"], self.aws.region)
        except Exception as exc:  # noqa: BLE001 - only an estimate; the run's outcome matters more
            run_logger().warning("no cost estimate: job run %s not described (%s)", job_run_id, exc)
            return None

    def cleanup(self, flow_run_id: str, state_name: str, logger: Any) -> None:
        """Delete the applications created for this run (found by tags); cancel its job runs on a reused one."""
        try:
            reused, poll_seconds = self.config.application_id, self.config.poll_seconds
        except ValueError:  # the block is gone: delete what the tags say is ours, polling at the default pace
            reused, poll_seconds = None, 15
        try:
            end_what_the_run_left(self.aws, flow_run_id, state_name, logger, reused=reused, poll_seconds=poll_seconds)
        except Exception as exc:  # noqa: BLE001 - a hook never raises; auto-stop and the reaper are the nets
            logger.error("flow run %s: could not look for its EMR Serverless applications (%s)", state_name, exc)
