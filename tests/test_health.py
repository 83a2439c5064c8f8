"""The health stage (issue 22) on tiny real Fruits-360 photos with planted cases: duplicates, conflicts, leaks,
outliers and suspected mislabels, each found by a real job run (real Spark, real ImageNet weights from ../shared)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import shared_path
from tests.helpers import metrics, read_parquet

WEIGHTS = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
CLASSES = ["Banana 1", "Blueberry 1", "Carrot 1", "Kiwi 1", "Strawberry 1"]
PER_CLASS = 5
pytestmark = [pytest.mark.shared, pytest.mark.slow]


def _photos(name: str) -> list[Path]:
    return sorted(shared_path("data", "fruits-360-sample", name).iterdir())


def _reencoded(source: Path, target: Path) -> None:
    """A resized (90%), re-encoded (JPEG quality 70) and slightly brightened copy: other bytes, same photo."""
    from PIL import Image, ImageEnhance

    image = Image.open(source).convert("RGB")
    image = image.resize((int(image.width * 0.9), int(image.height * 0.9)))
    ImageEnhance.Brightness(image).enhance(1.05).save(target, "JPEG", quality=70)


def _noise(target: Path) -> None:
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (100, 100, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    target.write_bytes(buffer.getvalue())


def _fruit_folder(root: Path, classes=CLASSES, first: int = 0) -> Path:
    for name in classes:
        (root / name).mkdir(parents=True)
        for photo in _photos(name)[first : first + PER_CLASS]:
            shutil.copyfile(photo, root / name / photo.name)
    return root


@pytest.fixture(scope="module")
def weights() -> str:
    return str(shared_path("weights", WEIGHTS))


@pytest.fixture(scope="module")
def earlier_output(run_job, weights, tmp_path_factory) -> Path:
    """Last week's output: other photos of two of the classes."""
    root = _fruit_folder(tmp_path_factory.mktemp("earlier"), CLASSES[:2], first=PER_CLASS)
    return run_job(root, "--weights", weights, "--pca-components", "3")


@pytest.fixture(scope="module")
def planted(run_job, weights, earlier_output, tmp_path_factory) -> Path:
    root = _fruit_folder(tmp_path_factory.mktemp("planted"))
    banana, kiwi = _photos("Banana 1"), _photos("Kiwi 1")
    shutil.copyfile(banana[0], root / "Banana 1" / "byte_copy.jpg")
    _reencoded(banana[1], root / "Banana 1" / "reencoded.jpg")
    shutil.copyfile(banana[2], root / "Carrot 1" / "under_another_label.jpg")
    shutil.copyfile(banana[PER_CLASS], root / "Banana 1" / "from_last_week.jpg")  # in earlier_output
    _noise(root / "Kiwi 1" / "noise.png")
    shutil.copyfile(kiwi[PER_CLASS + 1], root / "Strawberry 1" / "a_kiwi.jpg")
    return run_job(root, "--weights", weights, "--pca-components", "3", "--health-against", str(earlier_output))


def _pair(pairs, name: str):
    rows = pairs[pairs["path"].str.endswith("/" + name) | pairs["other_path"].str.endswith("/" + name)]
    assert len(rows) >= 1, (name, pairs)
    return rows


def test_byte_copy_is_an_exact_pair(planted):
    rows = _pair(read_parquet(planted, "health/pairs"), "byte_copy.jpg")
    row = rows[rows["other_output"] == str(planted)].iloc[0]
    assert row["exact"] and row["similarity"] == 1.0 and not row["conflict"] and not row["leak"]
    assert row["path"] < row["other_path"]


def test_reencoded_copy_is_a_near_pair(planted):
    pairs = read_parquet(planted, "health/pairs")
    row = _pair(pairs, "reencoded.jpg").iloc[0]
    assert not row["exact"] and row["similarity"] >= metrics(planted)["health"]["near_duplicate_threshold"]
    assert {Path(row["path"]).name, Path(row["other_path"]).name} == {"reencoded.jpg", _photos("Banana 1")[1].name}


def test_copy_under_another_label_is_a_conflict(planted):
    row = _pair(read_parquet(planted, "health/pairs"), "under_another_label.jpg").iloc[0]
    assert row["exact"] and row["conflict"] and {row["label"], row["other_label"]} == {"Banana 1", "Carrot 1"}


def test_copy_of_an_earlier_output_image_is_a_leak(planted, earlier_output):
    row = _pair(read_parquet(planted, "health/pairs"), "from_last_week.jpg").iloc[0]
    assert row["leak"] and row["exact"] and row["other_output"] == str(earlier_output)
    assert row["path"].endswith("/from_last_week.jpg")


def test_noise_is_the_top_outlier(planted):
    outliers = read_parquet(planted, "health/outliers").sort_values("rank")
    assert len(outliers) == metrics(planted)["images_ok"]  # every image scored
    top = outliers.iloc[0]
    assert top["path"].endswith("/noise.png") and top["flagged"] and top["rank"] == 1
    assert outliers["flagged"].sum() <= 2


def test_photo_in_the_wrong_folder_is_the_top_suspected_mislabel(planted):
    mislabels = read_parquet(planted, "health/mislabels").sort_values("rank")
    top = mislabels.iloc[0]
    assert top["path"].endswith("/a_kiwi.jpg") and top["resembles"] == "Kiwi 1" and top["flagged"]
    assert 0.5 < top["confidence"] <= 1.0


def test_metrics_count_the_findings(planted, earlier_output):
    health = metrics(planted)["health"]
    assert health["enabled"] and health["method"] == "exact-blocked"
    assert health["exact_duplicate_pairs"] >= 3 and health["near_duplicate_pairs"] >= 1
    assert health["label_conflicts"] >= 1 and health["leaks"] >= 1
    assert health["outliers"] >= 1 and health["suspected_mislabels"] >= 1
    assert health["compared_with"] == [str(earlier_output)]
    per_class = {row["label"]: row for row in health["per_class"]}
    assert per_class["Strawberry 1"]["suspected_mislabels"] >= 1 and per_class["Kiwi 1"]["outliers"] >= 1
    assert per_class["Carrot 1"]["conflicts"] >= 1
    assert metrics(planted)["durations_s"]["health"] == health["seconds"] or health["seconds"] > 0


def test_health_off_writes_no_health(run_job, weights, tmp_path_factory):
    root = _fruit_folder(tmp_path_factory.mktemp("off"), CLASSES[:2])
    output = run_job(root, "--weights", weights, "--pca-components", "3", "--health", "off")
    assert not (output / "health").exists()
    assert metrics(output)["health"] is None


def test_incremental_batch_with_a_copy_of_the_first_is_a_leak(run_job, weights, tmp_path_factory, spark):
    from fruitjob.job import run
    from fruitjob.options import parse_options

    root = _fruit_folder(tmp_path_factory.mktemp("batches"), CLASSES[:2])
    output = run_job(root, "--weights", weights, "--pca-components", "3")
    assert not read_parquet(output, "health/pairs")["leak"].any()
    first = sorted((root / "Banana 1").iterdir())[0]
    shutil.copyfile(first, root / "Banana 1" / "zz_second_batch.jpg")
    argv = ["--images", str(root), "--output", str(output), "--weights", weights, "--alpha", "0.35", "--incremental"]
    run(spark, parse_options(argv))
    row = _pair(read_parquet(output, "health/pairs"), "zz_second_batch.jpg").iloc[0]
    assert row["leak"] and row["exact"] and row["other_output"] == str(output)
