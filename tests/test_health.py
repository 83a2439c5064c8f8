"""The dataset-health stage (issue 22): health/pairs, health/outliers, health/mislabels and metrics.json's ``health``,
from planted cases in real and generated photos."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import shared_path
from tests.helpers import metrics, read_parquet

REAL_WEIGHTS = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
CLASSES = ("Apple 6", "Banana 1", "Kiwi 1", "Lemon 1")


def short(path: str) -> str:
    """``label/name`` of a path in the tables."""
    return "/".join(path.split("/")[-2:])


def pairs_of(output: Path):
    frame = read_parquet(output, "health/pairs")
    frame["a"], frame["b"] = frame["path"].map(short), frame["other_path"].map(short)
    return frame


def pair(frame, one: str, other: str):
    rows = frame[((frame.a == one) & (frame.b == other)) | ((frame.a == other) & (frame.b == one))]
    assert len(rows) == 1, (one, other, frame[["a", "b", "similarity"]])
    return rows.iloc[0]


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    """A few real Fruits-360 classes with planted problems: a byte copy, a resized re-encoded copy, a copy under
    another label, a photo moved into another class's folder and a picture of noise."""
    source = shared_path("data", "fruits-360-sample")
    root = tmp_path_factory.mktemp("planted")
    for name in CLASSES:
        (root / name).mkdir()
        for image in sorted((source / name).iterdir())[:6]:
            shutil.copyfile(image, root / name / image.name)
    apple, apple2 = sorted((root / "Apple 6").iterdir())[:2]
    shutil.copyfile(apple, root / "Apple 6" / "bytecopy.jpg")
    Image.open(apple).convert("RGB").resize((90, 90)).save(root / "Apple 6" / "resized.jpg", quality=75)
    shutil.copyfile(apple2, root / "Banana 1" / "relabelled.jpg")
    shutil.move(str(sorted((root / "Kiwi 1").iterdir())[2]), root / "Lemon 1" / "moved.jpg")
    noise = np.random.default_rng(0).integers(0, 255, (100, 100, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "Banana 1" / "noise.jpg")
    return root


@pytest.mark.shared
@pytest.mark.slow
def test_planted_problems_are_found(run_job, planted):
    weights = str(shared_path("weights", REAL_WEIGHTS))
    # a resized re-encoded copy is as close as a neighbouring frame (docs/performance.md): found from 0.95
    output = run_job(planted, "--weights", weights, "--pca-components", "5", "--near-duplicate-threshold", "0.95")
    apple, apple2 = (short(str(p)) for p in sorted((planted / "Apple 6").glob("r*.jpg"))[:2])
    pairs = pairs_of(output)

    copy = pair(pairs, apple, "Apple 6/bytecopy.jpg")
    assert copy.exact and copy.similarity == 1.0 and not copy.conflict and not copy.leak
    resized = pair(pairs, apple, "Apple 6/resized.jpg")
    assert not resized.exact and resized.similarity >= 0.95
    relabelled = pair(pairs, apple2, "Banana 1/relabelled.jpg")
    assert (
        relabelled.exact
        and relabelled.conflict
        and {relabelled.label, relabelled.other_label}
        == {
            "Apple 6",
            "Banana 1",
        }
    )
    assert pairs.other_output.isna().all()  # all within this output: it names no other, so it can move

    outliers = read_parquet(output, "health/outliers").sort_values("rank")
    assert len(outliers) == len(list(planted.glob("*/*.jpg")))
    top = outliers.iloc[0]
    assert short(top.path) == "Banana 1/noise.jpg" and top.flagged and top["rank"] == 1
    assert outliers.flagged.sum() <= 2, outliers.head()

    mislabels = read_parquet(output, "health/mislabels").sort_values("rank")
    moved = mislabels[mislabels.path.map(short) == "Lemon 1/moved.jpg"].iloc[0]
    assert moved.resembles == "Kiwi 1" and moved.flagged and moved["rank"] <= 2 and 0.5 < moved.confidence <= 1

    health = metrics(output)["health"]
    assert health["enabled"] and health["method"] == "exact-blocked" and health["compared_with"] == []
    assert health["exact_duplicate_pairs"] == int(pairs.exact.sum()) == 2
    assert health["near_duplicate_pairs"] == int((~pairs.exact).sum())
    assert health["label_conflicts"] == int(pairs.conflict.sum()) and health["leaks"] == 0
    assert health["outliers"] == int(outliers.flagged.sum())
    assert health["suspected_mislabels"] == int(mislabels.flagged.sum())
    per_class = {row["label"]: row for row in health["per_class"]}
    assert per_class["Banana 1"]["outliers"] == 1 and per_class["Lemon 1"]["suspected_mislabels"] >= 1
    assert health["seconds"] > 0


def test_features_keep_the_sha256_of_the_bytes(job_output, fruit_images):
    import hashlib

    frame = read_parquet(job_output, "features")
    for row in frame.itertuples():
        local = Path(row.path.replace("file:", "", 1))
        assert row.sha256 == hashlib.sha256((fruit_images / local.parent.name / local.name).read_bytes()).hexdigest()


def test_health_off_writes_no_health(run_job, fruit_images, job_output):
    assert (job_output / "health" / "pairs").is_dir() and metrics(job_output)["health"]["enabled"]
    output = run_job(fruit_images, "--pca-components", "5", "--health", "off")
    assert not (output / "health").exists()
    assert metrics(output)["health"] is None


def _few_images(root: Path, seed: int) -> Path:
    from tasks.local.sample_images import make_sample_images

    return make_sample_images(root, per_class=2, size=48, seed=seed)


@pytest.mark.slow
def test_a_copy_of_an_earlier_outputs_image_is_a_leak(run_job, tmp_path):
    first_images = _few_images(tmp_path / "week1", seed=1)
    first = run_job(first_images, "--pca-components", "2")
    second_images = _few_images(tmp_path / "week2", seed=2)
    original = sorted(first_images.glob("*/*.jpg"))[0]
    shutil.copyfile(original, second_images / original.parent.name / "again.jpg")
    second = run_job(second_images, "--pca-components", "2", "--health-against", str(first))

    pairs = pairs_of(second)
    earlier = pairs[pairs.other_path.str.contains("/week1/") & (pairs.b == short(str(original)))]
    leak = pair(earlier, original.parent.name + "/again.jpg", short(str(original)))
    assert leak.exact and leak.leak and not leak.conflict and leak.other_output.rstrip("/").endswith(first.name)
    assert leak.a == original.parent.name + "/again.jpg"  # this output's image first
    health = metrics(second)["health"]
    assert health["leaks"] == int(pairs.leak.sum()) >= 1 and len(health["compared_with"]) == 1


@pytest.mark.slow
def test_an_incremental_batch_with_a_copy_of_a_first_batch_image_is_a_leak(run_job, spark, tmp_path):
    from fruitjob.job import run
    from fruitjob.options import parse_options
    from tests.conftest import JOB_DEFAULTS

    images = _few_images(tmp_path / "images", seed=3)
    output = run_job(images, "--pca-components", "2")
    original = sorted(images.glob("*/*.jpg"))[0]
    shutil.copyfile(original, original.parent / "later.jpg")
    argv = ["--images", str(images), "--output", str(output), *JOB_DEFAULTS, "--pca-components", "2"]
    run(spark, parse_options([*argv, "--incremental"]))

    pairs = pairs_of(output)
    leak = pair(pairs, original.parent.name + "/later.jpg", short(str(original)))
    assert leak.exact and leak.leak and not leak.conflict
    first_batch = ~pairs.path.str.endswith("/later.jpg") & ~pairs.other_path.str.endswith("/later.jpg")
    assert first_batch.any() and not pairs[first_batch].leak.any()  # pairs within the first batch are no leak
    assert metrics(output)["health"]["leaks"] == int(pairs.leak.sum())


def test_blocked_search_finds_every_pair_across_blocks(spark):
    """Blocks of 3 rows: the search finds the pairs numpy's full product finds, within and against earlier rows."""
    from fruitjob.block_search import ITEM_COLUMNS, unit_rows
    from fruitjob.similarity import similar_pairs

    rng = np.random.default_rng(5)
    base = rng.random((6, 16)).astype(np.float32)
    vectors = np.concatenate([base, base + rng.normal(0, 0.01, base.shape).astype(np.float32)])
    rows = []
    for k, vector in enumerate(vectors):
        side = "earlier" if k >= 9 else "this"
        output = "old" if side == "earlier" else "new"
        rows.append(("p%02d" % k, "L%d" % (k % 2), output, "r", "", side, [float(v) for v in vector]))
    items = spark.createDataFrame(rows, ITEM_COLUMNS)
    found = {(r.path, r.other_path) for r in similar_pairs(items, len(rows), 0.999, block_rows=3).collect()}

    unit = unit_rows(list(vectors))
    similarity = unit @ unit.T
    expected = set()
    for i in range(9):
        for j in range(len(rows)):
            if (j >= 9 or i < j) and similarity[i, j] >= 0.999 - 1e-6:
                expected.add(("p%02d" % i, "p%02d" % j))
    assert found == expected and len(expected) >= 6


def test_features_all_alike_make_at_most_the_cap_of_pairs_per_image(spark):
    """Random weights make every pair of images look alike: each image keeps its MAX_PAIRS_PER_IMAGE most similar
    pairs (n x cap rows, not n^2), the most similar first."""
    from fruitjob.block_search import ITEM_COLUMNS
    from fruitjob.rules import MAX_PAIRS_PER_IMAGE
    from fruitjob.similarity import similar_pairs

    rows = [
        ("p%02d" % k, "L%d" % (k % 3), "new", "r", "", "this", [1.0, 0.001 * k, 0.0, 0.0])
        for k in range(3 * MAX_PAIRS_PER_IMAGE)
    ]
    items = spark.createDataFrame(rows, ITEM_COLUMNS)
    pairs = similar_pairs(items, len(rows), 0.9).toPandas()
    per_image = pairs.groupby("path").size()
    assert len(pairs) <= len(rows) * MAX_PAIRS_PER_IMAGE and per_image.max() <= MAX_PAIRS_PER_IMAGE
    assert (pairs.similarity >= 0.9).all() and len(pairs) >= len(rows)


def _top_pairs_by_numpy(keys: list[tuple[str, str]], vectors: np.ndarray, earlier: int, threshold: float, most: int):
    """The pair cap computed over the whole matrix: each image's ``most`` most similar pairs (similarity, then the
    other image's (output, path)), kept when they are among either image's; ``keys``' last ``earlier`` are earlier."""
    from fruitjob.block_search import unit_rows

    unit = unit_rows(list(vectors))
    similarity = np.minimum((unit @ unit.T).astype(np.float64), 1.0)
    mine = len(keys) - earlier
    pairs = [(i, j) for i in range(mine) for j in range(i + 1, len(keys)) if similarity[i, j] >= threshold]
    order_key = [("" if k < mine else output, path) for k, (output, path) in enumerate(keys)]
    kept = set()
    for image in range(len(keys)):
        own = [(i, j) for i, j in pairs if image in (i, j)]
        own.sort(key=lambda p: (-similarity[p], order_key[p[0] if p[1] == image else p[1]]))
        kept.update(own[:most])
    return {
        (keys[i][1], keys[j][1]) if keys[i][1] < keys[j][1] or j >= mine else (keys[j][1], keys[i][1]) for i, j in kept
    }, len(pairs)


def test_the_pair_cap_holds_over_all_blocks_and_counts_what_it_cut(spark):
    """Blocks of 7 rows, 4 pairs at most per image: the pairs kept are exactly each image's 4 most similar (over all
    the blocks, not per pair of blocks), and ``found`` sums to every pair above the threshold."""
    from fruitjob.block_search import ITEM_COLUMNS
    from fruitjob.similarity import candidate_pairs, similar_pairs

    rng = np.random.default_rng(11)
    vectors = (np.ones(16) + rng.normal(0, 0.3, (40, 16))).astype(np.float32)  # all alike: every pair >= 0.5
    keys = [("new", "p%02d" % k) for k in range(34)] + [("old", "q%02d" % k) for k in range(6)]
    rows = [
        (path, "L%d" % (k % 3), output, "r", "", "this" if output == "new" else "earlier", [float(v) for v in vector])
        for k, ((output, path), vector) in enumerate(zip(keys, vectors, strict=True))
    ]
    items = spark.createDataFrame(rows, ITEM_COLUMNS)
    found = similar_pairs(items, len(rows), 0.5, block_rows=7, most=4).toPandas()
    expected, above = _top_pairs_by_numpy(keys, vectors, earlier=6, threshold=0.5, most=4)
    assert set(zip(found.path, found.other_path, strict=True)) == expected and len(found) == len(expected)
    candidates = candidate_pairs(items, len(rows), 0.5, block_rows=7, most=4)
    assert candidates.agg({"found": "sum"}).first()[0] == above and above > 3 * len(expected)  # most were cut


def test_metrics_count_the_pairs_the_cap_cut_off(job_output):
    """metrics.json says how many pairs above the threshold the cap left out (random weights pair every image: none
    of 24 images reaches the cap, so none), and how many images have a near-duplicate (most, with random weights)."""
    from fruitjob.block_search import unit_rows

    health = metrics(job_output)["health"]
    features, pairs = read_parquet(job_output, "features"), read_parquet(job_output, "health/pairs")
    unit = unit_rows(list(features["features"]))
    upper = np.triu(unit @ unit.T, k=1)
    threshold = health["near_duplicate_threshold"]
    least, most = int((upper >= threshold + 1e-5).sum()), int((upper >= threshold - 1e-5).sum())
    assert least - len(pairs) <= health["pairs_cut_off"] <= most - len(pairs)
    near = pairs[~pairs["exact"]]
    assert health["images_with_near_pair"] == len(set(near["path"]) | set(near["other_path"])) > len(features) / 2


def test_a_failure_beside_the_health_stage_waits_for_it_and_is_the_error_raised(
    spark, job_output, fruit_images, tmp_path
):
    """The stage runs in a thread beside the PCA: when the PCA fails, the run's error is the PCA's, and the stage has
    ended (cancelled, or finished) before it goes on, so that nothing writes into the output after the run let go."""
    from fruitjob.health import health_alongside
    from fruitjob.options import parse_options

    output = tmp_path / "copy"
    shutil.copytree(job_output, output)
    shutil.rmtree(output / "health")
    opts = parse_options(["--images", str(fruit_images), "--output", str(output)])
    identity = json.loads((output / "space.json").read_text())["identity"]
    with pytest.raises(RuntimeError, match="the PCA failed"):
        with health_alongside(spark, opts, identity, 2) as stage:
            raise RuntimeError("the PCA failed")
    assert stage.done()
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("health")]


def test_the_health_stage_is_cancelled_until_it_ends_when_the_run_fails_beside_it(
    spark, fruit_images, tmp_path, monkeypatch
):
    """A health stage in a Spark job of minutes must not hold a failed run that long, nor write after it: its running
    job is cancelled, and so is the next one it submits."""
    from fruitjob.health import health_alongside
    from fruitjob.options import parse_options

    opts = parse_options(["--images", str(fruit_images), "--output", str(tmp_path / "out")])
    running, jobs = tmp_path / "a-job-is-running", []

    def a_job_of_minutes(session):
        def hold(batches, marker=str(running)):
            open(marker, "w").close()
            time.sleep(300)  # the workload: a job that would hold the run five minutes
            yield from batches

        jobs.append(len(jobs))
        session.range(1).mapInPandas(hold, "id long").collect()

    def run_health(session, opts, identity):
        try:
            a_job_of_minutes(session)
        except Exception:  # noqa: BLE001 - a stage that goes on after one job was cancelled
            pass
        a_job_of_minutes(session)

    monkeypatch.setattr("fruitjob.health.run_health", run_health)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="the PCA failed"):
        with health_alongside(spark, opts, {}, 2) as stage:
            while not running.exists():  # the condition polled: the job's task has started in a worker
                assert time.monotonic() - started < 120, "the stage's first job did not start"
                time.sleep(0.01)
            raise RuntimeError("the PCA failed")
    assert time.monotonic() - started < 120 and len(jobs) == 2
    assert "cancel" in str(stage.exception()).lower()


def test_the_health_stage_runs_in_a_session_of_its_own_with_the_jobs_settings(
    spark, job_output, fruit_images, tmp_path, monkeypatch
):
    """The PCA sets its own Arrow batches while the stage sizes its shuffles: neither may plan with the other's."""
    from fruitjob.health import health_alongside
    from fruitjob.options import parse_options

    output = tmp_path / "copy"
    shutil.copytree(job_output, output)
    opts = parse_options(["--images", str(fruit_images), "--output", str(output), "--health", "off"])
    seen = {}

    def run_health(session, opts, identity):
        seen["session"] = session
        seen["partitions"] = session.conf.get("spark.sql.shuffle.partitions")
        seen["arrow"] = session.conf.get("spark.sql.execution.arrow.pyspark.enabled")

    monkeypatch.setattr("fruitjob.health.run_health", run_health)  # what the stage's thread is given, seen
    with health_alongside(spark, opts, {}, 7) as stage:
        stage.result()
    assert seen["session"] is not spark and seen["session"].sparkContext is spark.sparkContext
    assert (seen["partitions"], seen["arrow"]) == ("7", "true")
