"""One lifecycle for every AWS engine: convert the model, stage, provision, submit, watch, release.

:class:`RemoteEngine` runs it; a backend (``tasks/emr/engine.py``: a cluster and a step; ``tasks/emr_serverless/
engine.py``: an application and a job run) supplies only what differs: its block, its preflight and prices, how its
*place* (cluster, application) is created, found and ended, and how its *run* (step, job run) is submitted, watched
(as waiter data: :class:`tasks.aws.remote_wait.RunWatch`) and cancelled.

What it promises on every path, whatever the backend:

- the place is provisioned inside :meth:`RemoteEngine._held`, a context manager whose exit receives the run's
  failure (or None) explicitly: a place the run created is ended (with any other place its tags say this run made: a
  create request resent after a lost reply); on a place left running (reused, or kept) a failing run's own work is
  cancelled, so that it never goes on writing to the output;
- a teardown failure never replaces the run's own error (it is logged with what to do by hand); on a run that
  succeeded it fails the run, which must not say "done" while a cluster bills;
- the flow's hooks (crash, cancellation) call :meth:`RemoteEngine.cleanup`, which finds the run's places by tag.

A SIGKILL runs neither: then the run's own deadline (the step's ``timeout``, the job run's execution timeout), the
place's idle stop and the reaper are left (docs/reliability.md).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import WaiterError
from prefect import get_run_logger, runtime, task
from prefect.cache_policies import NO_CACHE
from pyarrow import fs as pafs

from fruitjob.options import JobOptions, flag, job_arguments
from tasks.aws.backend import Place, RemoteBackend, Staged
from tasks.aws.clients import run_logger
from tasks.aws.environment import job_environment
from tasks.aws.model_export import model_for_cluster
from tasks.aws.remote_wait import watch_run
from tasks.aws.run_names import run_token
from tasks.aws.s3_uris import s3_uri
from tasks.aws.staging import environments_prefix, run_prefix, stage_job
from tasks.aws.teardown import end_what_the_run_left, release
from tasks.contract import Cost, Detail, Preflight, RunOutcome
from tasks.errors import UsageError

# Beyond provisioning and the run's own timeout: staging, validation, a failed run's log wait and teardown.
TEARDOWN_SLACK_MINUTES = 30


def run_max_age_hours(ready_timeout_minutes: float, run_timeout_minutes: float) -> float:
    """How long a run may hold what it created: provisioning, the run's timeout and teardown (the reaper's floor).

    Example:
        >>> run_max_age_hours(30, 180)
        4.0
    """
    return (ready_timeout_minutes + run_timeout_minutes + TEARDOWN_SLACK_MINUTES) / 60


@task(name="provision", cache_policy=NO_CACHE)
def provision(engine: RemoteEngine, flow_run_id: str, name: str) -> str:
    """Create the place (or find the one this flow run already created) and wait until it is ready; its id.

    A retried run looks for an active place tagged with its flow run id first (RunJobFlow has no idempotency token;
    CreateApplication's client token covers only a resent request), so no run makes two.
    """
    logger = get_run_logger()
    existing = engine.find_run_places(flow_run_id)
    if existing:
        place_id = existing[0]
        logger.info("reusing %s %s that this flow run created earlier", engine.words.place, place_id)
    else:
        place_id = engine.create_place(flow_run_id, name, engine.max_age_hours())
        logger.info("created %s %s: %s", engine.words.place, place_id, engine.console_url(place_id))
    try:
        engine.wait_until_ready(place_id)
    except WaiterError as exc:
        error = engine.not_ready(place_id)
        logger.error("%s", error)
        raise error from exc
    return place_id


@dataclass
class Held:
    """The place held for a run, and the run submitted there (None until it is)."""

    place: Place
    run_id: str | None = None


class RemoteEngine(RemoteBackend):
    """S3 in, S3 out, on a place the flow creates and always ends (or one it reuses and leaves running)."""

    def staging_prefix(self, flow_run_id: str) -> str:
        return run_prefix(self.bucket.bucket_folder, flow_run_id)

    def max_age_hours(self) -> float:
        return run_max_age_hours(self.ready_timeout_minutes(), self.settings.step_timeout_minutes)

    def complete(self, images: str | None, output: str | None, stamp: str) -> tuple[str, str]:
        if images is None:
            raise UsageError(
                f"the {self.words.label} engine needs --images s3://bucket/prefix (upload with `aws s3 sync`)"
            )
        default = s3_uri(self.bucket.bucket_name, self.bucket.bucket_folder, "fruitflow-output", f"run-{stamp}")
        return images, output or default

    def estimate(self, job: JobOptions, checked: Preflight) -> Cost:
        """For the images preflight counted: what the run should take and cost, with its upper bound."""
        estimate = self.expected_cost(checked.images)
        get_run_logger().info("estimate: %s", estimate.text)
        return estimate

    def filesystem(self) -> pafs.FileSystem:
        return self.aws.s3_filesystem()

    def run(self, job: JobOptions, checked: Preflight) -> RunOutcome:
        """Stage, provision, submit, watch; release on every path (see the module's docstring)."""
        flow_run_id = str(runtime.flow_run.id or "")
        if not flow_run_id:
            raise RuntimeError(
                f"the {self.words.label} engine runs inside a flow run (its id tags the {self.words.place})"
            )
        staged = self._stage(job, flow_run_id)
        result = RunOutcome()
        with self._held(flow_run_id, result) as held:
            place = held.place
            self._provision(place, flow_run_id, result)
            staged.job_args += [flag("cluster_id"), place.id]  # the run's context: its place is known now
            held.run_id = run_id = self.submit(place, staged, flow_run_id, checked)
            result.ids[f"{self.words.run.replace(' ', '_')}_id"] = run_id
            result.details.insert(1, Detail(f"{self.words.run} id", run_id))
            get_run_logger().info("%s %s %s", self.words.run, run_id, self.log_hint(place.id, run_id))
            watch_run(
                self.aws,
                self.watch(place.id, run_id),
                timeout_minutes=self.settings.step_timeout_minutes,
                poll_seconds=self.poll_seconds,
            )
        return result

    def _stage(self, job: JobOptions, flow_run_id: str) -> Staged:
        """The model converted here and the job's packages for the place's Python and CPU, staged with the job: no
        TensorFlow on the place unless --featurizer keras (docs/emr.md)."""
        model = model_for_cluster(job)
        environment = job_environment(
            job.featurizer, self.pip_architecture(), self.extra_packages(), model_shipped=model is not None
        )
        folder = self.bucket.bucket_folder
        staged = stage_job(
            self.aws,
            self.bucket.bucket_name,
            self.staging_prefix(flow_run_id),
            job.weights,
            environment=environment,
            environment_prefix=environments_prefix(folder),
            model=model,
        )
        job_args = job_arguments(
            job,
            weights=staged["weights"] or job.weights,
            tflite_model=staged["model"],
            engine=self.name,  # the run's context (metrics.json; the flow run id: the output lease's holder)
            flow_run_id=flow_run_id,
        )
        return Staged(
            script=staged["script"],
            py_files=staged["py_files"],
            environment=staged["environment"],
            environment_sha256=staged["environment_sha256"],
            job_args=job_args,
            token=run_token(flow_run_id, job_args),
        )

    def _provision(self, place: Place, flow_run_id: str, result: RunOutcome) -> None:
        logger = get_run_logger()
        if place.created:
            place.id = provision(self, flow_run_id, f"fruitflow {runtime.flow_run.name}")
        else:
            logger.info("running on existing %s %s; it is left running", self.words.place, place.id)
        console = self.console_url(place.id)
        result.ids[f"{self.words.place}_id"] = place.id
        result.details += [Detail(f"{self.words.place} id", place.id), Detail("console url", console, link=True)]
        logger.info("%s %s: %s", self.words.place, place.id, console)

    @contextmanager
    def _held(self, flow_run_id: str, result: RunOutcome) -> Iterator[Held]:
        """The place, held for the run: released on exit with the run's failure (or None) passed explicitly."""
        reused = self.reused_id
        held = Held(Place(reused, created=reused is None, kept=reused is None and self.keeps))
        started = time.monotonic()
        failure: BaseException | None = None
        try:
            yield held
        except BaseException as exc:  # a failure, a cancellation (SIGTERM's exception) or a KeyboardInterrupt
            failure = exc
            raise
        finally:
            release(self, held.place, flow_run_id, failure)
            result.cost = self._cost(held.place, held.run_id, started)

    def _cost(self, place: Place, run_id: str | None, started: float) -> Cost | None:
        """The backend's cost; never raises (called in the ``finally``: an estimate must not replace the run's
        error or fail a finished run)."""
        try:
            return self.cost(place, run_id, started)
        except Exception as exc:  # noqa: BLE001 - only an estimate; the run's outcome matters more
            run_logger().warning("no cost estimate: %s %s not described (%s)", self.words.place, place.id, exc)
            return None

    def cleanup(self, flow_run_id: str, state_name: str, logger: Any) -> None:
        """For the flow hooks (cancelled, crashed, failed): end what the run left (tasks/aws/teardown.py)."""
        end_what_the_run_left(self, flow_run_id, state_name, logger)
