"""A small output with dataset health written as the job writes it (docs/dataset-health.md), pictures made with Pillow.

It lets the page, the artifacts, the summary and validation be tested without running the health stage: features/
holds the paths, health/ the tables, metrics.json the counts. What it plants, by label (3 classes x 4 images):
Apple 0-1 exact copies and Apple 1-2 near (one group of three), Banana 0 ~ Cherry 0 (a label conflict), Cherry 1 a
copy of an earlier output's image (a leak), Banana 3 an outlier, Cherry 2 a suspected mislabel (looks like Apple).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from fruitjob.rules import to_uri

COLOURS = {"Apple": (200, 30, 30), "Banana": (230, 210, 40), "Cherry": (120, 0, 40)}
PAIR_COLUMNS = ["path", "label", "other_path", "other_label", "other_output", "similarity", "exact", "conflict", "leak"]


def _image(path: Path, colour: tuple[int, int, int], shade: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (64, 48), tuple(min(255, c + shade) for c in colour))
    image.paste((255, 255, 255), (8 + shade % 20, 8, 30, 30))
    image.save(path, "JPEG")
    return to_uri(str(path))


def write_dataset(path: Path, columns: dict[str, list]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path / "part-00000.parquet")


def metrics_dict(output: str, health: dict | None) -> dict:
    return {
        "images": "file:/in",
        "output": output,
        "files_seen": 12,
        "files_skipped": 0,
        "images_total": 12,
        "images_ok": 12,
        "images_failed": 0,
        "feature_dim": 1280,
        "pca_components": 2,
        "explained_variance": [0.6, 0.3],
        "explained_variance_total": 0.9,
        "weights": "random",
        "weights_sha256": "0" * 64,
        "alpha": 0.35,
        "featurizer": "tflite",
        "durations_s": {"featurize": 1.0},
        "health": health,
    }


def planted_output(root: Path) -> tuple[Path, dict[str, str], Path]:
    """(output, {"Apple/0": uri, ...}, earlier output) with the cases above; features/ of both outputs."""
    images = {
        f"{label}/{n}": _image(root / "images" / label / f"{n}.jpg", colour, 12 * n)
        for label, colour in COLOURS.items()
        for n in range(4)
    }
    earlier, output = root / "earlier", root / "out"
    old = _image(root / "earlier-images" / "Cherry" / "old.jpg", COLOURS["Cherry"], 12)
    write_dataset(earlier / "features", {"path": [old], "label": ["Cherry"]})
    paths = sorted(images.values())
    write_dataset(output / "features", {"path": paths, "label": [p.split("/")[-2] for p in paths]})
    me, before = to_uri(str(output)), to_uri(str(earlier))
    i = images
    pairs = [
        (i["Apple/0"], "Apple", i["Apple/1"], "Apple", me, 1.0, True, False, False),
        (i["Apple/1"], "Apple", i["Apple/2"], "Apple", me, 0.981, False, False, False),
        (i["Banana/0"], "Banana", i["Cherry/0"], "Cherry", me, 0.972, False, True, False),
        (i["Cherry/1"], "Cherry", old, "Cherry", before, 0.993, False, False, True),
    ]
    columns = [list(column) for column in zip(*pairs, strict=True)]
    write_dataset(output / "health" / "pairs", dict(zip(PAIR_COLUMNS, columns, strict=True)))
    ranked = [i["Banana/3"]] + [p for p in paths if p != i["Banana/3"]]
    write_dataset(
        output / "health" / "outliers",
        {
            "path": ranked,
            "label": [p.split("/")[-2] for p in ranked],
            "score": [3.5] + [1.0 - n / 100 for n in range(len(ranked) - 1)],
            "nearest_label": ["Apple"] + [p.split("/")[-2] for p in ranked[1:]],
            "flagged": [True] + [False] * (len(ranked) - 1),
            "rank": list(range(1, len(ranked) + 1)),
        },
    )
    write_dataset(
        output / "health" / "mislabels",
        {
            "path": [i["Cherry/2"], i["Banana/1"]],
            "label": ["Cherry", "Banana"],
            "resembles": ["Apple", "Apple"],
            "confidence": [0.91, 0.4],
            "rank": [1, 2],
            "flagged": [True, False],
        },
    )
    health = {
        "enabled": True,
        "method": "exact-blocked",
        "near_duplicate_threshold": 0.95,
        "exact_duplicate_pairs": 1,
        "near_duplicate_pairs": 3,
        "label_conflicts": 1,
        "leaks": 1,
        "outliers": 1,
        "suspected_mislabels": 1,
        "compared_with": [before],
        "seconds": 0.5,
        "per_class": [
            {"label": "Apple", "duplicates": 2, "conflicts": 0, "leaks": 0, "outliers": 0, "suspected_mislabels": 0},
            {"label": "Banana", "duplicates": 1, "conflicts": 1, "leaks": 0, "outliers": 1, "suspected_mislabels": 0},
            {"label": "Cherry", "duplicates": 2, "conflicts": 1, "leaks": 1, "outliers": 0, "suspected_mislabels": 1},
        ],
    }
    (output / "metrics.json").write_text(json.dumps(metrics_dict(me, health)))
    return output, images, earlier
