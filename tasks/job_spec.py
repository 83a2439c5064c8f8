"""One run of the job, described once; the only place that turns it into ``spark-submit`` arguments.

Both engines call :func:`job_arguments`, so the local run and the EMR step can never drift apart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
JOB_SCRIPT = REPO_ROOT / "spark_jobs" / "extract_features.py"
JOB_PACKAGE = REPO_ROOT / "spark_jobs" / "fruitjob"


@dataclass(frozen=True)
class JobSpec:
    """What to featurize, where to write it, and how.

    Example:
        >>> JobSpec(images="/data/fruits", output="/data/out", weights="random").pca_components
        50
    """

    images: str
    output: str
    pca_components: int = 50
    weights: str = "imagenet"
    alpha: float | None = None  # None: taken from the weights file name, else 1.0
    batch_size: int = 4  # the job's defaults (spark_jobs/fruitjob/options.py), chosen by bench/
    featurizer: str = "tflite"
    partitions: int | None = None
    pca_model: str | None = None
    incremental: bool = False
    overwrite: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def job_arguments(spec: JobSpec, *, weights: str | None = None) -> list[str]:
    """The job's own command line (what follows the script in ``spark-submit``).

    ``weights`` replaces ``spec.weights`` where the engine staged the file elsewhere (e.g. to S3).
    """
    args = ["--images", spec.images, "--output", spec.output]
    args += ["--pca-components", str(spec.pca_components)]
    args += ["--weights", weights or spec.weights]
    args += ["--batch-size", str(spec.batch_size), "--featurizer", spec.featurizer]
    if spec.alpha is not None:
        args += ["--alpha", str(spec.alpha)]
    if spec.partitions:
        args += ["--partitions", str(spec.partitions)]
    if spec.pca_model:
        args += ["--pca-model", spec.pca_model]
    if spec.incremental:
        args.append("--incremental")
    if spec.overwrite:
        args.append("--overwrite")
    return args
