"""Rows (p1)-(p3) of ``featurize_bench.py --peers``: what a user might run instead of our job, on the same images.

(p1) Spark's own recipe, ``pyspark.ml.functions.predict_batch_udf`` with the Keras model (spark-submit, the same
``local[N,2]`` master as our job); (p2) Ray Data ``map_batches`` with an actor pool; (p3) Daft, a ``daft.cls`` UDF
over ``from_glob_path``. (p2) and (p3) run our float TFLite engine, converted once here; all decode with
``fruitjob.decoding.decode_image``. Each runs in its own process (``bench/peer_runs.py``), sampled for the
peak RSS of its whole process tree.
Ray and Daft are the ``bench`` extra (pyproject.toml): a peer whose package is not importable is skipped with the
reason, and one that fails is reported, not fatal.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

from featurize_bench import ROOT, run_sampled, spark_env, spark_submit

RUNNER = ROOT / "bench" / "peer_runs.py"
PEERS = (
    ("p1", "spark", "pyspark.ml.functions", "Spark predict_batch_udf, Keras model.predict"),
    ("p2", "ray", "ray.data", "Ray Data map_batches, actor pool, our float TFLite engine"),
    ("p3", "daft", "daft", "Daft daft.cls UDF over from_glob_path, our float TFLite engine"),
)
INSTALL = {
    "ray": "pip install -e '.[bench]' (or pip install --target DIR ray[data]==2.60.0, then PYTHONPATH=DIR)",
    "daft": "pip install --no-deps --target DIR daft==0.7.26, then PYTHONPATH=DIR (it declares pyarrow<26: pyproject)",
}


def _importable(module: str) -> str | None:
    """None when ``module`` can be imported in this Python, else why not (and how to get it)."""
    try:
        if importlib.util.find_spec(module) is not None:
            return None
    except ImportError:
        pass
    how = INSTALL.get(module.split(".")[0], "")
    return "skipped: %s is not importable%s" % (module, "; " + how if how else "")


def converted_model(workdir: Path, alpha: float) -> Path:
    """The float flatbuffer our job runs for random weights at ``alpha`` (the cached conversion when there is one)."""
    from fruitjob.tflite_engine import tflite_model
    from fruitjob.weights import _random_weights

    path = workdir / "peer-model.tflite"
    path.write_bytes(tflite_model(_random_weights(alpha, 0)))
    return path


def peer_command(
    peer: str, images: Path, workdir: Path, master: str, alpha: float, model: Path | None, cores: int
) -> tuple[list[str], Path, Path]:
    """The command that runs ``peer`` on ``images`` (bench/peer_runs.py), its result JSON and its output folder."""
    result, output = workdir / ("peer-%s.json" % peer), workdir / ("peer-%s-out" % peer)
    arguments = [peer, "--images", str(images), "--output", str(output), "--result", str(result)]
    arguments += ["--alpha", str(alpha), "--workers", str(cores)]
    if peer == "spark":
        return spark_submit(master) + [str(RUNNER), *arguments, "--batch-size", "32"], result, output
    return [sys.executable, str(RUNNER), *arguments, "--model", str(model)], result, output


def measure_peer(
    peer: str, images: Path, workdir: Path, master: str, alpha: float, model: Path | None, cores: int
) -> dict:
    command, result, output = peer_command(peer, images, workdir, master, alpha, model, cores)
    shutil.rmtree(output, ignore_errors=True)
    try:
        sampled = run_sampled(command, spark_env(), workdir / ("peer-%s.log" % peer))
    except SystemExit as exc:  # run_sampled's failure: the command and the log's tail
        return {"failed": str(exc).strip().splitlines()[-1][:300]}
    return dict(sampled, **json.loads(result.read_text()))


def measure_peers(images: Path, workdir: Path, master: str, alpha: float, cores: int) -> dict:
    rows: dict = {}
    model = None
    for key, peer, module, _ in PEERS:
        reason = _importable(module)
        if reason:
            rows[key] = {"skipped": reason}
        else:
            if peer != "spark" and model is None:
                model = converted_model(workdir, alpha)
            rows[key] = dict(measure_peer(peer, images, workdir, master, alpha, model, cores), peer=peer)
        print("(%s) %s: %s" % (key, peer, rows[key]), flush=True)
    return rows


def peer_lines(results: dict) -> list[str]:
    """Report lines: images/s of each peer's featurization, and ours / theirs."""
    peers, c = results.get("peers"), results["job"]
    if not peers:
        return []
    ours = c["images"] / c["durations_s"]["featurize"]
    lines = ["peers, same images, images/s (read -> features written; ours = (c) %.1f):" % ours]
    for key, _, _, title in PEERS:
        row = peers.get(key) or {"skipped": "skipped: not run"}
        if "skipped" in row or "failed" in row:
            lines.append("  (%s) %s: %s" % (key, title, row.get("skipped") or "failed: " + row["failed"]))
            continue
        rate = row["images"] / row["featurize_s"]
        lines.append(
            "  (%s) %s: %.1f  (%.1f s; process %.1f s wall, process tree peak RSS %.0f MB); ours/%s = %.2f"
            % (key, title, rate, row["featurize_s"], row["wall_s"], row["tree_peak_rss_mb"], key, ours / rate)
        )
    return lines
