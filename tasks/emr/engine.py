"""The EMR engine: preflight -> stage -> provision -> submit step -> wait -> terminate, as tasks.

It must run inside a flow run: the flow run id tags the cluster, names the staging prefix and makes the step
submission idempotent. A failure anywhere after provisioning terminates the cluster in :meth:`EmrEngine.run`'s
``finally`` (or, on a reused or kept cluster, cancels the run's step); the flow's hooks call :meth:`cleanup` for
crashes and cancellations that skip it; a SIGKILL runs neither, and the idle auto-termination policy and the reaper
are left. Nothing in the ``finally`` replaces the run's own error. Validation runs after teardown (S3 needs no
cluster), so the cluster is billed for the job only.
"""

from __future__ import annotations

import sys
import time
from functools import cached_property
from typing import Any, ClassVar

from prefect import get_run_logger, runtime
from prefect_aws import S3Bucket
from pyarrow import fs as pafs

from blocks.emr_cluster_config import EmrClusterConfig
from fruitjob.options import JobOptions, job_arguments
from tasks.aws.clients import AwsClients, run_logger
from tasks.aws.environment import job_environment
from tasks.aws.model_export import model_for_cluster
from tasks.aws.s3_uris import s3_uri
from tasks.aws.staging import environments_prefix, run_prefix, stage_job
from tasks.contract import Detail, EngineSettings, RunResult
from tasks.emr.cluster import cluster_hours, cluster_request, console_url, provision_cluster, run_max_age_hours
from tasks.emr.preflight import preflight
from tasks.emr.pricing import RunEstimate, estimate_cost, estimate_run, hourly_usd
from tasks.emr.step_wait import wait_for_step
from tasks.emr.steps import run_token, step_definition, submit_step
from tasks.emr.teardown import cancel_steps_quietly, end_what_the_run_left, terminate_quietly, terminate_strays
from tasks.errors import MissingBlock, UsageError, load_block


class EmrEngine:
    """S3 in, S3 out, on a cluster the flow creates and always terminates (or on ``cluster_id``, left running)."""

    name: ClassVar[str] = "emr"

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
    def config(self) -> EmrClusterConfig:
        return load_block(EmrClusterConfig, self.settings.cluster_block, "--cluster-block")

    @property
    def log_uri(self) -> str:
        return self.config.log_uri or s3_uri(self.bucket.bucket_name, self.bucket.bucket_folder, "emr-logs") + "/"

    def complete(self, images: str | None, output: str | None, stamp: str) -> tuple[str, str]:
        if images is None:
            raise UsageError("the EMR engine needs --images s3://bucket/prefix (upload with `aws s3 sync`)")
        default = s3_uri(self.bucket.bucket_name, self.bucket.bucket_folder, "fruitflow-output", f"run-{stamp}")
        return images, output or default

    def check(self, job: JobOptions) -> dict[str, Any]:
        return preflight(job, self.aws, self.bucket.bucket_name, self.config, self.settings.cluster_id)

    def estimate(self, job: JobOptions, checked: dict[str, Any]) -> RunEstimate:
        """For this input: provisioning + images / the measured rate x the core vCPUs, region-aware; the upper bound
        is the step timeout."""
        estimate = estimate_run(self.config, checked["images"], self.aws.region, self.settings.step_timeout_minutes)
        get_run_logger().info("estimate: %s", estimate.text)
        return estimate

    def filesystem(self) -> pafs.FileSystem:
        return self.aws.s3_filesystem()

    def run(self, job: JobOptions, result: RunResult) -> None:
        """Run the job as an EMR step; terminate the cluster we created on every path."""
        logger = get_run_logger()
        settings, config = self.settings, self.config
        flow_run_id = str(runtime.flow_run.id)
        if not runtime.flow_run.id:
            raise RuntimeError("the EMR engine runs inside a flow run (its id tags the cluster)")
        # The model converted here and the job's packages for the cluster's Python and architecture, shipped with
        # the step (docs/emr.md): no TensorFlow on the cluster unless --featurizer keras.
        model = model_for_cluster(job)
        environment = job_environment(job.featurizer, config.architecture, config.bootstrap_packages,
                                      model_shipped=model is not None)  # fmt: skip
        folder = self.bucket.bucket_folder
        staged = stage_job(self.aws, self.bucket.bucket_name, run_prefix(folder, flow_run_id), job.weights,
                           environment=environment, environment_prefix=environments_prefix(folder),
                           model=model)  # fmt: skip
        cluster_id, created, started = settings.cluster_id, settings.cluster_id is None, time.monotonic()
        if created:
            request = cluster_request(
                config,
                name=f"fruitflow {runtime.flow_run.name}",
                log_uri=self.log_uri,
                flow_run_id=flow_run_id,
                keep=settings.keep_cluster,
                max_age_hours=run_max_age_hours(config, settings.step_timeout_minutes),
            )
            cluster_id = provision_cluster(self.aws, request, flow_run_id, config)
        else:
            logger.info("running on existing cluster %s; it will be left running", cluster_id)
        result.ids["cluster_id"] = cluster_id
        console = console_url(self.aws.region, cluster_id)
        result.details += [Detail("cluster id", cluster_id), Detail("console url", console, link=True)]
        logger.info("cluster %s: %s", cluster_id, console)
        try:
            job_args = job_arguments(job, weights=staged["weights"] or job.weights, tflite_model=staged["model"])
            step = step_definition(
                cluster_id=cluster_id,
                script_uri=staged["script"],
                py_files_uri=staged["py_files"],
                environment_uri=staged["environment"],
                environment_sha256=staged["environment_sha256"],
                job_args=job_args,
                token=run_token(flow_run_id, job_args),
                flow_run_id=flow_run_id,
                timeout_minutes=settings.step_timeout_minutes,
                terminate_cluster_on_failure=created and not settings.keep_cluster,
            )
            step_id = submit_step(self.aws, cluster_id, step)
            result.ids["step_id"] = step_id
            result.details.insert(1, Detail("step id", step_id))
            logger.info("step %s logs: %s%s/steps/%s/", step_id, self.log_uri, cluster_id, step_id)
            wait_for_step(self.aws, cluster_id, step_id, timeout_minutes=settings.step_timeout_minutes,
                          poll_seconds=config.poll_seconds)  # fmt: skip
        finally:
            self._end(cluster_id, created, flow_run_id, failing=sys.exc_info()[0] is not None)
            result.cost_estimate = estimate_cost(config, self._hours(cluster_id, created, started), self.aws.region)

    def _end(self, cluster_id: str, created: bool, flow_run_id: str, *, failing: bool) -> None:
        poll = self.config.poll_seconds
        if created and not self.settings.keep_cluster:
            terminate_quietly(self.aws, cluster_id, poll)
            terminate_strays(self.aws, flow_run_id, poll)
        elif failing:  # the cluster stays up (reused or kept): our step must not go on writing to the output
            cancel_steps_quietly(self.aws, cluster_id, flow_run_id)
        if created and self.settings.keep_cluster:
            get_run_logger().warning(
                "keeping cluster %s (--keep-cluster): about $%s/hour (estimate) until you terminate it or it idles "
                "for %d minutes",
                cluster_id,
                hourly_usd(self.config, self.aws.region),
                self.config.idle_timeout_minutes,
            )

    def _hours(self, cluster_id: str, created: bool, started: float) -> float:
        """Hours for the cost estimate; EMR's timeline when it answers, else this run's own clock.

        Called in the ``finally``: an error here must never replace the run's own error (or fail a finished run).
        """
        hours = (time.monotonic() - started) / 3600
        if not created:
            return hours
        try:
            return max(hours, cluster_hours(self.aws, cluster_id))
        except Exception as exc:  # noqa: BLE001 - only an estimate; the run's outcome matters more
            run_logger().warning("cost estimate from this run's clock: cluster %s not described (%s)", cluster_id, exc)
            return hours

    def cleanup(self, flow_run_id: str, state_name: str, logger: Any) -> None:
        """Terminate the clusters created for this run (found by tags) unless kept; cancel its steps on the others."""
        try:
            aws = self.aws
        except MissingBlock as exc:  # no credentials, no cluster this run could have created (the reaper remains)
            logger.info("nothing to end: %s", exc)
            return
        try:
            poll_seconds = self.config.poll_seconds
        except ValueError:  # the block is gone: terminate anyway, polling at the default pace
            poll_seconds = 30
        end_what_the_run_left(
            aws,
            flow_run_id,
            state_name,
            logger,
            reused=self.settings.cluster_id,
            keep=self.settings.keep_cluster,
            poll_seconds=poll_seconds,
        )
