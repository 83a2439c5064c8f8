"""``featurize_bench.py --scale``: how the cost of our job grows with the input, at about 1k, 4k and 16k images.

Each size is the shared sample (or ``--images``) repeated into a temporary folder (``copy<k>/<class>/<file>``: the
same decode and model work per image), run as the flow runs it (``tasks.local.spark_submit``'s spark-submit
command and environment), with the converted model cached as a rerun finds it. Per size: images/s of the featurize
stage and of the whole job, every stage's seconds (metrics.json ``durations_s``), and the peak RSS of the whole
process tree (spark-submit, the JVM, the Python daemon and workers: their sum, sampled every 0.2 s with psutil).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from featurize_bench import IMAGE_SUFFIXES, SHARED_IMAGES, cpu_model, prepare_images, run_job, write_results


def repeat_images(source: Path, count: int, folder: Path) -> Path:
    """``count`` images: the files of ``source`` in order, again and again, each copy in its own ``copy<k>/``."""
    files = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise SystemExit("no images under %s" % source)
    for index in range(count):
        path = files[index % len(files)]
        target = folder / ("copy%d" % (index // len(files))) / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return folder


def measure_size(images: Path, workdir: Path, alpha: float, batch_size: int | None) -> dict:
    from fruitjob.options import JobOptions

    output = workdir / "scale-out"
    shutil.rmtree(output, ignore_errors=True)
    spec = JobOptions(
        images=str(images),
        output=str(output),
        weights="random",
        alpha=alpha,
        batch_size=batch_size or JobOptions.batch_size,
    )
    figures = run_job(spec, workdir / "scale-job.log")
    shutil.rmtree(output, ignore_errors=True)
    return figures


def measure_scale(source: Path, workdir: Path, alpha: float, batch_size: int | None, sizes) -> list[dict]:
    rows = []
    for size in sizes:
        folder = repeat_images(source, size, workdir / ("scale-%d" % size))
        row = dict(measure_size(folder, workdir, alpha, batch_size), load_average=round(os.getloadavg()[0], 2))
        shutil.rmtree(folder, ignore_errors=True)
        print("scale %d: %s" % (size, row), flush=True)
        rows.append(row)
    return rows


def scale_lines(rows: list[dict]) -> list[str]:
    """A Markdown table: one row per size, and each stage's seconds."""
    stages = [s for s in rows[0]["durations_s"] if s != "total"] if rows else []
    head = ["images", "featurize img/s", "whole job img/s", "wall s", "tree peak RSS MB", "largest process MB"]
    head += ["%s s" % s for s in stages] + ["load avg"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for row in rows:
        d = row["durations_s"]
        cells = [
            "%d" % row["images"],
            "%.1f" % (row["images"] / d["featurize"]),
            "%.1f" % (row["images"] / row["wall_s"]),
            "%.1f" % row["wall_s"],
            "%.0f" % row["tree_peak_rss_mb"],
            "%.0f" % row["largest_process_peak_rss_mb"],
            *("%.1f" % d.get(s, 0.0) for s in stages),
            "%.1f" % row["load_average"],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main_scale(args) -> int:
    """``--scale``: our job at each size, the sample repeated (bench/scale.py)."""
    sizes = [int(size) for size in args.scale.split(",")]
    with tempfile.TemporaryDirectory(prefix="fruitflow-bench-") as tmp:
        workdir = Path(tmp)
        source = args.images or (SHARED_IMAGES if SHARED_IMAGES.is_dir() else None)
        if source is None:
            source, _, _ = prepare_images(None, 2000, workdir)
        print("scale run on %s repeated to %s images; alpha %s, random weights" % (source, sizes, args.alpha))
        rows = measure_scale(source, workdir, args.alpha, args.batch_size, sizes)
    results = {"cpu": cpu_model(), "cores": os.cpu_count(), "source": str(source), "alpha": args.alpha, "rows": rows}
    head = "CPU: %s, %d cores; %s repeated; alpha %s, random weights" % (
        results["cpu"],
        results["cores"],
        source,
        args.alpha,
    )
    return write_results("scale", results, "\n".join([head, *scale_lines(rows)]))
