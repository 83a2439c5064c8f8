"""An exact-search reference of ``health/`` in numpy, for a finished output of the job: a yardstick for the health
stage (its pairs against all pairs), and a way to look at health.html and the artifacts on any output.

    .venv/bin/python bench/health_reference.py OUTPUT [--against EARLIER ...] [--threshold 0.9] [--page]

It reads ``features/`` (and the earlier outputs'), compares every pair (fine up to some 20k images), and writes
``health/pairs``, ``health/outliers``, ``health/mislabels`` and ``health`` in metrics.json as the job does
(docs/dataset-health.md), method ``reference-exact``. Outlier score: cosine distance to the nearest class centroid,
divided by the median of that distance over all images; flagged above 2. Suspected mislabel: the nearest centroid
(the image's own class without it) is another class; confidence = how much closer it is (0..1); flagged above 0.5.
With ``--page`` it writes health.html beside it (tasks/health_page.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fruitjob.rules import local_path, to_uri


def _unit(frame: pd.DataFrame) -> np.ndarray:
    vectors = np.stack(frame["features"]).astype(np.float64)
    return vectors / (np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12)


def _read(output: Path) -> pd.DataFrame:
    columns = ["path", "label", "features", "sha256"]
    schema = pq.read_schema(next((output / "features").glob("*.parquet")))
    frame = pd.read_parquet(output / "features", columns=[c for c in columns if c in schema.names])
    if "sha256" not in frame:  # a job from before the health stage: hash the (local) files here
        frame["sha256"] = [hashlib.sha256(Path(local_path(p)).read_bytes()).hexdigest() for p in frame["path"]]
    return frame


def _pairs(mine: pd.DataFrame, other: pd.DataFrame, other_uri: str, threshold: float, within: bool) -> list[dict]:
    similarity = _unit(mine) @ _unit(other).T
    rows, cols = np.nonzero(similarity >= threshold)
    hashes = other["sha256"] if "sha256" in other else pd.Series([None] * len(other))
    mine_hashes = mine["sha256"] if "sha256" in mine else pd.Series([None] * len(mine))
    found = []
    for i, j in zip(rows, cols, strict=True):
        if within and mine["path"].iat[i] >= other["path"].iat[j]:
            continue
        exact = mine_hashes.iat[i] is not None and mine_hashes.iat[i] == hashes.iat[j]
        found.append(
            {
                "path": mine["path"].iat[i],
                "label": mine["label"].iat[i],
                "other_path": other["path"].iat[j],
                "other_label": other["label"].iat[j],
                "other_output": other_uri,
                "similarity": 1.0 if exact else float(similarity[i, j]),
                "exact": bool(exact),
                "conflict": bool(mine["label"].iat[i] != other["label"].iat[j]),
                "leak": not within,
            }
        )
    return found


def _write(path: Path, rows: list[dict] | pd.DataFrame, columns: list[str]) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    frame = pd.DataFrame(rows, columns=columns)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path / "part-00000.parquet")


def reference(output: Path, against: list[Path], threshold: float) -> dict:
    """Write the reference health/ into ``output`` and its counts into metrics.json; returns the counts."""
    mine = _read(output)
    me = to_uri(str(output))
    pairs = _pairs(mine, mine, me, threshold, within=True)
    for earlier in against:
        pairs += _pairs(mine, _read(earlier), to_uri(str(earlier)), threshold, within=False)
    vectors, labels = _unit(mine), mine["label"].to_numpy()
    classes = np.unique(labels)
    sums = np.stack([vectors[labels == c].sum(axis=0) for c in classes])
    sizes = np.array([(labels == c).sum() for c in classes], dtype=float)
    own = np.searchsorted(classes, labels)
    centroids = np.repeat((sums / sizes[:, None])[None], len(mine), axis=0)
    alone = (sums[own] - vectors) / np.maximum(sizes[own] - 1, 1)[:, None]  # leave the image out of its own class
    centroids[np.arange(len(mine)), own] = alone
    centroids /= np.linalg.norm(centroids, axis=2, keepdims=True) + 1e-12
    distance = 1 - np.einsum("nd,ncd->nc", vectors, centroids)
    nearest = distance.argmin(axis=1)
    score = distance.min(axis=1) / (np.median(distance.min(axis=1)) + 1e-12)
    outliers = pd.DataFrame(
        {"path": mine["path"], "label": labels, "score": score, "nearest_label": classes[nearest]}
    ).assign(flagged=lambda t: t["score"] > 2.0)
    outliers = outliers.sort_values("score", ascending=False).assign(rank=np.arange(1, len(mine) + 1))
    margin = distance[np.arange(len(mine)), own] - distance.min(axis=1)
    confidence = np.clip(margin / (distance[np.arange(len(mine)), own] + 1e-12), 0, 1)
    wrong = nearest != own
    mislabels = pd.DataFrame(
        {
            "path": mine["path"][wrong],
            "label": labels[wrong],
            "resembles": classes[nearest[wrong]],
            "confidence": confidence[wrong],
        }
    ).sort_values("confidence", ascending=False)
    mislabels = mislabels.assign(rank=np.arange(1, len(mislabels) + 1), flagged=lambda t: t["confidence"] > 0.5)
    _write(output / "health" / "pairs", pairs, list(pairs[0]) if pairs else ["path"])
    _write(output / "health" / "outliers", outliers, list(outliers.columns))
    _write(output / "health" / "mislabels", mislabels, list(mislabels.columns))
    table = pd.DataFrame(pairs)
    counts = {
        "enabled": True,
        "method": "reference-exact",
        "near_duplicate_threshold": threshold,
        "exact_duplicate_pairs": int(table["exact"].sum()) if len(table) else 0,
        "near_duplicate_pairs": int((~table["exact"]).sum()) if len(table) else 0,
        "label_conflicts": int(table["conflict"].sum()) if len(table) else 0,
        "leaks": int(table["leak"].sum()) if len(table) else 0,
        "outliers": int(outliers["flagged"].sum()),
        "suspected_mislabels": int(mislabels["flagged"].sum()),
        "compared_with": [to_uri(str(earlier)) for earlier in against],
        "seconds": 0.0,
        "per_class": [
            {
                "label": label,
                "duplicates": int(((table["label"] == label) & ~table["leak"]).sum()) if len(table) else 0,
                "conflicts": int(((table["label"] == label) & table["conflict"]).sum()) if len(table) else 0,
                "leaks": int(((table["label"] == label) & table["leak"]).sum()) if len(table) else 0,
                "outliers": int(outliers[outliers["label"] == label]["flagged"].sum()),
                "suspected_mislabels": int(mislabels[mislabels["label"] == label]["flagged"].sum()),
            }
            for label in classes
        ],
    }
    metrics = json.loads((output / "metrics.json").read_text())
    metrics["health"] = counts
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--against", type=Path, nargs="*", default=[])
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--page", action="store_true")
    args = parser.parse_args(argv)
    counts = reference(args.output, args.against, args.threshold)
    print({k: v for k, v in counts.items() if k != "per_class"})
    if args.page:
        from health_quality import write_page

        print("page:", write_page(args.output))


if __name__ == "__main__":
    main()
