"""Model-only engine comparison: our TFLite engine (XNNPACK) against OpenVINO running the same flatbuffer.

OpenVINO reads TFLite models directly (its TFLite front end), so both run exactly the converted model the job
ships; the features must agree within 1e-4. One thread per engine, as each worker of the job runs, images decoded
beforehand (decode costs the same for both). OpenVINO is a bench-only package, installed outside the project::

    .venv/bin/python -m pip install --no-deps --target /work/bench-packages openvino==2026.4.1 openvino-telemetry
    PYTHONPATH=/work/bench-packages .venv/bin/python bench/engines.py [--images DIR] [--count 96] [--alpha 1.0]

or as rows of ``bench/featurize_bench.py --engines``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED_IMAGES = ROOT.parent / "shared" / "data" / "fruits-360-sample"


def decoded_images(folder: Path, count: int) -> np.ndarray:
    from fruitjob.decoding import decode_image

    every = sorted(folder.rglob("*.jpg"))
    files = every[:: max(1, len(every) // count)][:count]
    return np.stack([decode_image(p.read_bytes()) for p in files])


def rate(run, images: np.ndarray, batch: int, repeats: int = 3) -> float:
    run(images[:batch])  # first-call costs
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        for start in range(0, len(images), batch):
            run(images[start : start + batch])
        best = max(best, len(images) / (time.perf_counter() - started))
    return round(best, 1)


def openvino_engine(flatbuffer: bytes, workdir: Path, batch: int, precision: str = "f32"):
    import openvino as ov

    from fruitjob import conversion

    path = workdir / "model.tflite"
    path.write_bytes(flatbuffer)
    core = ov.Core()
    model = core.read_model(str(path))
    model.reshape([batch, 224, 224, 3])
    compiled = core.compile_model(
        model, "CPU", {"INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision}
    )
    request = compiled.create_infer_request()

    def run(images: np.ndarray) -> np.ndarray:
        return request.infer({0: conversion.preprocess(images)})[0].copy()

    return run


def compare(folder: Path, count: int = 96, alpha: float = 1.0) -> list[str]:
    """One line per batch size: our engine's rate, OpenVINO's in f32 and bf16, and how far their features are."""
    import tempfile

    from fruitjob.tflite_engine import tflite_engine, tflite_model
    from fruitjob.weights import _random_weights

    os.environ["FRUITFLOW_ENGINE_THREADS"] = "1"
    images = decoded_images(folder, count)
    weights = _random_weights(alpha, 0)
    flatbuffer = tflite_model(weights, "tflite")
    lines = ["engines, model only, 1 thread, %d images, alpha %s, random weights:" % (len(images), alpha)]
    with tempfile.TemporaryDirectory() as tmp:
        for batch in (1, 4):
            ours = tflite_engine(weights, batch, threads=1)
            usable = images[: len(images) // batch * batch]
            reference = ours(usable)
            base = rate(ours, usable, batch)
            line = ["  batch %d: tflite (XNNPACK) %.1f img/s" % (batch, base)]
            # f32 is the engine the job could take (features within 1e-4); bf16 is OpenVINO's default on CPUs with
            # AVX512_BF16 or AMX, shown for its speed only
            for precision in ("f32", "bf16"):
                vino = openvino_engine(flatbuffer, Path(tmp), batch, precision)
                got = np.concatenate([vino(usable[i : i + batch]) for i in range(0, len(usable), batch)])
                speed = rate(vino, usable, batch)
                line.append(
                    "openvino %s %.1f (x%.2f, max |diff| %.1e of features up to %.1f)"
                    % (precision, speed, speed / base, float(np.abs(got - reference).max()), float(reference.max()))
                )
            lines.append("; ".join(line))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=Path, default=SHARED_IMAGES)
    parser.add_argument("--count", type=int, default=96)
    parser.add_argument("--alpha", type=float, default=1.0)
    args = parser.parse_args(argv)
    if not args.images.is_dir():
        raise SystemExit("no images at %s: pass --images" % args.images)
    print("\n".join(compare(args.images, args.count, args.alpha)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
