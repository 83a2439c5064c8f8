"""MobileNetV2 features + PCA for a folder or S3 prefix of fruit images: the ``spark-submit`` entry script.

Runs unchanged under ``spark-submit`` on a laptop and on EMR 7.x (Spark 3.5, Python 3.9)::

    spark-submit spark_jobs/extract_features.py --images DIR_OR_S3 --output DIR_OR_S3 [options]

The job itself is ``fruitjob.job``; this script only makes the package importable where it was not installed
(a cluster gets it as ``--py-files``, a checkout has it beside this file).
"""

import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fruitjob.job import JobError, main, run

__all__ = ["JobError", "main", "run"]

if __name__ == "__main__":
    sys.exit(main())
