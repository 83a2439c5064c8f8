"""Featurization speed on this machine: the usual approach, our best single-process loop, and our job.

One command, the same images for every row::

    .venv/bin/python bench/featurize_bench.py [--images DIR] [--limit N] [--alpha 1.0] [--featurizer tflite]

Rows (images/s of the featurization stage: image files read -> features written):
  (a) reference: Keras ``predict`` in an iterator pandas UDF, model built per task, Spark defaults
      (``bench/reference_udf.py`` under spark-submit, ``local[N]``);
  (b) the best single-process loop without Spark (read, decode, our engine), on all cores;
  (c) our job exactly as the flow runs it (``tasks.local.spark_submit``'s spark-submit command and environment).
  (d) the same job with ``--featurizer tflite-int8`` (full-integer model; its conversion in the weights stage).
(c) runs a second time with the converted model cached, as a rerun (or a cluster given the flow's model) finds it:
its weights stage and the peak RSS of its processes show the job without TensorFlow.
It also prints c/a, c/b, d/c, the peak RSS of any Python worker, Spark's fixed start-up cost (a spark-submit
that runs a one-row job) and the whole job with PCA. Results go to ``bench/results/<time>.json`` too.
Default images: ``../shared/data/fruits-360-sample`` when present, else generated ones; random weights
(the cost does not depend on the weight values).

``--peers`` adds rows (p1)-(p3) in the same run, ours / each: Spark's ``predict_batch_udf`` with Keras, Ray Data
and Daft with our engine (``bench/peers.py``; Ray and Daft from the ``bench`` extra, skipped when not importable).
``--scale [N,N,...]`` runs only the growth table instead: our job at about 1k, 4k and 16k images (``bench/scale.py``).
Rows run one after another here, so a change of load between them skews each ratio: for ours against the peers on a
shared machine, the whole process included, use the interleaved pairs of ``bench/paired.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import memory

ROOT = Path(__file__).resolve().parent.parent

SHARED_IMAGES = ROOT.parent / "shared" / "data" / "fruits-360-sample"
RESULTS = Path(__file__).resolve().parent / "results"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def prepare_images(source: Path | None, limit: int | None, workdir: Path) -> tuple[Path, int, str]:
    """The folder every row reads: the source itself, its first ``limit`` images copied, or generated ones."""
    if source is None and SHARED_IMAGES.is_dir():
        source = SHARED_IMAGES
    if source is None:
        from tasks.local.sample_images import SAMPLE_CLASSES, make_sample_images

        count = limit or 2000
        folder = make_sample_images(workdir / "images", per_class=-(-count // len(SAMPLE_CLASSES)))
        return folder, _count(folder), "generated (tasks/local/sample_images.py)"
    files = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if limit is None or limit >= len(files):
        return source, len(files), str(source)
    # Every 'step'-th file, so that a subset still spans the classes.
    step = len(files) / limit
    folder = workdir / "images"
    for index in range(limit):
        path = files[int(index * step)]
        target = folder / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return folder, limit, "%s (%d of %d)" % (source, limit, len(files))


def _count(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def spark_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable, TF_CPP_MIN_LOG_LEVEL="2")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def run_sampled(command: list[str], env: dict[str, str], log: Path) -> dict:
    """Run a command with its output in ``log``; wall time and peak RSS of its processes (bench/memory.py)."""
    return memory.run_sampled(command, env, log, ROOT)


def spark_submit(master: str) -> list[str]:
    import pyspark

    return [str(Path(pyspark.__file__).parent / "bin" / "spark-submit"), "--master", master]


def measure_startup(workdir: Path, master: str) -> dict:
    result = workdir / "startup.json"
    command = spark_submit(master) + [
        str(ROOT / "bench" / "reference_udf.py"),
        "--startup-only",
        "--result",
        str(result),
    ]
    sampled = run_sampled(command, spark_env(), workdir / "startup.log")
    return dict(sampled, **json.loads(result.read_text()))


def measure_reference(images: Path, workdir: Path, master: str, alpha: float) -> dict:
    result = workdir / "reference.json"
    command = spark_submit(master) + [
        str(ROOT / "bench" / "reference_udf.py"),
        "--images",
        str(images),
        "--output",
        str(workdir / "reference-out"),
        "--result",
        str(result),
        "--alpha",
        str(alpha),
    ]
    sampled = run_sampled(command, spark_env(), workdir / "reference.log")
    return dict(sampled, **json.loads(result.read_text()))


def measure_job(
    images: Path,
    workdir: Path,
    alpha: float,
    featurizer: str,
    batch_size: int | None,
    reader: str = "auto",
    cached: bool = False,
) -> dict:
    """Our job, with the flow's own spark-submit command and environment (tasks/local/spark_submit.py).

    ``reader``: ``auto`` (local files read by the Python workers) or ``binaryfile`` (Spark's reader, as on S3).
    ``cached``: keep the converted model of an earlier run (else the weights stage pays the conversion).
    """
    from fruitjob.options import JobOptions
    from fruitjob.tflite_engine import clear_cache

    spec = JobOptions(
        images=str(images),
        output=str(workdir / "job-out"),
        weights="random",
        alpha=alpha,
        featurizer=featurizer,
        batch_size=batch_size or JobOptions.batch_size,
        reader=reader,
    )
    if not cached:
        clear_cache()  # the conversion is then paid, as on a fresh cluster, and shows in the weights stage
    shutil.rmtree(workdir / "job-out", ignore_errors=True)
    return run_job(spec, workdir / ("job-%s-%s%s.log" % (featurizer, reader, "-cached" if cached else "")))


def run_job(spec, log: Path) -> dict:
    """Our job as ``spec`` (``JobOptions``) says, by the flow's own spark-submit command and environment
    (tasks/local/spark_submit.py), its output in ``log``: wall time and peak memory (``run_sampled``), the master,
    and the figures of the run's metrics.json."""
    from tasks.local.spark_submit import job_environment, spark_submit_command

    command = spark_submit_command(spec)
    sampled = run_sampled(command, job_environment(), log)
    metrics = json.loads((Path(spec.output) / "metrics.json").read_text())
    return dict(
        sampled,
        master=command[command.index("--master") + 1],
        images=metrics["images_ok"],
        durations_s=metrics["durations_s"],
        partitions=metrics["partitions"],
        batch_size=metrics["batch_size"],
        featurizer=metrics["featurizer"],
        reader=metrics.get("reader", spec.reader),
    )


def measure_loop(images: Path, alpha: float, featurizer: str, batch_size: int | None, cores: int) -> dict:
    """Best of: one engine using every core, and one thread per core each with a one-thread engine."""
    import numpy as np

    from fruitjob.decoding import decode_image
    from fruitjob.options import JobOptions
    from fruitjob.rules import TFLITE_FEATURIZERS
    from fruitjob.tflite_engine import tflite_engine
    from fruitjob.weights import _random_weights

    batch = batch_size or JobOptions.batch_size
    files = sorted(p for p in images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    weights = _random_weights(alpha, 0)

    def make_engine(threads: int):
        os.environ["FRUITFLOW_ENGINE_THREADS"] = str(threads)
        if featurizer in TFLITE_FEATURIZERS:
            return tflite_engine(weights, batch, threads=threads, featurizer=featurizer)
        from fruitjob.featurizer import _keras_engine

        return _keras_engine(weights, batch)

    def loop(engine, paths: list[Path]) -> None:
        for start in range(0, len(paths), batch):
            chunk = [decode_image(p.read_bytes()) for p in paths[start : start + batch]]
            engine(np.stack(chunk))

    rates = {}
    variants = [("1 thread x %d engine threads" % cores, 1, cores)]
    if featurizer in TFLITE_FEATURIZERS and cores > 1:  # Keras' threads are per process: one variant only
        variants.append(("%d threads x 1 engine thread" % cores, cores, 1))
    for name, workers, threads in variants:
        engines = [make_engine(threads) for _ in range(workers)]
        for engine in engines:
            loop(engine, files[: batch * 2])  # warm-up: allocation, first-call costs
        shards = [files[i::workers] for i in range(workers)]
        started = time.monotonic()
        pool = [threading.Thread(target=loop, args=(e, s)) for e, s in zip(engines, shards, strict=True)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        rates[name] = round(len(files) / (time.monotonic() - started), 1)
    best = max(rates, key=rates.get)
    return {"images": len(files), "variants": rates, "best": best, "images_per_s": rates[best]}


def report(results: dict) -> str:
    a, b, c, s = results["reference"], results["loop"], results["job"], results["startup"]
    d = c["durations_s"]
    rate_a = a["images"] / a["featurize_s"] if a else None
    rate_c = c["images"] / d["featurize"]
    lines = [
        "CPU: %s, %d cores; images: %s (%d)" % (results["cpu"], results["cores"], results["source"], c["images"]),
        "featurize stage, images/s:",
    ]
    if a:
        lines.append(
            "  (a) reference, Keras predict in a pandas UDF, Spark defaults %s: %.1f  (%.1f s, %d partitions)"
            % (a.get("master", ""), rate_a, a["featurize_s"], a["partitions"])
        )
    else:
        lines.append("  (a) reference: skipped")
    lines.append(
        "  (b) single process, %s, %s: %.1f  %s" % (c["featurizer"], b["best"], b["images_per_s"], b["variants"])
    )
    lines.append(
        "  (c) our job, %s, %s, batch %d, %d partitions: %.1f  (%.1f s)"
        % (c["featurizer"], c["master"], c["batch_size"], c["partitions"], rate_c, d["featurize"])
    )
    if results.get("job_binaryfile"):
        e = results["job_binaryfile"]
        rate_e = e["images"] / e["durations_s"]["featurize"]
        lines.append(
            "  (c') our job, Spark's binaryFile reader (as on S3): %.1f  (%.1f s); c/c' = %.2f"
            % (rate_e, e["durations_s"]["featurize"], rate_c / rate_e)
        )
    if results.get("job_int8"):
        q = results["job_int8"]
        rate_q = q["images"] / q["durations_s"]["featurize"]
        lines.append(
            "  (d) our job, tflite-int8 (full-integer, calibrated on a fixed set), same settings: %.1f  (%.1f s); "
            "d/c = %.2f (target >= 2)" % (rate_q, q["durations_s"]["featurize"], rate_q / rate_c)
        )
    if a:
        lines.append(
            "ratios: c/a = %.2f (target >= 5), c/b = %.2f (target >= 0.95)"
            % (rate_c / rate_a, rate_c / b["images_per_s"])
        )
    else:
        lines.append("ratios: c/b = %.2f (target >= 0.95)" % (rate_c / b["images_per_s"]))
    lines += [
        "peak RSS of a Python worker: job %.0f MB (%d workers)%s; job driver %.0f MB"
        % (
            c["worker_peak_rss_mb"],
            c["workers_seen"],
            ", reference %.0f MB" % a["worker_peak_rss_mb"] if a else "",
            c["driver_peak_rss_mb"],
        ),
        *_cached_lines(results),
        *_peer_lines(results),
        *results.get("engines", []),
        "Spark fixed start-up (spark-submit, session, one-row job, stop): %.1f s" % s["wall_s"],
        "our whole job: %.1f s wall (stages %s; the rest is JVM/Python start-up and shutdown)"
        % (c["wall_s"], ", ".join("%s %.1f" % kv for kv in d.items())),
    ]
    return "\n".join(lines)


def _cached_lines(results: dict) -> list[str]:
    """(c) again with the converted model cached: what a rerun (or a model the flow shipped) costs."""
    k, c = results.get("job_cached"), results["job"]
    if not k:
        return []
    return [
        "with the model cached (no TensorFlow in the job): weights stage %.1f s (%.1f s converting); "
        "peak RSS of a Python worker %.0f MB, driver %.0f MB"
        % (k["durations_s"]["weights"], c["durations_s"]["weights"], k["worker_peak_rss_mb"], k["driver_peak_rss_mb"])
    ]


def _peer_lines(results: dict) -> list[str]:
    if not results.get("peers"):
        return []
    from peers import peer_lines

    return peer_lines(results)


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return "unknown"


def main(argv: list[str] | None = None) -> int:
    from fruitjob.options import JobOptions
    from fruitjob.rules import FEATURIZERS

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=Path, default=None, help="default: ../shared sample, else generated")
    parser.add_argument("--limit", type=int, default=None, help="use this many images (spread over the classes)")
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--featurizer", choices=FEATURIZERS, default=JobOptions.featurizer)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the job's default")
    parser.add_argument("--skip-reference", action="store_true", help="leave out (a), the slowest row")
    parser.add_argument("--skip-int8", action="store_true", help="leave out (d), the job with --featurizer tflite-int8")
    parser.add_argument(
        "--compare-readers", action="store_true", help="also run (c) with Spark's binaryFile reader (as on S3)"
    )
    parser.add_argument(
        "--engines", action="store_true", help="add the engines tried: OpenVINO on our model (bench/engines.py)"
    )
    parser.add_argument("--peers", action="store_true", help="add (p1)-(p3): predict_batch_udf, Ray Data, Daft")
    parser.add_argument(
        "--scale", nargs="?", const="1000,4000,16000", metavar="N,N,...", help="only the growth run, at these sizes"
    )
    args = parser.parse_args(argv)
    if args.scale:
        from scale import main_scale

        return main_scale(args)

    cores = os.cpu_count() or 1
    master = "local[%d]" % cores
    with tempfile.TemporaryDirectory(prefix="fruitflow-bench-") as tmp:
        workdir = Path(tmp)
        images, count, source = prepare_images(args.images, args.limit, workdir)
        print("bench on %d images from %s; alpha %s, random weights" % (count, source, args.alpha), flush=True)
        results: dict = {"cpu": cpu_model(), "cores": cores, "source": source, "alpha": args.alpha}
        results["startup"] = measure_startup(workdir, master)
        print("startup: %.1f s" % results["startup"]["wall_s"], flush=True)
        results["job"] = measure_job(images, workdir, args.alpha, args.featurizer, args.batch_size)
        print("(c) job: %s" % results["job"]["durations_s"], flush=True)
        if args.featurizer != "keras":
            results["job_cached"] = measure_job(
                images, workdir, args.alpha, args.featurizer, args.batch_size, cached=True
            )
            print("(c) again, model cached: %s" % results["job_cached"]["durations_s"], flush=True)
        if not args.skip_int8 and args.featurizer == "tflite":
            results["job_int8"] = measure_job(images, workdir, args.alpha, "tflite-int8", args.batch_size)
            print("(d) job, tflite-int8: %s" % results["job_int8"]["durations_s"], flush=True)
        if args.compare_readers:
            results["job_binaryfile"] = measure_job(
                images, workdir, args.alpha, args.featurizer, args.batch_size, "binaryfile"
            )
            print("(c') job, binaryFile reader: %s" % results["job_binaryfile"]["durations_s"], flush=True)
        if args.peers:
            from peers import measure_peers

            from tasks.local.spark_submit import local_master

            results["peers"] = measure_peers(images, workdir, local_master(), args.alpha, cores)
        if args.engines:
            from engines import compare

            results["engines"] = compare(images, alpha=args.alpha)
        results["loop"] = measure_loop(images, args.alpha, args.featurizer, args.batch_size, cores)
        print("(b) loop: %s" % results["loop"]["variants"], flush=True)
        results["reference"] = None
        if not args.skip_reference:
            results["reference"] = dict(measure_reference(images, workdir, master, args.alpha), master=master)
            print("(a) reference: %.1f s" % results["reference"]["featurize_s"], flush=True)
    return write_results("featurize", results, report(results))


def write_results(kind: str, results: dict, text: str) -> int:
    print("\n" + text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / ".gitignore").write_text("*\n")
    target = RESULTS / ("%s-%s.json" % (kind, datetime.now().strftime("%Y%m%d-%H%M%S")))
    target.write_text(json.dumps(dict(results, report=text), indent=2))
    print("written to %s" % target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
