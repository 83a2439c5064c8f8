"""The paired bench (issue 23): our job against each peer, run in interleaved pairs so that the machine's drift hits
both sides, with the whole process measured as the user runs it.

    PYTHONPATH=/work/bench-packages .venv/bin/python bench/paired.py [--rows daft,ray,udf,int8,health,demo]
        [--pairs 3] [--pairs-for udf=1,...] [--images DIR] [--limit N] [--alpha 1.0] [--ours-b-repo PATH]

Each row runs N pairs, A then B, A then B ... (``--pairs``), every run a fresh process tree:

- ``daft``, ``ray``, ``udf``: A = our job (``spark-submit spark_jobs/extract_features.py``, the flow's command and
  environment: ``tasks.local.spark_submit``), B = the peer's script (``bench/peer_runs.py``: Daft, Ray Data, Spark's
  ``predict_batch_udf``; ``bench/peers.py``). Ratios ours / peer;
- ``int8``: A = our job, B = the same with ``--featurizer tflite-int8``; ratio int8 / float of the featurize stage;
- ``health``: A = our job (``--health on``, the default), B = ``--health off``: the stage's own seconds, the part
  of them after the quality score, and the wall on - off;
- ``jit``: A = our job (its driver JVM compiles with C1 only: ``DRIVER_JAVA_OPTIONS``), B = the same command without
  that option (the JVM's default, C1 then C2): what the option saves;
- ``cds``: A = our job (its driver JVM maps Spark's classes from the class archive: ``tasks.local.class_archive``),
  B = the same command without the archive: what the archive saves;
- ``demo``: the README demo, ``.venv/bin/python -m flows.fruit_features --weights random`` (60 images, model
  cached), N runs, seconds from command to exit;
- ``ours-b`` (with ``--ours-b-repo PATH``): A = our job from this checkout, B = the same command from another
  checkout (its own ``.venv``, else this one with that checkout's code first on ``PYTHONPATH``: a plain
  ``git clone`` of a commit works): how a change to the job pays. Ratios B / A.

Per run: the featurize stage's images/s (ours: metrics.json's ``featurize`` lap; a peer: its ``featurize_s``, first
read to last feature written), and the whole process (``bench/process_meter.py``): wall and CPU seconds of the
process tree, the share of the wall with both cores busy (the tree's own and the machine's) and the tree's peak
RSS. Then the medians, the per-pair ratios and the targets of issue 23 with met / not met. The converted models are
made once before the pairs (a run on a few images per featurizer and checkout: "model cached"), unless
``--no-warm-up``. Results also go to ``bench/results/paired-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from featurize_bench import RESULTS, ROOT, cpu_model, prepare_images, spark_env, write_results
from paired_report import report
from peers import converted_model, peer_command
from process_meter import become_subreaper, measure_command

ROWS = ("daft", "ray", "udf", "int8", "health", "jit", "cds", "demo", "ours-b")
PEER_OF_ROW = {"daft": "daft", "ray": "ray", "udf": "spark"}
WARM_UP_IMAGES = 24
# Build the job's command inside a checkout, with that checkout's own code (its .venv's Python).
_JOB_COMMAND = (
    "import json, sys\n"
    "from fruitjob.options import JobOptions\n"
    "from tasks.local.spark_submit import job_environment, spark_home, spark_submit_command\n"
    "options = JobOptions(**json.loads(sys.argv[1]))\n"
    "try:  # the driver maps the class archive, as the local engine's runs do (a checkout before it had none)\n"
    "    from tasks.local.class_archive import java_options\n"
    "    archive = {'java_options': java_options(spark_home())}\n"
    "except ImportError:\n"
    "    archive = {}\n"
    "print(json.dumps({'command': spark_submit_command(options, **archive), 'env': job_environment()}))\n"
)


@dataclass
class Side:
    """One side of a pair: a command, where it runs, and what it reports after a run."""

    label: str
    command: list[str]
    env: dict[str, str]
    cwd: Path
    collect: Callable[[Path], dict]  # the run's log -> featurize_s, images, laps ...
    output: Path | None = None  # removed before each run
    ours_default: bool = False  # our job, float, health on, this checkout: counts for the busy-cores target
    runs: list[dict] = field(default_factory=list)


def _user_env() -> dict[str, str]:
    """The environment a user runs our commands in: this one without the bench's PYTHONPATH (Ray, Daft)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _python(repo: Path) -> Path:
    """The checkout's own ``.venv`` Python, else this one (a bare clone of a commit: the same pins)."""
    python = repo / ".venv" / "bin" / "python"
    return python if python.exists() else Path(sys.executable)


def _code_env(repo: Path) -> dict[str, str]:
    """The user's environment; for another checkout, its code first on the path (a Python installed for this
    checkout would import ours), for the driver, the workers and the command's own build."""
    env = _user_env()
    if repo != ROOT:
        env["PYTHONPATH"] = os.pathsep.join([str(repo / "spark_jobs"), str(repo)])
    return env


def _job_metrics(output: Path) -> dict:
    metrics = json.loads((output / "metrics.json").read_text())
    laps = metrics["durations_s"]
    health = (metrics.get("health") or {}).get("seconds")  # the stage's own time: it runs beside the PCA
    return {"featurize_s": laps.get("featurize"), "images": metrics["images_ok"], "laps": laps, "health_s": health}


def our_job(repo: Path, label: str, images: Path, workdir: Path, alpha: float, **options) -> Side:
    """Our job as the flow runs it, built by ``repo``'s own code (so another checkout runs its own command)."""
    output = workdir / ("%s-out" % label)
    spec = dict(images=str(images), output=str(output), weights="random", alpha=alpha, **options)
    built = subprocess.run(
        [str(_python(repo)), "-c", _JOB_COMMAND, json.dumps(spec)],
        cwd=str(repo),
        env=_code_env(repo),
        capture_output=True,
        text=True,
        check=True,
    )
    made = json.loads(built.stdout.strip().splitlines()[-1])
    default = repo == ROOT and options.get("featurizer", "tflite") == "tflite" and options.get("health", "on") == "on"
    return Side(
        label, made["command"], made["env"], repo, lambda log: _job_metrics(output), output, ours_default=default
    )


def without_java_option(command: list[str], prefix: str) -> list[str]:
    """``command`` whose ``--driver-java-options`` lose the options starting with ``prefix`` (the flag goes when
    nothing is left)."""
    at = command.index("--driver-java-options")
    kept = [option for option in command[at + 1].split() if not option.startswith(prefix)]
    return command[:at] + (["--driver-java-options", " ".join(kept)] if kept else []) + command[at + 2 :]


def peer(name: str, images: Path, workdir: Path, alpha: float, model: Path | None) -> Side:
    from tasks.local.spark_submit import local_master

    command, result, output = peer_command(name, images, workdir, local_master(), alpha, model, os.cpu_count() or 1)

    def collect(log: Path) -> dict:
        row = json.loads(result.read_text())
        return {"featurize_s": row["featurize_s"], "images": row["images"], "peer": row}

    return Side(name, command, spark_env(), ROOT, collect, output)


def readme_demo(repo: Path) -> Side:
    """The README's first command: the flow on its 60 sample images; the run folder it made is removed after."""

    def collect(log: Path) -> dict:
        lines = [line for line in log.read_text().splitlines() if line.startswith("output: ")]
        if not lines:
            return {}
        output = Path(lines[-1][len("output: ") :])
        found = _job_metrics(output) if (output / "metrics.json").exists() else {}
        if output.parent == repo / "output" and output.name.startswith("run-"):
            shutil.rmtree(output, ignore_errors=True)
        return found

    command = [str(_python(repo)), "-m", "flows.fruit_features", "--weights", "random"]
    return Side("demo", command, _user_env(), repo, collect)


def run_once(side: Side, workdir: Path, pair: int) -> dict:
    if side.output is not None:
        shutil.rmtree(side.output, ignore_errors=True)
    log = workdir / ("%s-%d.log" % (side.label, pair))
    measured = measure_command(side.command, side.env, side.cwd, log)
    measured.update(side.collect(log), pair=pair, at=datetime.now(UTC).strftime("%H:%M:%S"))
    if measured.get("featurize_s"):
        measured["featurize_rate"] = round(measured["images"] / measured["featurize_s"], 1)
    side.runs.append(measured)
    print(
        "  pair %d %-8s wall %6.1f s  cpu %6.1f s  featurize %s  busy tree %s machine %s  peak %.0f MB  load %.1f"
        % (
            pair,
            side.label,
            measured["wall_s"],
            measured["cpu_s"],
            measured.get("featurize_rate", "-"),
            measured["tree_both_busy_share"],
            measured["both_busy_share"],
            measured["tree_peak_rss_mb"],
            measured["load_average"],
        ),
        flush=True,
    )
    return measured


def warm_up(repos: list[Path], featurizers: list[str], workdir: Path, alpha: float) -> None:
    """One run of our job per checkout and featurizer on a few images: the converted model is then cached."""
    images, _, _ = prepare_images(None, WARM_UP_IMAGES, workdir / "warm")
    for repo in repos:
        for featurizer in featurizers:
            side = our_job(repo, "warm-up", images, workdir, alpha, featurizer=featurizer, health="off")
            started = time.monotonic()
            run_once(side, workdir, 0)
            print("warm-up %s %s: %.1f s" % (repo, featurizer, time.monotonic() - started), flush=True)


def build_rows(args, images: Path, workdir: Path) -> list[dict]:
    rows = []
    model = None
    for key in args.rows:
        if key in PEER_OF_ROW:
            if key != "udf" and model is None:
                model = converted_model(workdir, args.alpha)
            a = our_job(ROOT, "ours", images, workdir, args.alpha)
            b = peer(PEER_OF_ROW[key], images, workdir, args.alpha, model)
        elif key == "int8":
            a = our_job(ROOT, "float", images, workdir, args.alpha)
            b = our_job(ROOT, "int8", images, workdir, args.alpha, featurizer="tflite-int8")
        elif key == "health":
            a = our_job(ROOT, "health-on", images, workdir, args.alpha)
            b = our_job(ROOT, "health-off", images, workdir, args.alpha, health="off")
        elif key == "jit":
            a = our_job(ROOT, "c1-only", images, workdir, args.alpha)
            b = our_job(ROOT, "c1-c2", images, workdir, args.alpha)
            b.command = without_java_option(b.command, "-XX:TieredStopAtLevel")
        elif key == "cds":
            a = our_job(ROOT, "archive", images, workdir, args.alpha)
            b = our_job(ROOT, "no-archive", images, workdir, args.alpha)
            b.command = without_java_option(b.command, "-XX:SharedArchiveFile")
        elif key == "demo":
            rows.append({"key": key, "sides": [readme_demo(ROOT)]})
            continue
        else:
            if args.ours_b_repo is None:
                raise SystemExit("--rows ours-b needs --ours-b-repo PATH")
            a = our_job(ROOT, "ours-a", images, workdir, args.alpha)
            b = our_job(args.ours_b_repo, "ours-b", images, workdir, args.alpha)
        rows.append({"key": key, "sides": [a, b]})
    return rows


def checkout_state(repo: Path) -> str:
    """The commit a checkout runs (and whether its tree has changes), for the report."""
    try:
        git = ["git", "-C", str(repo)]
        head = subprocess.run([*git, "log", "-1", "--format=%h %s"], capture_output=True, text=True)
        dirty = subprocess.run([*git, "status", "--porcelain", "-uno"], capture_output=True, text=True)
    except OSError:
        return "unknown"
    return head.stdout.strip()[:90] + (" (uncommitted changes)" if dirty.stdout.strip() else "")


def _collect(results: dict, rows: list[dict]) -> None:
    """The finished rows into ``results``: every run of each side, and the busy shares of our default runs."""
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["load_at_end"] = round(os.getloadavg()[0], 2)
    results["rows"] = [{"key": r["key"], "sides": {s.label: s.runs for s in r["sides"]}} for r in rows]
    results["ours_default_busy"] = [
        run["tree_both_busy_share"] for r in rows for s in r["sides"] if s.ours_default for run in s.runs
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default="daft,ray,udf,int8,health,demo", help="any of " + ",".join(ROWS))
    parser.add_argument("--pairs", type=int, default=3, help="pairs per row (runs, for demo)")
    parser.add_argument("--pairs-for", default="", metavar="ROW=N,...", help="another count for some rows: udf=1")
    parser.add_argument("--images", type=Path, default=None, help="default: ../shared sample, else generated")
    parser.add_argument("--limit", type=int, default=None, help="use this many images (spread over the classes)")
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--ours-b-repo", type=Path, default=None, help="another checkout: adds the ours-b row")
    parser.add_argument("--no-warm-up", action="store_true", help="the converted models are already cached")
    args = parser.parse_args(argv)
    args.rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    if args.ours_b_repo is not None:
        args.ours_b_repo = args.ours_b_repo.resolve()
        if "ours-b" not in args.rows:
            args.rows.append("ours-b")
    args.pairs_of = {row: args.pairs for row in args.rows}
    for item in filter(None, args.pairs_for.split(",")):
        row, _, count = item.partition("=")
        args.pairs_of[row.strip()] = int(count)
    unknown = sorted((set(args.rows) | set(args.pairs_of)) - set(ROWS))
    if unknown:
        parser.error("unknown rows %s: choose from %s" % (unknown, ", ".join(ROWS)))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = " ".join(
        ["PYTHONPATH=" + os.environ.get("PYTHONPATH", "")] * ("PYTHONPATH" in os.environ)
        + [shlex.quote(a) for a in [os.path.relpath(sys.executable, ROOT), "bench/paired.py", *sys.argv[1:]]]
    )
    become_subreaper()
    with tempfile.TemporaryDirectory(prefix="fruitflow-paired-") as tmp:
        workdir = Path(tmp)
        images, count, source = prepare_images(args.images, args.limit, workdir)
        results: dict = {
            "command": command,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "load_at_start": round(os.getloadavg()[0], 2),
            "images": count,
            "source": source,
            "alpha": args.alpha,
            "pairs": args.pairs_of,
            "checkouts": {"a": "%s: %s" % (ROOT, checkout_state(ROOT))},
        }
        if args.ours_b_repo is not None:
            results["checkouts"]["b"] = "%s: %s" % (args.ours_b_repo, checkout_state(args.ours_b_repo))
        print("paired bench: %s\n%d images from %s" % (command, count, source), flush=True)
        if not args.no_warm_up:
            warm_up([ROOT], ["tflite", "tflite-int8"] if "int8" in args.rows else ["tflite"], workdir, args.alpha)
            if args.ours_b_repo not in (None, ROOT):  # its own code may name or convert the model otherwise
                warm_up([args.ours_b_repo], ["tflite"], workdir, args.alpha)
        rows = build_rows(args, images, workdir)
        RESULTS.mkdir(exist_ok=True)
        partial = RESULTS / ("paired-%s.partial.txt" % datetime.now().strftime("%Y%m%d-%H%M%S"))
        for done, row in enumerate(rows, 1):
            print("row %s: %s" % (row["key"], " vs ".join(side.label for side in row["sides"])), flush=True)
            for pair in range(1, args.pairs_of[row["key"]] + 1):
                for side in row["sides"]:
                    run_once(side, workdir, pair)
            _collect(results, rows[:done])
            partial.write_text(report(results) + "\n")  # the rows so far, should a long run be stopped
            print("rows so far: %s" % partial, flush=True)
        partial.unlink()
    return write_results("paired", results, report(results))


if __name__ == "__main__":
    sys.exit(main())
