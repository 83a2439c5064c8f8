"""A converted model shipped with the job: made where TensorFlow is (the flow's machine), run where it is not.

An EMR cluster installs TensorFlow only for ``--featurizer keras``; for the TFLite featurizers the flow converts the
weights once (:func:`export_model`, cached like the job's own conversions), stages the two files with the job and
passes the model's URI; the job's driver then takes the model from there (:func:`load_shipped`) and imports no
TensorFlow. The files: ``<name>.tflite`` and beside it ``<name>.tflite.json``, what the model was converted from
(weights name and sha256, alpha, featurizer, calibration, converter version) and the sha256 of the flatbuffer.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Dict, Optional

from pyspark.sql import SparkSession

from fruitjob.calibration import calibration_of
from fruitjob.conversion import converter_version
from fruitjob.private_files import write_atomic
from fruitjob.tflite_engine import convert_for_workers, resolve_converted
from fruitjob.weights import Weights, WeightsError, identify_weights, read_weights_file

MANIFEST_SUFFIX = ".json"


def export_model(
    weights_name: str, alpha: float, seed: int, featurizer: str, folder: str, spark: Optional[SparkSession] = None
) -> str:
    """Write the converted model of these weights and its manifest into a local ``folder``; returns the model's path.

    Converts (TensorFlow) unless this machine has the model cached. ``weights_name`` is what the job gets as
    ``--weights``: imagenet, random or a local file (``spark`` is needed only for a weights URI Hadoop reads).
    """
    weights = convert_for_workers(resolve_converted(spark, weights_name, alpha, seed, featurizer), featurizer)
    model = weights.tflite or b""
    digest = hashlib.sha256(model).hexdigest()
    manifest = {
        "weights": weights.name,
        "weights_sha256": weights.sha256,
        "alpha": alpha,
        "featurizer": featurizer,
        "calibration": calibration_of(featurizer),
        "converter": "tensorflow %s" % converter_version(),
        "model_sha256": digest,
    }
    os.makedirs(folder, exist_ok=True)
    # Each file is replaced whole: two runs exporting the same model at once never read half of it.
    path = write_atomic(os.path.join(folder, "fruitflow-%s-%s.tflite" % (featurizer, digest[:16])), model)
    write_atomic(path + MANIFEST_SUFFIX, json.dumps(manifest, indent=2).encode())
    return path


def _mismatch(manifest: Dict[str, object], name: str, alpha: float, seed: int, featurizer: str) -> Optional[str]:
    wanted = {"alpha": alpha, "featurizer": featurizer, "calibration": calibration_of(featurizer)}
    for key, value in wanted.items():
        if manifest.get(key) != value:
            return "%s: the model has %r, this run %r" % (key, manifest.get(key), value)
    if name == "random" and manifest.get("weights") != "random(seed=%d)" % seed:
        return "weights: the model has %r, this run random(seed=%d)" % (manifest.get("weights"), seed)
    if name == "imagenet" and manifest.get("weights") != "imagenet":
        return "weights: the model has %r, this run imagenet" % (manifest.get("weights"),)
    return None


def load_shipped(spark: SparkSession, uri: str, name: str, alpha: float, seed: int, featurizer: str) -> Weights:
    """The weights of this run, with the shipped model attached, once the model is shown to be theirs.

    Checked: the flatbuffer's sha256 against its manifest; featurizer, alpha and calibration; and the weights: a
    file's (or a cached ImageNet file's) sha256 where the job can read them, else their name (random weights with
    their seed). A :class:`WeightsError` says what differs.
    """
    manifest = json.loads(read_weights_file(spark, uri + MANIFEST_SUFFIX, "shipped model").decode())
    model = read_weights_file(spark, uri, "shipped model")
    if hashlib.sha256(model).hexdigest() != manifest.get("model_sha256"):
        raise WeightsError("shipped model %s does not match its manifest (sha256): stage it again" % uri)
    problem = _mismatch(manifest, name, alpha, seed, featurizer)
    known = identify_weights(spark, name, alpha, seed)
    if problem is None and known is not None and known.sha256 != manifest.get("weights_sha256"):
        problem = "weights_sha256: the model has %s, the weights %s" % (manifest.get("weights_sha256"), known.sha256)
    if problem:
        raise WeightsError("shipped model %s was converted for another run (%s)" % (uri, problem))
    suffix = ".weights.h5" if name == "random" or name.endswith(".weights.h5") else ".h5"
    shown = name if name not in ("imagenet", "random") else str(manifest["weights"])
    return Weights(shown, alpha, b"", suffix, tflite=model, digest=str(manifest["weights_sha256"]))
