"""The job on the files people really upload (tests/hostile_inputs.py), while losing a Python worker on the way.

One real run of the job (in the session's Spark, master ``local[2,2]``) serves every test here: every decodable
image has features, every other image-named file is an error with a reason, the rest is counted as skipped, the
counts reconcile (validation checks it), and the task whose worker was SIGKILLed was retried without duplicates.
A second run shows that an output whose metrics.json is gone is redone by a plain rerun.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pyarrow import fs as pafs

from tasks.validation import ClassCounts, OutputInvalid, verify_output
from tests.conftest import REPO
from tests.helpers import metrics, read_parquet
from tests.hostile_inputs import ERROR, OK, SKIPPED, make_hostile_corpus, output_uri

pytestmark = pytest.mark.slow  # one run of the job over the hostile corpus, a worker killed: ~10 s

CRASH_POINTS = REPO / "tests" / "crash_points"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("hostile")
    return root, make_hostile_corpus(root)


@pytest.fixture(scope="module")
def hostile_run(spark, run_job, corpus, tmp_path_factory) -> Path:
    """The job over the corpus, with one Python worker SIGKILLed mid-featurization by tests/crash_points/
    sitecustomize.py: this environment reaches the workers (a new daemon, with that folder on its PYTHONPATH)."""
    root, _expected = corpus
    marker = tmp_path_factory.mktemp("kill") / "killed-once"
    environment = spark.sparkContext.environment
    killing = {"PYTHONPATH": str(CRASH_POINTS), "FRUITFLOW_KILL_WORKER_ONCE": str(marker)}
    environment.update(killing)
    try:
        output = run_job(root, "--pca-components", "3", "--partitions", "2")
    finally:
        for name in killing:
            del environment[name]
    assert marker.exists(), "tests/crash_points/sitecustomize.py must have killed a worker"
    return output


def _uri(root: Path, relative: str) -> str:
    return output_uri(root, relative)


def test_every_decodable_image_has_features(corpus, hostile_run):
    root, expected = corpus
    features = read_parquet(hostile_run, "features")
    wanted = {_uri(root, rel) for rel, outcome in expected.items() if outcome == OK}
    assert set(features["path"]) == wanted
    assert features["features"].map(len).eq(1280).all()
    labels = dict(zip(features["path"], features["label"], strict=True))
    assert labels[_uri(root, "Pêche Blanche/ünïcødé 桃 🍑.jpg")] == "Pêche Blanche"
    assert labels[_uri(root, "Apple Red/100% fresh #1 (copy).jpg")] == "Apple Red"
    assert labels[_uri(root, "Apple Red/2026/November/deep.jpg")] == "Apple Red"  # the first folder, not the parent
    assert labels[_uri(root, "Linked Kiwi/kiwi 0.jpg")] == "Linked Kiwi"  # a linked label folder is followed


def test_every_undecodable_image_is_an_error_with_a_reason(corpus, hostile_run):
    root, expected = corpus
    errors = read_parquet(hostile_run, "errors")
    assert set(errors["path"]) == {_uri(root, rel) for rel, outcome in expected.items() if outcome == ERROR}
    reasons = dict(zip(errors["path"], errors["error"], strict=True))
    assert all(reason and "\n" not in reason for reason in reasons.values())
    assert reasons[_uri(root, "Broken/zero-bytes.jpg")] == "empty file (0 bytes)"
    assert "image too large" in reasons[_uri(root, "Broken/bomb.png")]
    assert "image too large" in reasons[_uri(root, "Broken/bomb.jpg")]
    assert "not a recognised image format" in reasons[_uri(root, "Broken/text.png")]
    assert "Truncated" in reasons[_uri(root, "Broken/truncated.jpg")]
    assert "could not be read" in reasons[_uri(root, "Broken/loop-a.jpg")]
    assert "could not be read" in reasons[_uri(root, "Broken/dangling.jpg")]
    assert "not a regular file (a FIFO)" in reasons[_uri(root, "Broken/fifo.jpg")]
    assert "file too large to read (3221.2 MB" in reasons[_uri(root, "Broken/huge sparse.jpg")]
    assert "not valid UTF-8" in reasons[_uri(root, "Broken/caf\udce9 latin-1.jpg")]
    assert reasons[_uri(root, "at the root.jpg")].startswith("not inside a label folder")
    for name in ("Broken/really a gif.jpg", "Broken/postscript.jpg"):
        assert "JPEG or PNG" in reasons[_uri(root, name)], reasons[_uri(root, name)]


def test_counts_reconcile_and_validation_passes(corpus, hostile_run):
    root, expected = corpus
    m = metrics(hostile_run)
    outcomes = list(expected.values())
    assert m["files_seen"] == len(expected)
    skipped_folders = {entry["path"] for entry in m["folders_skipped"]}
    assert skipped_folders == {_uri(root, "Banana/loop"), _uri(root, "Broken/back to root")}  # loops, named
    assert m["files_skipped"] == outcomes.count(SKIPPED)
    assert (m["images_ok"], m["images_failed"]) == (outcomes.count(OK), outcomes.count(ERROR))
    assert m["images_ok"] + m["images_failed"] + m["files_skipped"] == m["files_seen"]
    report = verify_output(str(hostile_run), pafs.LocalFileSystem())  # raises if anything does not reconcile
    assert report.per_class["Broken"].failed == outcomes.count(ERROR) - 1 and "Empty Class" not in report.per_class
    assert report.per_class[""] == ClassCounts(ok=0, failed=1)  # the image directly under the root: no label


def test_killed_worker_task_is_retried_without_losing_or_duplicating_rows(hostile_run):
    features, errors, pca = (read_parquet(hostile_run, name) for name in ("features", "errors", "pca"))
    assert not features["path"].duplicated().any() and not errors["path"].duplicated().any()
    assert sorted(pca["path"]) == sorted(features["path"])
    assert len(features) + len(errors) == metrics(hostile_run)["images_total"]


def test_unfinished_output_is_refused_by_validation_then_redone_by_a_rerun(spark, corpus, hostile_run, tmp_path):
    """A run that died after writing features/ but before metrics.json: it never looks finished, a rerun redoes it."""
    from fruitjob.job import JobError, run
    from fruitjob.options import parse_options
    from tests.conftest import JOB_DEFAULTS

    root, _expected = corpus
    half_done = tmp_path / "half-done"
    shutil.copytree(hostile_run, half_done)
    (half_done / "metrics.json").unlink()
    shutil.rmtree(half_done / "pca")
    with pytest.raises(OutputInvalid, match="metrics.json is missing"):
        verify_output(str(half_done), pafs.LocalFileSystem())

    argv = ["--images", str(root), "--output", str(half_done), *JOB_DEFAULTS, "--pca-components", "3"]
    with pytest.raises(JobError, match="holds an unfinished run"):
        run(spark, parse_options(argv))  # a plain run never writes over a half-done one
    run(spark, parse_options([*argv, "--incremental"]))  # --incremental finishes it

    verify_output(str(half_done), pafs.LocalFileSystem())
    before, after = read_parquet(hostile_run, "features"), read_parquet(half_done, "features")
    assert list(after["path"]) == list(before["path"])
    resumed, first = metrics(half_done), metrics(hostile_run)
    # The features that were written are kept (not featurized again); the failed images are retried.
    assert (resumed["images_already_done"], resumed["images_ok"]) == (first["images_ok"], 0)
    assert resumed["images_failed"] == first["images_failed"]
    # pca_model/ and space.json were written before the crash: the resumed run stays in that one space.
    assert resumed["pca_refit"] is False and resumed["pca_model_id"] == first["pca_model_id"]
    assert sorted(read_parquet(half_done, "pca")["path"]) == sorted(before["path"])


def test_a_large_photo_is_decoded_at_reduced_scale(monkeypatch):
    """A 6000x4000 JPEG is decoded by draft at 1/8 scale (~1 MB), never as a 72 MB full-size bitmap."""
    import io

    from PIL import Image

    from fruitjob import decoding

    buffer = io.BytesIO()
    Image.new("RGB", (6000, 4000), (180, 40, 40)).save(buffer, format="JPEG", quality=70)
    decoded_sizes = []
    real_to_rgb = decoding._to_rgb

    def spy(img):
        decoded_sizes.append(img.size)
        return real_to_rgb(img)

    monkeypatch.setattr(decoding, "_to_rgb", spy)
    array = decoding.decode_image(buffer.getvalue())

    assert array.shape == (224, 224, 3)
    (size,) = decoded_sizes
    assert size[0] * size[1] <= 6000 * 4000 // 64, f"decoded at {size}, draft did not reduce it"


def test_exif_orientation_is_applied():
    import io

    from PIL import Image

    from fruitjob.decoding import decode_image
    from tests.hostile_inputs import exif_rotated_jpeg

    with Image.open(io.BytesIO(exif_rotated_jpeg())) as raw:
        assert raw.size == (40, 80)  # stored portrait, top half black
    decoded = decode_image(exif_rotated_jpeg())
    assert decoded[:, :100].mean() > 200 and decoded[:, 124:].mean() < 50  # displayed: the right half is black
