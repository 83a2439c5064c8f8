"""How well the health stage finds what was planted: precision and recall per kind, against the issue's targets.

    .venv/bin/python bench/health_quality.py [--root /tmp/health-cases] [--weights random PATH ...] [--similarity-only]
        [--reference THRESHOLD]
        [--near-duplicate-threshold F] [--rebuild]

It builds the planted set (``bench/health_cases.py``) unless ``--root`` holds one, then for each weights (default:
``random`` and the real alpha 0.35 file in ../shared when present) runs our job as the flow runs it (spark-submit):
once over ``earlier/`` and once over ``batch/`` with ``--health-against`` the earlier output; it reads ``health/``,
writes ``health.html`` beside it, and prints per kind:

- near-duplicates (each transformation), exact copies, label conflicts, leaks: recall of the planted pairs, and the
  precision of the pairs found (a pair is right when both images come from one photo); target recall >= 0.95 at
  precision >= 0.95 for near-duplicates and conflicts;
- suspected mislabels and outliers: recall of the planted ones within the top ``2 x planted`` of the ranked table;
  target >= 0.8;
- pairs between different photos of one class (neighbouring turntable frames): how many the stage calls similar.
Results go to ``bench/results/health-quality-<time>.json`` too.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from datetime import datetime
from pathlib import Path

import health_cases
import health_reference
import pandas as pd

REAL_WEIGHTS = (
    health_cases.SOURCE.parent.parent / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
)
RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {
    "near_recall": ">= 0.95",
    "within_precision": ">= 0.95",
    "conflict_recall": ">= 0.95",
    "conflict_precision": ">= 0.95",
    "mislabel_recall_top2x": ">= 0.8",
    "outlier_recall_top2x": ">= 0.8",
}


def run_job(images: str, output: Path, weights: str, extra: list[str]) -> float:
    """Our job under spark-submit, as the local engine runs it; its wall time (s)."""
    from fruitjob.options import JobOptions
    from tasks.local.spark_submit import job_environment, spark_submit_command

    shutil.rmtree(output, ignore_errors=True)
    alpha = 0.35 if weights == "random" else None
    command = spark_submit_command(JobOptions(images=images, output=str(output), weights=weights, alpha=alpha))
    started = time.perf_counter()
    log = output.parent / f"{output.name}.log"
    with log.open("w") as sink:
        done = subprocess.run(command + extra, env=job_environment(), stdout=sink, stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(f"the job failed ({done.returncode}); its log: {log}")
    return time.perf_counter() - started


def _pair_key(first: str, second: str) -> frozenset:
    return frozenset((first, second))


def _recall(planted: list[frozenset], found: set[frozenset]) -> float | None:
    return sum(pair in found for pair in planted) / len(planted) if planted else None


def score(manifest: dict, output: Path) -> dict:
    """Precision and recall per kind of what ``output``'s health/ found against what was planted."""
    family = manifest["family"]
    pairs = pd.read_parquet(output / "health" / "pairs")
    outliers = pd.read_parquet(output / "health" / "outliers")
    mislabels = pd.read_parquet(output / "health" / "mislabels")
    same_photo = [family.get(a, a) == family.get(b, b) for a, b in zip(pairs["path"], pairs["other_path"], strict=True)]
    pairs = pairs.assign(right=same_photo)
    found = {_pair_key(a, b) for a, b in zip(pairs["path"], pairs["other_path"], strict=True)}
    within = pairs[~pairs["leak"].astype(bool)]
    result: dict = {
        "pairs_found": len(pairs),
        "within_precision": float(within["right"].mean()) if len(within) else None,
    }
    for kind in health_cases.TRANSFORMS:
        planted = [_pair_key(p["path"], p["other_path"]) for p in manifest["near"] if p["kind"] == kind]
        result[f"near_{kind}_recall"] = _recall(planted, found)
    near = [_pair_key(p["path"], p["other_path"]) for p in manifest["near"]]
    result["near_recall"] = _recall(near, found)
    exact = pairs[pairs["exact"].astype(bool)]
    result["exact_recall"] = _recall([_pair_key(p["path"], p["other_path"]) for p in manifest["exact"]], found)
    result["exact_precision"] = float(exact["right"].mean()) if len(exact) else None
    conflicts = pairs[pairs["conflict"].astype(bool)]
    planted_conflicts = [_pair_key(p["path"], p["other_path"]) for p in manifest["conflict"]]
    result["conflict_recall"] = _recall(
        planted_conflicts, {_pair_key(a, b) for a, b in zip(conflicts["path"], conflicts["other_path"], strict=True)}
    )
    result["conflict_precision"] = float(conflicts["right"].mean()) if len(conflicts) else None
    leaks = pairs[pairs["leak"].astype(bool)]
    result["leak_recall"] = _recall([_pair_key(p["path"], p["other_path"]) for p in manifest["leak"]], found)
    result["leak_precision"] = float(leaks["right"].mean()) if len(leaks) else None
    unplanted = within[~within["right"]]
    result["neighbour_pairs_same_label"] = int((unplanted["label"] == unplanted["other_label"]).sum())
    for kind, table in (("mislabel", mislabels), ("outlier", outliers)):
        planted = {p["path"] for p in manifest[kind]}
        top = set(table.sort_values("rank").head(2 * len(planted))["path"])
        result[f"{kind}_recall_top2x"] = len(planted & top) / len(planted) if planted else None
        result[f"{kind}_flagged"] = int(table["flagged"].astype(bool).sum())
        result[f"{kind}_flagged_right"] = int(table[table["flagged"].astype(bool)]["path"].isin(planted).sum())
    result["metrics_health"] = json.loads((output / "metrics.json").read_text()).get("health")
    return result


def similarity_study(manifest: dict, output: Path, thresholds=(0.85, 0.9, 0.93, 0.95, 0.97, 0.99)) -> dict:
    """What a cosine threshold on the features can tell, by exact search over ``features/`` (numpy, all pairs): the
    similarity of each planted kind, and per threshold the planted pairs above it against the pairs of different
    photos above it (neighbouring turntable frames, mostly). Needs no health stage."""
    import numpy as np

    frame = pd.read_parquet(output / "features", columns=["path", "label", "features"])
    vectors = np.stack(frame["features"]).astype(np.float64)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12
    similarity = vectors @ vectors.T
    index = {path: i for i, path in enumerate(frame["path"])}
    families = np.array([manifest["family"].get(path, path) for path in frame["path"]])
    upper = np.triu_indices(len(frame), 1)
    unrelated = similarity[upper][families[upper[0]] != families[upper[1]]]

    def of(pairs: list[dict]) -> np.ndarray:
        return np.array([similarity[index[p["path"]], index[p["other_path"]]] for p in pairs])

    kinds = {kind: of([p for p in manifest["near"] if p["kind"] == kind]) for kind in health_cases.TRANSFORMS}
    kinds["conflict"] = of(manifest["conflict"])
    study: dict = {k: {"min": float(v.min()), "median": float(np.median(v))} for k, v in kinds.items()}
    study["different_photos_top"] = [float(v) for v in np.sort(unrelated)[::-1][:5]]
    near = of(manifest["near"])
    study["thresholds"] = [
        {
            "threshold": t,
            "near_recall": float(np.mean(near >= t)),
            "conflict_recall": float(np.mean(kinds["conflict"] >= t)),
            "different_photo_pairs_above": int((unrelated >= t).sum()),
        }
        for t in thresholds
    ]
    return study


def write_page(output: Path) -> Path:
    from pyarrow import fs

    from tasks.health_page import write_page as write
    from tasks.health_tables import health_counts, read_health
    from tasks.validation import read_metrics

    local = fs.LocalFileSystem()
    metrics = read_metrics(local, str(output))
    write(local, str(output), read_health(local, str(output)), health_counts(metrics) or {})
    return output / "health.html"


def _line(name: str, value, target: str = "") -> str:
    shown = "-" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))
    return f"  {name:<34} {shown:>8}  {target}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/health-cases"))
    parser.add_argument("--weights", nargs="+", default=None)
    parser.add_argument("--near-duplicate-threshold", type=float, default=None)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument(
        "--similarity-only", action="store_true", help="no health stage: exact search over features/ (numpy)"
    )
    parser.add_argument(
        "--reference", type=float, metavar="THRESHOLD", help="score bench/health_reference.py's tables, not the stage's"
    )
    parser.add_argument("--no-health-flag", dest="health_flag", action="store_false", help="a job without --health")
    args = parser.parse_args(argv)
    if args.rebuild or not (args.root / "planted.json").exists():
        health_cases.main(["--root", str(args.root)])
    manifest = json.loads((args.root / "planted.json").read_text())
    weights = args.weights or ["random"] + ([str(REAL_WEIGHTS)] if REAL_WEIGHTS.exists() else [])
    threshold = (
        ["--near-duplicate-threshold", str(args.near_duplicate_threshold)] if args.near_duplicate_threshold else []
    )
    report = {"root": str(args.root), "images": manifest["images"], "runs": []}
    for weight in weights:
        name = "random" if weight == "random" else Path(weight).name
        if args.similarity_only:
            output = args.root / f"out-{name}-features"
            took = run_job(manifest["batch"], output, weight, ["--health", "off"] if args.health_flag else [])
            study = similarity_study(manifest, output)
            report["runs"].append({"weights": name, "seconds": [took], **study})
            print(f"weights {name}: {manifest['images']} images, job {took:.0f} s")
            print(json.dumps(study, indent=1))
            continue
        earlier, batch = args.root / f"out-{name}-earlier", args.root / f"out-{name}-batch"
        if args.reference:  # the job without its health stage, then the numpy reference over its features
            took_earlier = run_job(manifest["earlier"], earlier, weight, [])
            took = run_job(manifest["batch"], batch, weight, [])
            health_reference.reference(batch, [earlier], args.reference)
        else:
            took_earlier = run_job(manifest["earlier"], earlier, weight, threshold)
            took = run_job(manifest["batch"], batch, weight, threshold + ["--health-against", str(earlier)])
        found = score(manifest, batch)
        page = write_page(batch)
        report["runs"].append({"weights": name, "seconds": [took_earlier, took], "page": str(page), **found})
        print(f"weights {name}: {manifest['images']} images, job {took:.0f} s; page {page}")
        for key, value in found.items():
            if key != "metrics_health":
                target = TARGETS.get(key, "")
                print(_line(key, value, target))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"health-quality-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(report, indent=1))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
