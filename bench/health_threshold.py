"""Where to put the near-duplicate threshold: copies of a photo versus neighbouring turntable frames (issue 22).

One command::

    .venv/bin/python bench/health_threshold.py [--classes 60] [--alpha 0.35]

From ../shared/data/fruits-360-sample, for each of ``--classes`` classes: two neighbouring frames (the sample's
consecutive ones, ~15 turntable frames apart, and the next two) and seven copies of the first frame (JPEG re-encoded at
quality 50 and 75, resized to 50% and 75%, cropped 5% and 10%, brightened 20%). The job (real Spark, the ImageNet
weights from ../shared/weights at ``--alpha``) featurizes them all; then, with the L2-normalised features:

- copies: the cosine of each copy with its original (the near-duplicates the stage must find);
- frames: the cosine of each frame with the nearest other frame of its class (what must not be flagged);

and, for each candidate threshold, recall on the copies, precision among all pairs at or above it (every pair of
images that are not copy/original counts as a false positive), and the share of frames flagged. Also the health
stage's own outlier scores and mislabel confidences on the originals. JSON in bench/results/ (git-ignored).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
PERTURBATIONS = ("jpeg50", "jpeg75", "resize50", "resize75", "crop5", "crop10", "bright20")


def perturbed(source: Path, kind: str) -> bytes:
    from PIL import Image, ImageEnhance

    image = Image.open(source).convert("RGB")
    w, h = image.size
    quality = 95
    if kind.startswith("jpeg"):
        quality = int(kind[4:])
    elif kind.startswith("resize"):
        image = image.resize((w * int(kind[6:]) // 100, h * int(kind[6:]) // 100), Image.BILINEAR)
    elif kind.startswith("crop"):
        m = int(round(w * int(kind[4:]) / 200.0))
        image = image.crop((m, m, w - m, h - m))
    elif kind == "bright20":
        image = ImageEnhance.Brightness(image).enhance(1.2)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def frame_number(path: Path) -> int:
    return int(path.name.split("_")[-2])


def build(root: Path, classes: int) -> None:
    source = SHARED / "data" / "fruits-360-sample"
    folders = sorted(p for p in source.iterdir() if p.is_dir())
    for folder in folders[:: max(1, len(folders) // classes)][:classes]:
        photos = sorted((p for p in folder.iterdir() if not p.name.startswith("r")), key=frame_number)
        if len(photos) < 4:
            photos = sorted(folder.iterdir(), key=frame_number)
        target = root / folder.name
        target.mkdir(parents=True)
        for photo in photos[:4]:
            (target / ("frame_" + photo.name)).write_bytes(photo.read_bytes())
        for kind in PERTURBATIONS:
            (target / ("copy_%s_of_%s" % (kind, photos[0].name))).write_bytes(perturbed(photos[0], kind))


def perceptual_hashes(paths) -> np.ndarray:
    """64-bit DCT hashes (pHash) of the images as the job decodes them: 224x224 RGB -> grey 32x32 -> the 8x8 lowest
    frequencies of its DCT (the constant one dropped for the 64th) against their median."""
    from PIL import Image

    from fruitjob.decoding import decode_image

    n = 32
    k = np.arange(n)
    dct = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n))  # DCT-II basis, rows = frequencies
    bits = []
    for path in paths:
        grey = Image.fromarray(decode_image(Path(path).read_bytes())).convert("L").resize((n, n), Image.BILINEAR)
        low = (dct @ np.asarray(grey, dtype=np.float64) @ dct.T)[:8, :8].ravel()
        low = np.concatenate([low[1:], low[:1]])  # the DC term last
        bits.append(low > np.median(low[:63]))
    return np.asarray(bits)


def evaluate(sims: np.ndarray, labels, names, thresholds) -> dict:
    """Copies against their original, frames against their nearest frame, recall/precision per threshold."""
    index = {(label, name): i for i, (label, name) in enumerate(zip(labels, names, strict=True))}
    copies, frames, truth = [], [], set()
    for i, (label, name) in enumerate(zip(labels, names, strict=True)):
        if name.startswith("copy_"):
            original = index[(label, "frame_" + name.split("_of_", 1)[1])]
            copies.append({"kind": name.split("_")[1], "similarity": float(sims[i, original])})
            truth.add((min(i, original), max(i, original)))
    for label in sorted(set(labels)):
        rows = [i for i, n in enumerate(names) if labels[i] == label and n.startswith("frame_")]
        for i in rows:
            frames.append(float(max(sims[i, j] for j in rows if j != i)))
    upper = np.triu_indices(len(sims), k=1)
    all_sims = sims[upper]
    is_copy = np.asarray([(a, b) in truth for a, b in zip(*upper, strict=True)])
    table = []
    for threshold in thresholds:
        found = all_sims >= threshold - 1e-9
        recall = float((found & is_copy).sum() / max(1, is_copy.sum()))
        precision = float((found & is_copy).sum() / max(1, found.sum()))
        flagged_frames = float(np.mean(np.asarray(frames) >= threshold - 1e-9))
        table.append(
            {"threshold": threshold, "recall": recall, "precision": precision, "frames_flagged": flagged_frames}
        )
    by_kind = {}
    for row in copies:
        by_kind.setdefault(row["kind"], []).append(row["similarity"])
    return {
        "images": len(sims),
        "copies": {k: {"min": min(v), "median": float(np.median(v))} for k, v in sorted(by_kind.items())},
        "frames_nearest": {
            "median": float(np.median(frames)),
            "p95": float(np.percentile(frames, 95)),
            "max": float(np.max(frames)),
        },
        "table": table,
    }


FEATURE_THRESHOLDS = (0.80, 0.85, 0.88, 0.90, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98)


def measure(output: Path) -> dict:
    """The job's features: cosine of the L2-normalised vectors."""
    import pandas as pd

    features = pd.read_parquet(output / "features")
    x = np.stack(features["features"].to_numpy()).astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    names = features["path"].str.rsplit("/", n=1).str[-1].to_numpy()
    return evaluate(x @ x.T, features["label"].to_numpy(), names, FEATURE_THRESHOLDS)


PIXEL_SIDE, PIXEL_SHIFT, PIXEL_CROPS = 48, 2, (0.0, 0.04, 0.08, 0.12)


def _gaussian(image: np.ndarray, sigma: float) -> np.ndarray:
    radius = int(3 * sigma + 0.5)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(image, radius, mode="edge")
    padded = np.apply_along_axis(lambda v: np.convolve(v, kernel, "valid"), 0, padded)
    return np.apply_along_axis(lambda v: np.convolve(v, kernel, "valid"), 1, padded)


def _band_passed(path: Path, crop: float) -> np.ndarray:
    """The image as the job decodes it, centre-cropped by ``crop``, grey at PIXEL_SIDE square, band-passed (a
    difference of Gaussians: brightness and the finest JPEG noise left out)."""
    from PIL import Image

    from fruitjob.decoding import decode_image

    image = Image.fromarray(decode_image(path.read_bytes())).convert("L")
    w, h = image.size
    dx, dy = int(round(w * crop / 2)), int(round(h * crop / 2))
    grey = np.asarray(image.crop((dx, dy, w - dx, h - dy)).resize((PIXEL_SIDE,) * 2, Image.BOX), dtype=np.float64)
    return _gaussian(grey, 1.0) - _gaussian(grey, 4.0)


def aligned_pixel_similarities(paths) -> np.ndarray:
    """The most an image's band-passed pixels correlate with another's over centre crops (PIXEL_CROPS, either side)
    and shifts of up to PIXEL_SHIFT pixels: a copy, re-encoded, resized, cropped or brightened, lines up with its
    original pixel for pixel; another frame of a turning fruit should not."""
    side, shift = PIXEL_SIDE, PIXEL_SHIFT
    crops = {crop: np.stack([_band_passed(Path(p), crop) for p in paths]) for crop in PIXEL_CROPS}

    def window(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
        flat = images[:, shift + dy : side - shift + dy, shift + dx : side - shift + dx].reshape(len(images), -1)
        flat = flat - flat.mean(axis=1, keepdims=True)
        return flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-9)

    centre = window(crops[0.0], 0, 0)
    best = np.full((len(paths), len(paths)), -1.0)
    for crop in PIXEL_CROPS:
        for dy in range(-shift, shift + 1):
            for dx in range(-shift, shift + 1):
                product = centre @ window(crops[crop], dy, dx).T
                best = np.maximum(best, np.maximum(product, product.T))
    return best


def measure_pixels(images: Path) -> dict:
    """The same images by :func:`aligned_pixel_similarities` (no Spark)."""
    paths = sorted(p for p in images.rglob("*") if p.is_file())
    thresholds = (0.80, 0.85, 0.90, 0.93, 0.95, 0.97, 0.98, 0.99)
    return evaluate(
        aligned_pixel_similarities(paths), [p.parent.name for p in paths], [p.name for p in paths], thresholds
    )


def measure_phash(images: Path) -> dict:
    """The same images by pHash: similarity 1 - Hamming distance / 64 (threshold 1 - d/64: at most d bits differ)."""
    paths = sorted(p for p in images.rglob("*") if p.is_file())
    bits = perceptual_hashes(paths).astype(np.int64)
    hamming = bits @ (1 - bits).T + (1 - bits) @ bits.T
    thresholds = [1 - d / 64.0 for d in (2, 4, 6, 8, 10, 12, 14, 16)]
    return evaluate(1 - hamming / 64.0, [p.parent.name for p in paths], [p.name for p in paths], thresholds)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--classes", type=int, default=60)
    parser.add_argument("--alpha", default="0.35")
    parser.add_argument("--keep-features", action="store_true", help="copy features/ into bench/results/")
    parser.add_argument("--phash-only", action="store_true", help="only the perceptual hash (no Spark, seconds)")
    parser.add_argument("--pixels-only", action="store_true", help="only the aligned pixels (no Spark, a minute)")
    args = parser.parse_args(argv)
    if args.phash_only or args.pixels_only:
        name, measure_images = ("pixels", measure_pixels) if args.pixels_only else ("phash", measure_phash)
        with tempfile.TemporaryDirectory() as tmp:
            build(Path(tmp), args.classes)
            result = measure_images(Path(tmp))
        print(json.dumps(result, indent=1))
        (REPO / "bench" / "results").mkdir(exist_ok=True)
        (REPO / "bench" / "results" / ("health_threshold_%s.json" % name)).write_text(json.dumps(result, indent=1))
        return 0
    from pyspark.sql import SparkSession

    from fruitjob.job import run
    from fruitjob.options import parse_options

    weights = SHARED / "weights" / ("mobilenet_v2_weights_tf_dim_ordering_tf_kernels_%s_224_no_top.h5" % args.alpha)
    spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    with tempfile.TemporaryDirectory() as tmp:
        images, output = Path(tmp) / "images", Path(tmp) / "output"
        build(images, args.classes)
        started = time.monotonic()
        metrics = run(
            spark, parse_options(["--images", str(images), "--output", str(output), "--weights", str(weights)])
        )
        result = measure(output)
        if args.keep_features:  # to try other similarities on the same vectors
            kept = REPO / "bench" / "results" / ("health_threshold_features_%s" % args.alpha)
            shutil.rmtree(kept, ignore_errors=True)
            shutil.copytree(output / "features", kept)
        result.update(
            alpha=args.alpha, job_seconds=round(time.monotonic() - started, 1), health=metrics.to_dict()["health"]
        )
    spark.stop()
    print(json.dumps({k: v for k, v in result.items() if k != "health"}, indent=1))
    print("health:", json.dumps({k: v for k, v in result["health"].items() if k != "per_class"}))
    results = REPO / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / ("health_threshold_%s.json" % args.alpha)).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
