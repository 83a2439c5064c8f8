"""The job's TFLite model, converted on the flow's machine for a cluster without TensorFlow.

For ``--featurizer tflite`` / ``tflite-int8`` an AWS engine converts the weights here, once (the conversion is
cached by the weights' sha256 and the converter version, fruitjob/tflite_engine.py), stages the flatbuffer and its
manifest beside the weights (:func:`tasks.aws.staging.stage_job`) and passes ``--tflite-model``: the cluster's
archive then holds no TensorFlow (tasks/aws/environment.py ``needs_tensorflow``) and the job's driver checks the
model against the weights instead of converting them (fruitjob/shipped_model.py).
"""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from fruitjob.options import JobOptions
from fruitjob.rules import TFLITE_FEATURIZERS
from tasks.aws.environment import CACHE

MODELS = CACHE / "models"


def ships_model(job: JobOptions) -> bool:
    """Whether the flow converts the model for this run: a TFLite featurizer, and weights this machine can read
    without Spark (imagenet, random, a local file; a weights URI is read by the cluster, which converts it then).

    Example:
        >>> ships_model(JobOptions(images="s3://b/i", output="s3://b/o", weights="random"))
        True
        >>> ships_model(JobOptions(images="s3://b/i", output="s3://b/o", weights="s3://b/w.h5"))
        False
    """
    return job.featurizer in TFLITE_FEATURIZERS and "://" not in job.weights


@task(name="convert-model", cache_policy=NO_CACHE)
def model_for_cluster(job: JobOptions) -> Path | None:
    """The run's converted model (a local file, with its ``.json`` manifest beside it), or None when the cluster
    converts (or, for ``keras``, runs Keras itself)."""
    if not ships_model(job):
        return None
    from fruitjob.shipped_model import export_model  # TensorFlow only if this machine has not converted it yet

    path = Path(export_model(job.weights, job.alpha, job.seed, job.featurizer, str(MODELS)))
    get_run_logger().info(
        "the job's %s model: %s (%.1f MB; the cluster needs no TensorFlow)",
        job.featurizer,
        path.name,
        path.stat().st_size / 1e6,
    )
    return path
