"""The EMR backend of the remote lifecycle (tasks/aws/remote.py): a cluster the flow creates (or ``--cluster-id``,
left running), the job as one step, EC2 + EMR prices.

A created cluster is terminated on every path (``--keep-cluster`` leaves it to its idle auto-termination); a reused
or kept one only has a failing run's step cancelled. The step ends itself at ``--step-timeout-minutes`` and a created
cluster terminates itself after its step's failure (``ActionOnFailure``), so a SIGKILLed flow leaves nothing billing
past its deadline. Validation runs after teardown (S3 needs no cluster), so the cluster is billed for the job only.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from prefect import get_run_logger

from blocks.emr_cluster_config import EmrClusterConfig
from fruitjob.options import JobOptions
from tasks.aws.backend import ConfigBlock, Place, Staged, Words
from tasks.aws.remote import RemoteEngine
from tasks.aws.remote_wait import RunWatch
from tasks.aws.waiting import wait
from tasks.contract import Preflight
from tasks.emr.cluster import (
    ClusterError,
    cluster_hours,
    cluster_request,
    cluster_state,
    find_run_clusters,
    not_ready,
    terminate,
)
from tasks.emr.preflight import preflight
from tasks.emr.pricing import CostEstimate, RunEstimate, estimate_cost, estimate_run, hourly_usd
from tasks.emr.steps import cancel_run_steps, step_definition, step_watch, submit_step


class EmrEngine(RemoteEngine):
    """S3 in, S3 out, on a cluster the flow creates and always terminates (or on ``cluster_id``, left running)."""

    name: ClassVar[str] = "emr"
    words = Words(label="EMR", place="cluster", run="step", console="clusterDetails")
    config_block = ConfigBlock(EmrClusterConfig, setting="cluster_block")

    def check(self, job: JobOptions) -> Preflight:
        checked = preflight(job, self.aws, self.bucket.bucket_name, self.config, self.settings.cluster_id)
        return Preflight.from_aws_checks(checked)

    @property
    def reused_id(self) -> str | None:
        return self.settings.cluster_id

    @property
    def keeps(self) -> bool:
        return self.settings.keep_cluster

    def expected_cost(self, images: int) -> RunEstimate:
        """Provisioning + images / the measured rate x the core vCPUs, region-aware; the upper bound is every term a
        run can bill (tasks/emr/pricing.py)."""
        return estimate_run(self.config, images, self.aws.region, self.settings.step_timeout_minutes)

    def pip_architecture(self) -> str:
        return self.config.architecture

    def extra_packages(self) -> list[str]:
        return list(self.config.bootstrap_packages)

    def ready_timeout_minutes(self) -> float:
        return self.config.cluster_ready_timeout_minutes

    def create_place(self, flow_run_id: str, name: str, max_age_hours: float) -> str:
        request = cluster_request(
            self.config,
            name=name,
            log_uri=self.log_uri,
            flow_run_id=flow_run_id,
            keep=self.keeps,
            max_age_hours=max_age_hours,
        )
        return self.aws("emr").run_job_flow(**request)["JobFlowId"]

    def wait_until_ready(self, place_id: str) -> None:
        """Until RUNNING or WAITING (boto3's own waiter, which fails on a terminated cluster)."""
        wait(
            self.aws("emr").get_waiter("cluster_running"),
            what=f"cluster {place_id} ready",
            state=cluster_state,
            delay=self.config.poll_seconds,
            timeout_minutes=self.config.cluster_ready_timeout_minutes,
            ClusterId=place_id,
        )

    def not_ready(self, place_id: str) -> ClusterError:
        return not_ready(self.aws("emr"), place_id)

    def submit(self, place: Place, staged: Staged, flow_run_id: str, checked: Preflight) -> str:
        step = step_definition(
            cluster_id=place.id,
            script_uri=staged.script,
            py_files_uri=staged.py_files,
            environment_uri=staged.environment,
            environment_sha256=staged.environment_sha256,
            job_args=staged.job_args,
            token=staged.token,
            flow_run_id=flow_run_id,
            timeout_minutes=self.settings.step_timeout_minutes,
            terminate_cluster_on_failure=place.ended_with_the_run,
        )
        return submit_step(self.aws, place.id, step)

    def watch(self, place_id: str, run_id: str) -> RunWatch:
        return step_watch(self.aws, place_id, run_id)

    def log_hint(self, place_id: str, run_id: str) -> str:
        return f"logs: {self.log_uri}{place_id}/steps/{run_id}/"

    def find_run_places(self, flow_run_id: str) -> list[str]:
        return find_run_clusters(self.aws("emr"), flow_run_id)

    def end_place(self, place_id: str, logger: Any) -> None:
        logger.info("terminating cluster %s", place_id)
        terminate(self.aws, place_id, self.poll_seconds)
        logger.info("cluster %s is terminated", place_id)

    def cancel_run_work(self, place_id: str, flow_run_id: str) -> list[str]:
        return cancel_run_steps(self.aws("emr"), place_id, flow_run_id)

    def cost(self, place: Place, run_id: str | None, started: float) -> CostEstimate:
        """EC2 + EMR for the cluster's hours: EMR's timeline for a cluster the run created, else this run's clock."""
        hours = (time.monotonic() - started) / 3600
        if place.created and place.id:
            try:
                hours = max(hours, cluster_hours(self.aws, place.id))
            except Exception as exc:  # noqa: BLE001 - only an estimate: this run's clock will do
                get_run_logger().warning(
                    "cost estimate from this run's clock: cluster %s not described (%s)", place.id, exc
                )
        return estimate_cost(self.config, hours, self.aws.region)

    def note_kept(self, place_id: str) -> None:
        get_run_logger().warning(
            "keeping cluster %s (--keep-cluster): about $%s/hour (estimate) until you terminate it or it idles for %d "
            "minutes",
            place_id,
            hourly_usd(self.config, self.aws.region),
            self.config.idle_timeout_minutes,
        )
