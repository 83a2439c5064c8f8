"""The job as an EMR 7.x cluster runs it: Python 3.9, Spark 3.5.6 and the cluster's pins, read from pyproject.toml as
the archive a cluster ships is built from them (tests/parity_env.py, tasks/aws/job_pins.py).

Its features equal the local engine's (Spark 4, Python 3.11, numpy 2) on the same images within 1e-4, its output
validates, and the incremental and ``--pca-model`` paths work there too. Skipped, with the reason, where Python 3.9
is not installed.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from pyarrow import fs

from tasks.local.sample_images import draw_fruit
from tasks.validation import verify_output
from tests.conftest import JOB_DEFAULTS, TEST_ALPHA
from tests.helpers import metrics, read_parquet, vectors
from tests.parity_env import EMR_SPARK

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shipped_model(tmp_path_factory) -> str:
    """The model as the flow ships it to a cluster (tasks/aws/model_export.py): converted here, by TensorFlow 2.21;
    the parity environment has no TensorFlow, as the cluster has none."""
    from fruitjob.shipped_model import export_model

    return export_model("random", TEST_ALPHA, 0, "tflite", str(tmp_path_factory.mktemp("shipped")))


@pytest.fixture(scope="module")
def parity_images(fruit_images, tmp_path_factory):
    folder = tmp_path_factory.mktemp("parity") / "images"
    shutil.copytree(fruit_images, folder)
    return folder


def _submit(parity, model, images, output, *extra: str):
    job_args = ["--images", str(images), "--output", str(output), *JOB_DEFAULTS, "--tflite-model", model]
    done = parity.spark_submit(*job_args, *extra)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return output


@pytest.fixture(scope="module")
def parity_output(parity, shipped_model, parity_images, tmp_path_factory):
    output = tmp_path_factory.mktemp("parity-out") / "run"
    return _submit(parity, shipped_model, parity_images, output, "--pca-components", "5")


def test_the_cluster_stack_is_what_ran(parity_output):
    versions = metrics(parity_output)["versions"]
    assert versions["python"].startswith("3.9.") and versions["spark"] == EMR_SPARK["emr-7.13.0"]
    assert versions["numpy"].startswith("1.26") and versions["litert"] == "2.1.0"
    assert versions["tensorflow"] is None, "the cluster runs the shipped model: no TensorFlow there"


def test_features_equal_the_local_engine_and_the_output_validates(
    parity_output, parity_images, job_output, fruit_images
):
    verify_output(str(parity_output), fs.LocalFileSystem())
    here, there = read_parquet(job_output, "features"), read_parquet(parity_output, "features")
    relative = [p[len(f"file:{fruit_images}") :] for p in here["path"]]
    assert relative == [p[len(f"file:{parity_images}") :] for p in there["path"]]
    assert list(here["label"]) == list(there["label"])
    diff = np.abs(vectors(here, "features") - vectors(there, "features")).max()
    assert diff <= 1e-4, f"max abs diff {diff:.3g} between Spark 4 / Python 3.11 and the EMR stack"


def test_the_health_stage_finds_what_the_local_engine_finds(parity_output, parity_images, job_output, fruit_images):
    for table, key in (("pairs", ["path", "other_path"]), ("outliers", ["rank"]), ("mislabels", ["rank"])):
        here, there = read_parquet(job_output, "health/" + table), read_parquet(parity_output, "health/" + table)
        for frame, root in ((here, fruit_images), (there, parity_images)):
            for column in ("path", "other_path", "other_output"):
                if column in frame:
                    frame[column] = [
                        "/".join(p.replace(f"file:{root}", "").rstrip("/").split("/")[-2:]) if p else p
                        for p in frame[column]
                    ]
        here, there = here.sort_values(key).reset_index(drop=True), there.sort_values(key).reset_index(drop=True)
        numeric = [c for c in ("similarity", "score", "confidence") if c in here]
        assert here.drop(columns=numeric + ["other_output"], errors="ignore").equals(
            there.drop(columns=numeric + ["other_output"], errors="ignore")
        ), table
        for column in numeric:
            np.testing.assert_allclose(here[column], there[column], atol=1e-4)
    here, there = metrics(job_output)["health"], metrics(parity_output)["health"]
    assert {k: v for k, v in here.items() if k != "seconds"} == {k: v for k, v in there.items() if k != "seconds"}


def test_incremental_and_pca_model_runs_on_the_cluster_stack(
    parity, shipped_model, parity_images, parity_output, tmp_path
):
    projected = _submit(
        parity,
        shipped_model,
        parity_images,
        tmp_path / "projected",
        "--pca-model",
        str(parity_output),
        "--health-against",
        str(parity_output),
    )
    assert metrics(projected)["pca_model_id"] == metrics(parity_output)["pca_model_id"]
    leaks = read_parquet(projected, "health/pairs").query("exact and leak")
    assert set(leaks["path"]) == set(read_parquet(projected, "features")["path"])  # every image is in the earlier run
    np.testing.assert_allclose(
        vectors(read_parquet(projected, "pca"), "pca"), vectors(read_parquet(parity_output, "pca"), "pca"), atol=1e-5
    )
    verify_output(str(projected), fs.LocalFileSystem())

    output = tmp_path / "grown"  # the finished run, grown by two images (the last test of the module)
    shutil.copytree(parity_output, output)
    grown = parity_images
    (grown / "Kiwi Gold").mkdir()
    for index in range(2):
        draw_fruit(__import__("random").Random(index), (150, 140, 40), 64).save(grown / "Kiwi Gold" / f"k{index}.jpg")
    _submit(parity, shipped_model, grown, output, "--incremental")
    m = metrics(output)
    assert (m["images_ok"], m["images_already_done"], m["pca_refit"]) == (2, 24, False)
    verify_output(str(output), fs.LocalFileSystem())
