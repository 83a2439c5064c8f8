"""Where fruitflow's files are: the job's ``spark-submit`` entry script and its ``fruitjob`` package in this clone, and
the cache of what is made once on this machine and reused by later runs (``FRUITFLOW_CACHE``, default
``~/.cache/fruitflow``): the cluster environments and converted models (tasks/aws), the driver JVM's class archive
(tasks/local)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
JOB_SCRIPT = REPO_ROOT / "spark_jobs" / "extract_features.py"
JOB_PACKAGE = REPO_ROOT / "spark_jobs" / "fruitjob"
CACHE = Path(os.environ.get("FRUITFLOW_CACHE", Path.home() / ".cache" / "fruitflow"))
