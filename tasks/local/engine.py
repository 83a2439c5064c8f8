"""The local engine: ``spark-submit`` on this machine (``local[N,2]``) or on a Spark cluster given by ``--master``."""

from __future__ import annotations

import os
from typing import Any, ClassVar

from pyarrow import fs as pafs

from fruitjob.options import JobOptions
from tasks.contract import Detail, Preflight, RunOutcome
from tasks.engine_settings import LocalSettings
from tasks.job_files import REPO_ROOT
from tasks.local.input_checks import check_local_input
from tasks.local.sample_images import make_sample_images_task
from tasks.local.spark_submit import local_master, run_local_job

DEFAULT_OUTPUT_ROOT = REPO_ROOT / "output"


class LocalEngine:
    """Local files in, local files out; nothing to create, pay for or clean up."""

    name: ClassVar[str] = "local"

    def __init__(self, settings: LocalSettings) -> None:
        self.settings = settings

    def complete(self, images: str | None, output: str | None, stamp: str) -> tuple[str, str]:
        if images is None:
            images = make_sample_images_task(str(DEFAULT_OUTPUT_ROOT / "sample-images"))
        return images, output or os.fspath(DEFAULT_OUTPUT_ROOT / f"run-{stamp}")

    def check(self, job: JobOptions) -> Preflight:
        return check_local_input(job.images, job.output, job.overwrite, job.incremental)

    def estimate(self, job: JobOptions, checked: Preflight) -> None:
        return None

    def run(self, job: JobOptions, checked: Preflight) -> RunOutcome:
        master = self.settings.master or local_master()
        run_local_job(job, master)
        return RunOutcome(details=[Detail("spark master", master)])

    def filesystem(self) -> pafs.FileSystem:
        return pafs.LocalFileSystem()

    def cleanup(self, flow_run_id: str, state_name: str, logger: Any) -> None:
        """Nothing outlives the run: the task stops spark-submit (and its workers) when it is cancelled."""
