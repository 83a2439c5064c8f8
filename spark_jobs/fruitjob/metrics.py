"""metrics.json: counts, the PCA, the identity of the feature space, timings and versions."""

from __future__ import annotations

import platform
from typing import Dict

from pyspark.sql import SparkSession


def versions(spark: SparkSession) -> Dict[str, str]:
    import numpy
    import PIL
    import tensorflow

    return {
        "python": platform.python_version(),
        "spark": spark.version,
        "tensorflow": tensorflow.__version__,
        "numpy": numpy.__version__,
        "pillow": PIL.__version__,
    }
