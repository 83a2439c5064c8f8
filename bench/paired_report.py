"""The printed report of ``bench/paired.py``: per row a Markdown table of every run and the medians, the per-pair
ratios, then a summary of the rows and the targets of issue 23 with met / not met."""

from __future__ import annotations

from paired_stats import TARGETS, median, ratios

# Per row: which side is the numerator of its ratios, and how the row is named in the summary.
RATIO_OF_ROW = {
    "daft": ("ours", "daft", "ours vs Daft (ratios ours / Daft)"),
    "ray": ("ours", "ray", "ours vs Ray Data (ratios ours / Ray)"),
    "udf": ("ours", "spark", "ours vs Spark predict_batch_udf (ratios ours / udf)"),
    "int8": ("int8", "float", "ours tflite-int8 vs ours float (ratios int8 / float)"),
    "health": ("health-on", "health-off", "ours --health on vs off (ratios on / off)"),
    "jit": ("c1-only", "c1-c2", "ours, driver JVM with C1 only vs the JVM's default C1 + C2 (ratios C1 / default)"),
    "cds": ("archive", "no-archive", "ours, driver JVM with the class archive vs without (ratios archive / without)"),
    "ours-b": ("ours-b", "ours-a", "ours from --ours-b-repo vs this checkout (ratios b / a)"),
    "demo": ("demo", None, "README demo, command to exit"),
}
_COLUMNS = ("pair", "run", "images", "featurize s", "featurize img/s", "wall s", "CPU s", "CPU / wall")
_COLUMNS += ("both cores busy: tree / machine", "peak RSS MB", "load")


def _f(value, digits: int = 1) -> str:
    return "-" if value is None else "%.*f" % (digits, value)


def _pct(value) -> str:
    return "-" if value is None else "%.0f %%" % (100 * value)


def _cells(pair: str, label: str, runs: list[dict]) -> list[str]:
    """One table row: a run's figures, or the medians of several (``pair`` 'median')."""

    def m(key):
        return median([r.get(key) for r in runs])

    wall, cpu = m("wall_s"), m("cpu_s")
    return [
        pair,
        label,
        _f(m("images"), 0),
        _f(m("featurize_s")),
        _f(m("featurize_rate")),
        _f(wall),
        _f(cpu),
        _f(median([r["cpu_s"] / r["wall_s"] for r in runs]), 2),
        "%s / %s" % (_pct(m("tree_both_busy_share")), _pct(m("both_busy_share"))),
        _f(m("tree_peak_rss_mb"), 0),
        _f(m("load_average")),
    ]


def _table(sides: dict[str, list[dict]]) -> list[str]:
    lines = ["| " + " | ".join(_COLUMNS) + " |", "|---|---|" + "---:|" * (len(_COLUMNS) - 2)]
    pairs = max(len(runs) for runs in sides.values())
    for index in range(pairs):
        for label, runs in sides.items():
            if index < len(runs):
                lines.append("| " + " | ".join(_cells(str(runs[index]["pair"]), label, [runs[index]])) + " |")
    for label, runs in sides.items():
        lines.append("| " + " | ".join(_cells("median", label, runs)) + " |")
    return lines


def _ratio_text(name: str, values: list) -> tuple[str, float | None]:
    present = [v for v in values if v is not None]
    mid = median(present)
    return "%s %s (pairs %s)" % (name, _f(mid, 2), ", ".join(_f(v, 2) for v in values)), mid


def row_figures(key: str, sides: dict[str, list[dict]]) -> tuple[list[str], dict[str, float | None]]:
    """The ratio lines of a row and its figures for the targets (``paired_stats.TARGETS``' names)."""
    top, bottom, _ = RATIO_OF_ROW[key]
    a = sides[top]
    if bottom is None:  # one-sided: the demo
        mid = median([r["wall_s"] for r in a])
        return ["README demo: median %s s from command to exit" % _f(mid)], {"README demo s": mid}
    b = sides[bottom]
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]

    def per_pair(metric: str) -> list:
        return ratios([r.get(metric) for r in a], [r.get(metric) for r in b])

    parts, figures = [], {}
    name = "%s/%s" % (top, bottom)
    featurize, figures["featurize " + name] = _ratio_text("featurize img/s", per_pair("featurize_rate"))
    wall, figures["wall " + name] = _ratio_text("wall", per_pair("wall_s"))
    cpu, figures["cpu " + name] = _ratio_text("CPU s", per_pair("cpu_s"))
    parts.append("%s: %s; %s; %s" % (name, featurize, wall, cpu))
    if key == "health":
        # the stage's own seconds (metrics.json health.seconds: it runs beside the PCA and the quality score), and
        # what it added to the wall after them (durations_s.health)
        own = [r.get("health_s") for r in a]
        waited = [r.get("laps", {}).get("health") for r in a]
        extra = [x["wall_s"] - y["wall_s"] for x, y in zip(a, b, strict=True)]
        figures["health s"], figures["health wait s"] = median(own), median(waited)
        parts.append(
            "health stage (metrics.json health.seconds) median %s s (runs %s), of which after the quality score %s s;"
            " wall on - off median %s s (pairs %s)"
            % (
                _f(median(own)),
                ", ".join(_f(v) for v in own),
                _f(median(waited)),
                _f(median(extra)),
                ", ".join(_f(v) for v in extra),
            )
        )
    return parts, figures


def report(results: dict) -> str:
    lines = [
        "command: %s" % results["command"],
        "started %s, finished %s; CPU %s, %d cores; load average %s at start, %s at end"
        % (
            results["started_at"],
            results.get("finished_at", "-"),
            results["cpu"],
            results["cores"],
            results["load_at_start"],
            results.get("load_at_end", "-"),
        ),
        "%d images from %s; alpha %s, random weights, model cached; pairs per row (A then B): %s"
        % (
            results["images"],
            results["source"],
            results["alpha"],
            ", ".join("%s %d" % kv for kv in results["pairs"].items()),
        ),
        *("checkout %s: %s" % kv for kv in results["checkouts"].items()),
    ]
    figures: dict[str, float | None] = {}
    summary = []
    for row in results["rows"]:
        key, sides = row["key"], row["sides"]
        lines += ["", "### %s" % RATIO_OF_ROW[key][2], "", *_table(sides), ""]
        parts, found = row_figures(key, sides)
        lines += parts
        figures.update(found)
        summary.append("- %s: %s" % (RATIO_OF_ROW[key][2], parts[0]))
    figures["ours both cores busy"] = median(results.get("ours_default_busy", []))
    lines += ["", "### Summary (medians of the pairs)", "", *summary, ""]
    lines += ["### Targets (issue 23)", "", "| target | measured | verdict |", "|---|---:|---|"]
    for target in TARGETS:
        value = figures.get(target.figure)
        shown = _pct(value) if target.figure == "ours both cores busy" else _f(value, 2)
        lines.append("| %s | %s | %s |" % (target.text, shown, target.verdict(value)))
    lines.append(
        "(both cores busy: the share of 0.1 s samples in which our job's process tree used >= 1.8 of 2 cores, median "
        "over our default runs; the machine's own share, which counts other work too, is in the tables)"
    )
    return "\n".join(lines)
