"""Validation of ``health/`` against ``features/``, with pandas alone and independent of the job that wrote it.

Every image a health table names is one the output featurized; every pair's other image is in this output's
``features/`` or in the earlier output the row names, which must be one the run compared with; the counts in
metrics.json are the tables' counts. Each problem is one line of the validation error.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from pyarrow import fs as pafs

from fruitjob.metrics import RunMetrics
from fruitjob.rules import to_uri
from tasks.health_tables import HealthTables, health_counts, read_health
from tasks.output_checks import CorruptParquet, read_table
from tasks.uris import filesystem_path

EXAMPLES = 3


def _examples(paths: set[str]) -> str:
    shown = sorted(paths)[:EXAMPLES]
    return ", ".join(repr(p) for p in shown) + (", ..." if len(paths) > EXAMPLES else "")


def _truthy(column: pd.Series) -> pd.Series:
    return column.fillna(False).astype(bool)


def check_health(
    filesystem: pafs.FileSystem, output: str, metrics: RunMetrics, features: pd.DataFrame, problems: list[str]
) -> None:
    """Append to ``problems`` what is wrong with ``health/`` (nothing to check when the run computed no health)."""
    counts = health_counts(metrics)
    if counts is None:
        return
    try:
        tables = read_health(filesystem, output)
    except (OSError, ValueError) as exc:
        problems.append(f"health/ cannot be read: {exc}")
        return
    if tables.missing:
        problems.append(f"metrics.json counts dataset health, but health/ lacks {', '.join(tables.missing)}")
    featurized = set(features["path"])
    for name in ("pairs", "outliers", "mislabels"):
        unknown = set(getattr(tables, name)["path"]) - featurized
        if unknown:
            problems.append(f"health/{name} names {len(unknown)} images not in features/ ({_examples(unknown)})")
    _check_other_images(filesystem, output, counts, tables.pairs, featurized, problems)
    _check_pairs(tables.pairs, problems)
    _check_counts(counts, tables, problems)


def _check_other_images(
    filesystem: pafs.FileSystem,
    output: str,
    counts: dict[str, Any],
    pairs: pd.DataFrame,
    featurized: set[str],
    problems: list[str],
) -> None:
    """Each pair's other image is in the output the row names: this one, or an earlier one the run compared with."""
    own = to_uri(output)
    allowed = {own} | {to_uri(uri) for uri in counts.get("compared_with") or []}
    named = pairs["other_output"].map(lambda uri: to_uri(uri) if uri else own)  # null: this output
    strangers = set(named) - allowed
    if strangers:
        problems.append(
            f"health/pairs names other outputs the run did not compare with ({_examples(strangers)}); "
            f"metrics.json health.compared_with: {sorted(allowed - {own})}"
        )
    for other in sorted(set(named) & allowed):
        wanted = set(pairs["other_path"][named == other])
        if other == own:
            known = featurized
        else:
            try:
                known = set(read_table(filesystem, f"{filesystem_path(other)}/features", ["path"])["path"].to_pylist())
            except (OSError, ValueError, CorruptParquet) as exc:
                problems.append(f"health/pairs: the earlier output {other} cannot be read ({exc})")
                continue
        absent = wanted - known
        if absent:
            where = "this output's features/" if other == own else f"{other}/features/"
            problems.append(f"health/pairs names {len(absent)} other images not in {where} ({_examples(absent)})")


def _check_pairs(pairs: pd.DataFrame, problems: list[str]) -> None:
    """A label conflict is a pair under two labels, and a pair under two labels is a conflict."""
    if pairs.empty:
        return
    wrong = pairs[_truthy(pairs["conflict"]) != (pairs["label"] != pairs["other_label"])]
    if len(wrong):
        problems.append(
            f"health/pairs: {len(wrong)} rows whose conflict flag disagrees with their labels "
            f"({_examples(set(wrong['path']))})"
        )


def _check_counts(counts: dict[str, Any], tables: HealthTables, problems: list[str]) -> None:
    pairs, outliers, mislabels = tables.pairs, tables.outliers, tables.mislabels
    exact = _truthy(pairs["exact"]) if len(pairs) else pd.Series(dtype=bool)
    found = {
        "exact_duplicate_pairs": int(exact.sum()),
        "near_duplicate_pairs": int((~exact).sum()),
        "label_conflicts": int(_truthy(pairs["conflict"]).sum()) if len(pairs) else 0,
        "leaks": int(_truthy(pairs["leak"]).sum()) if len(pairs) else 0,
        "outliers": int(_truthy(outliers["flagged"]).sum()) if len(outliers) else 0,
        "suspected_mislabels": int(_truthy(mislabels["flagged"]).sum()) if len(mislabels) else 0,
    }
    for key, rows in found.items():
        said = counts.get(key)
        if said is not None and int(said) != rows:
            problems.append(f"metrics.json health.{key} is {said}, health/ has {rows}")
    for key, table in (("outliers", outliers), ("suspected_mislabels", mislabels)):
        by_label = table[_truthy(table["flagged"])]["label"].value_counts().to_dict() if len(table) else {}
        said = {e["label"]: int(e.get(key) or 0) for e in counts.get("per_class") or [] if e.get(key)}
        if counts.get("per_class") is not None and said != {k: int(v) for k, v in by_label.items()}:
            problems.append(f"metrics.json health.per_class {key} {said} disagree with health/: {by_label}")
