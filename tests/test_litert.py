"""No TensorFlow where it is not needed: a TFLite featurizer's workers import LiteRT, and with the converted model
cached neither the driver nor a worker imports TensorFlow; the flatbuffers converted here (TensorFlow 2.21) run the
same in the cluster's runtime (ai-edge-litert 2.1.0 on Python 3.9, tests/parity_env.py).
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import JOB_DEFAULTS, NO_HEALTH, REPO, TEST_ALPHA
from tests.helpers import metrics

# Installed into every Python process of the job (driver, pyspark.daemon and its forked workers) through PYTHONPATH:
# records each process, and each import of TensorFlow or Keras with the stack that asked for it.
WATCH = """
import os, sys, traceback
_LOG = os.environ.get("FRUITFLOW_TEST_IMPORT_LOG")
if _LOG:
    with open("/proc/self/cmdline", "rb") as _f:
        _cmd = _f.read().replace(b"\\0", b" ").decode(errors="replace")
    with open(os.path.join(_LOG, "process-%d" % os.getpid()), "w") as _out:
        _out.write(_cmd)

    class _Watch:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorflow", "keras"):
                with open(os.path.join(_LOG, "import-%d-%s" % (os.getpid(), name)), "w") as out:
                    out.write(_cmd + "\\n" + "".join(traceback.format_stack()))
            return None

    sys.meta_path.insert(0, _Watch())
"""


def _watched_env(tmp_path: Path) -> tuple[dict, Path]:
    import os

    hook, log = tmp_path / "hook", tmp_path / "imports"
    hook.mkdir()
    log.mkdir()
    (hook / "sitecustomize.py").write_text(WATCH)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK", "SPARK_HOME"))}
    env.update(
        PYTHONPATH=str(hook),
        FRUITFLOW_TEST_IMPORT_LOG=str(log),
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    return env, log


def _imports(log: Path) -> list[str]:
    return sorted(path.read_text() for path in log.glob("import-*"))


@pytest.mark.slow
def test_the_watch_sees_an_import_of_tensorflow(tmp_path):
    env, log = _watched_env(tmp_path)
    subprocess.run([sys.executable, "-c", "import keras"], env=env, check=True, timeout=120)
    assert _imports(log), "the import watch saw nothing: the no-TensorFlow test below would prove nothing"


@pytest.mark.slow
def test_with_a_cached_model_neither_driver_nor_workers_import_tensorflow(spark, fruit_images, tmp_path):
    """The job under spark-submit, as the flow runs it, after the model was converted (and cached) once."""
    import pyspark

    from fruitjob.tflite_engine import convert_for_workers, resolve_converted

    convert_for_workers(resolve_converted(spark, "random", TEST_ALPHA, 0, "tflite"), "tflite")  # cached from here
    env, log = _watched_env(tmp_path)
    output = tmp_path / "out"
    command = [
        str(Path(pyspark.__file__).parent / "bin" / "spark-submit"),
        *("--master", "local[2,2]", "--conf", "spark.ui.enabled=false", "--conf", "spark.driver.memory=1g"),
        str(REPO / "spark_jobs" / "extract_features.py"),
        *("--images", str(fruit_images), "--output", str(output), *JOB_DEFAULTS, *NO_HEALTH, "--pca-components", "3"),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=str(REPO))
    assert done.returncode == 0, done.stderr[-4000:]
    processes = [path.read_text() for path in log.glob("process-*")]
    assert any("extract_features.py" in cmd for cmd in processes), processes  # the driver was watched
    assert any("pyspark.daemon" in cmd for cmd in processes), processes  # and the workers' daemon (they fork)
    assert _imports(log) == [], "TensorFlow or Keras imported:\n" + "\n\n".join(_imports(log))[:6000]
    assert "found in the cache" in done.stdout + done.stderr
    assert metrics(output)["images_ok"] == 24


def test_the_runtime_is_litert():
    from fruitjob import litert

    assert litert.runtime().startswith("ai-edge-litert ")
    assert litert.interpreter_class().__module__.startswith("ai_edge_litert")


def test_without_litert_tensorflow_lite_is_the_last_resort_and_says_so(monkeypatch, caplog):
    from fruitjob import litert

    monkeypatch.setattr(litert, "_FOUND", None)
    for name in ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime", "tflite_runtime.interpreter"):
        monkeypatch.setitem(sys.modules, name, None)  # an import of a None entry raises ImportError
    with caplog.at_level(logging.WARNING, logger="fruitflow.litert"):
        assert litert.runtime().startswith("tensorflow.lite ")
    assert "neither ai-edge-litert nor tflite-runtime is installed" in caplog.text


def test_weights_are_known_by_their_hash_without_keras(spark, tmp_path, monkeypatch):
    """What lets a cached model skip TensorFlow: a file's sha256, Keras' cached ImageNet file, a recorded digest."""
    import hashlib

    from fruitjob.weights import _random_weights, identify_weights, imagenet_file_name

    (tmp_path / "w.h5").write_bytes(b"some weights")
    assert identify_weights(spark, str(tmp_path / "w.h5"), 0.5).sha256 == hashlib.sha256(b"some weights").hexdigest()

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    assert identify_weights(spark, "imagenet", 0.35) is None  # not downloaded yet: Keras will
    (tmp_path / "keras" / "models").mkdir(parents=True)
    (tmp_path / "keras" / "models" / imagenet_file_name(0.35)).write_bytes(b"imagenet 0.35")
    assert identify_weights(spark, "imagenet", 0.35).sha256 == hashlib.sha256(b"imagenet 0.35").hexdigest()

    seed = 90210  # one no other test uses: never made on this machine before
    from fruitjob import private_files
    from fruitjob.weights import _random_stem

    for name in Path(private_files.private_dir()).glob(_random_stem(TEST_ALPHA, seed) + "-*"):
        name.unlink()
    assert identify_weights(spark, "random", TEST_ALPHA, seed) is None
    made = _random_weights(TEST_ALPHA, seed)
    known = identify_weights(spark, "random", TEST_ALPHA, seed)
    assert (known.sha256, known.name, known.data) == (made.sha256, made.name, b"")
    assert identify_weights(spark, "random", TEST_ALPHA, seed + 1) is None


# -- the cluster's runtime ---------------------------------------------------------------------------------------

RUN_THERE = """
import hashlib
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from fruitjob import calibration, litert
from fruitjob.tflite_engine import tflite_engine
from fruitjob.weights import Weights

data = np.load(sys.argv[2])
drawn = hashlib.sha256(calibration.images().tobytes()).hexdigest()
out = {"runtime": np.array(litert.runtime()), "calibration": np.array(drawn)}
for name in ("tflite", "tflite-int8"):
    weights = Weights("w", 0.35, b"", ".h5", tflite=data[name].tobytes(), digest="0" * 64)
    out[name] = tflite_engine(weights, 3, threads=1, featurizer=name)(data["images"])
np.savez(sys.argv[3], **out)
"""


@pytest.mark.slow
def test_flatbuffers_converted_here_give_the_same_features_in_the_cluster_runtime(parity, tmp_path):
    from fruitjob import calibration
    from fruitjob.tflite_engine import tflite_engine, tflite_model
    from fruitjob.weights import _random_weights

    weights = _random_weights(TEST_ALPHA, 0)
    images = np.concatenate([calibration.images(4, seed=7), np.full((1, 224, 224, 3), 255, np.uint8)])
    models = {name: tflite_model(weights, name) for name in ("tflite", "tflite-int8")}
    np.savez(tmp_path / "in.npz", images=images, **{k: np.frombuffer(v, np.uint8) for k, v in models.items()})
    script = tmp_path / "run_there.py"
    script.write_text(RUN_THERE)
    done = subprocess.run(
        [str(parity.python), str(script), str(REPO / "spark_jobs"), str(tmp_path / "in.npz"), str(tmp_path / "o.npz")],
        env=parity.environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    there = np.load(tmp_path / "o.npz")
    assert str(there["runtime"]) == "ai-edge-litert 2.1.0"
    assert str(there["calibration"]) == calibration.SHA256, "numpy 1.26 draws another calibration set"
    for name in models:
        here = tflite_engine(weights, 3, threads=1, featurizer=name)(images)
        scale = float(np.abs(here).max())
        diff = float(np.abs(there[name] - here).max())
        print(name, "max abs diff", diff, "of features up to", scale)
        assert there[name].shape == (len(images), 1280) and scale > 0
        assert diff <= 1e-4 * max(scale, 1.0), f"{name}: max abs diff {diff:.3g} (features up to {scale:.3g})"


# -- a model the flow converted, shipped to a cluster without TensorFlow ------------------------------------------


def test_exporting_a_model_again_never_changes_a_file_being_read(tmp_path):
    """Two runs export the same model into the cache at once (two flows, or two test workers): a reader that opened
    the file keeps whole bytes, because an export replaces the file and never rewrites it in place."""
    from fruitjob.shipped_model import MANIFEST_SUFFIX, export_model

    folder = str(tmp_path / "models")
    path = export_model("random", TEST_ALPHA, 0, "tflite", folder)
    whole = Path(path).read_bytes()
    with open(path, "rb") as reading, open(path + MANIFEST_SUFFIX, "rb") as reading_manifest:
        assert export_model("random", TEST_ALPHA, 0, "tflite", folder) == path
        # replaced: the reader's file is another one than the path's now (rewritten in place, it would be the same
        # file, truncated and refilled under the reader)
        for held, name in ((reading, path), (reading_manifest, path + MANIFEST_SUFFIX)):
            assert os.fstat(held.fileno()).st_ino != os.stat(name).st_ino
        assert reading.read() == whole
        assert json.loads(reading_manifest.read())["model_sha256"]
    assert Path(path).read_bytes() == whole
    names = [Path(path).name, Path(path).name + MANIFEST_SUFFIX]
    assert sorted(p.name for p in Path(folder).iterdir()) == sorted(names)  # no partial file left


def test_a_shipped_model_is_used_only_for_the_run_it_was_converted_for(spark, tmp_path):
    from fruitjob.shipped_model import export_model, load_shipped
    from fruitjob.tflite_engine import convert_for_workers, resolve_converted
    from fruitjob.weights import WeightsError

    path = export_model("random", TEST_ALPHA, 0, "tflite", str(tmp_path / "staged"))
    expected = convert_for_workers(resolve_converted(spark, "random", TEST_ALPHA, 0, "tflite"))
    weights = load_shipped(spark, "file:" + path, "random", TEST_ALPHA, 0, "tflite")
    assert (weights.tflite, weights.sha256, weights.name) == (expected.tflite, expected.sha256, "random(seed=0)")

    for name, seed, featurizer, alpha, problem in [
        ("random", 1, "tflite", TEST_ALPHA, "weights: the model has 'random(seed=0)'"),
        ("random", 0, "tflite-int8", TEST_ALPHA, "featurizer: the model has 'tflite'"),
        ("random", 0, "tflite", 1.0, "alpha"),
        ("imagenet", 0, "tflite", TEST_ALPHA, "weights"),
    ]:
        with pytest.raises(WeightsError, match=re.escape("converted for another run (" + problem)):
            load_shipped(spark, path, name, alpha, seed, featurizer)
    (tmp_path / "other.h5").write_bytes(b"other weights")
    with pytest.raises(WeightsError, match="weights_sha256"):
        load_shipped(spark, path, str(tmp_path / "other.h5"), TEST_ALPHA, 0, "tflite")
    Path(path).write_bytes(Path(path).read_bytes()[:-1] + b"x")
    with pytest.raises(WeightsError, match="does not match its manifest"):
        load_shipped(spark, path, "random", TEST_ALPHA, 0, "tflite")
