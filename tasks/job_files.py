"""Where the job's files are in this clone: the ``spark-submit`` entry script and its ``fruitjob`` package."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
JOB_SCRIPT = REPO_ROOT / "spark_jobs" / "extract_features.py"
JOB_PACKAGE = REPO_ROOT / "spark_jobs" / "fruitjob"
