"""The job's dataset-health tables (``health/`` under an output) as the flow shows them: read, grouped, capped.

The job writes three tables (docs/dataset-health.md): ``pairs`` (exact and near duplicates, label conflicts, leaks),
``outliers`` and ``mislabels``, and counts them under ``health`` in metrics.json. People look at the most telling
rows only: every list here is sorted by score and capped, and says how many rows it leaves in ``health/``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow.compute as pc
import pyarrow.dataset as ds
from pyarrow import fs as pafs

from fruitjob.metrics import RunMetrics
from fruitjob.rules import to_uri
from tasks.uris import filesystem_path

HEALTH = "health"
TABLES = ("pairs", "outliers", "mislabels")
COLUMNS = {
    "pairs": ["path", "label", "other_path", "other_label", "other_output", "similarity", "exact", "conflict", "leak"],
    "outliers": ["path", "label", "score", "nearest_label", "flagged", "rank"],
    "mislabels": ["path", "label", "resembles", "confidence", "rank", "flagged"],
}
# Per list: the groups or rows shown on the page and in the artifacts; the rest stay in health/.
SHOWN = 24
GROUP_IMAGES = 8  # pictures shown of one duplicate group


def health_counts(metrics: RunMetrics) -> dict[str, Any] | None:
    """metrics.json's ``health`` as a plain dict (the job's ``HealthCounts``, or the raw key an older reader keeps in
    ``extra``); None when the run computed no health (``--health off``, or a job from before the health stage)."""
    value = getattr(metrics, "health", None)
    if value is None:
        value = metrics.extra.get("health")
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    return dict(value) if value and value.get("enabled", True) else None


def near_duplicate_caveat(metrics: RunMetrics) -> str | None:
    """Why the near-duplicate figures mean nothing for this run, or None: features from random weights all look alike,
    and so do trained features that pair most images (docs/dataset-health.md)."""
    counts = health_counts(metrics)
    if counts is None:
        return None
    why = "near-duplicates need trained weights"
    if metrics.weights == "random":
        return f"{why}: with random weights every image looks like every other, so the near-duplicate pairs say nothing"
    images = metrics.features_total or metrics.images_ok
    paired = counts.get("images_with_near_pair") or 0
    if images and paired * 2 > images:
        return (
            f"{why}: {paired} of {images} images have a near-duplicate, so these features do not tell the images "
            "apart and the near-duplicate pairs say little"
        )
    return None


def is_within(other_output: str | None, output: str) -> bool:
    """Whether a pair's ``other_output`` is ``output`` itself: null (the job's way, so that an output can move) or its
    own URI."""
    return not other_output or same_output(other_output, output)


def same_output(first: str, second: str) -> bool:
    """Whether two URIs name one output (``/data/run``, ``file:/data/run/`` and ``file:///data/run`` do)."""
    return bool(first) and bool(second) and to_uri(first) == to_uri(second)


def empty_table(name: str) -> pd.DataFrame:
    return pd.DataFrame({column: pd.Series(dtype=object) for column in COLUMNS[name]})


@dataclass
class HealthTables:
    """The three tables of one output's ``health/`` (an absent table reads as empty)."""

    pairs: pd.DataFrame = field(default_factory=lambda: empty_table("pairs"))
    outliers: pd.DataFrame = field(default_factory=lambda: empty_table("outliers"))
    mislabels: pd.DataFrame = field(default_factory=lambda: empty_table("mislabels"))
    missing: list[str] = field(default_factory=list)  # tables not found under health/


def read_health(filesystem: pafs.FileSystem, output: str, flagged_only: bool = False) -> HealthTables:
    """``health/`` of ``output`` as pandas, the documented columns; ``flagged_only``: of ``outliers`` and
    ``mislabels`` only the rows above the job's cut (what people are shown: ``outliers`` has a row per image)."""
    root = f"{filesystem_path(output)}/{HEALTH}"
    found = HealthTables()
    for name in TABLES:
        path = f"{root}/{name}"
        if filesystem.get_file_info(path).type == pafs.FileType.NotFound:
            found.missing.append(name)
            continue
        dataset = ds.dataset(path, filesystem=filesystem, format="parquet", exclude_invalid_files=True)
        wanted = [c for c in COLUMNS[name] if c in dataset.schema.names]
        only = pc.field("flagged") if flagged_only and name != "pairs" else None
        setattr(found, name, dataset.to_table(columns=wanted, filter=only).to_pandas())
    return found


@dataclass(frozen=True)
class DuplicateGroup:
    """Images of this output that are copies of one another (pairs joined): the paths with their labels."""

    images: list[tuple[str, str]]  # (path, label), sorted by path
    similarity: float  # the closest pair's
    exact: bool  # some pair has the same bytes
    lowest: float = 1.0  # the least similar pair's (1.0: every pair is an exact copy)


def duplicate_groups(pairs: pd.DataFrame, output: str) -> list[DuplicateGroup]:
    """The pairs within ``output`` joined into groups (connected components), the closest and largest first."""
    within = pairs[pairs["other_output"].map(lambda other: is_within(other, output)).astype(bool)]
    parent: dict[str, str] = {}

    def root(path: str) -> str:
        while parent.setdefault(path, path) != path:
            parent[path] = parent[parent[path]]
            path = parent[path]
        return path

    for first, second in zip(within["path"], within["other_path"], strict=True):
        parent[root(first)] = root(second)
    labels = dict(zip(within["path"], within["label"], strict=True))
    labels.update(zip(within["other_path"], within["other_label"], strict=True))
    members: dict[str, list[str]] = {}
    for path in sorted(parent):
        members.setdefault(root(path), []).append(path)
    best: dict[str, tuple[float, bool, float]] = {}
    for row in within.itertuples():
        key, similarity = root(row.path), 1.0 if row.exact else float(row.similarity)
        highest, exact, lowest = best.get(key, (0.0, False, 1.0))
        best[key] = (max(highest, similarity), exact or bool(row.exact), min(lowest, similarity))
    groups = [DuplicateGroup([(p, labels[p]) for p in paths], *best[key]) for key, paths in members.items()]
    return sorted(groups, key=lambda g: (-g.similarity, -len(g.images), g.images[0][0]))


def conflicts(pairs: pd.DataFrame) -> pd.DataFrame:
    """Pairs of similar images under two labels, the most similar first."""
    return _by_similarity(pairs[pairs["conflict"].fillna(False).astype(bool)])


def leaks(pairs: pd.DataFrame) -> pd.DataFrame:
    """Pairs whose other image is in an earlier output (or an earlier batch of this one), the most similar first."""
    return _by_similarity(pairs[pairs["leak"].fillna(False).astype(bool)])


def flagged(table: pd.DataFrame) -> pd.DataFrame:
    """The rows above the job's cut (outliers or suspected mislabels), by rank (1 = the most telling)."""
    rows = table[table["flagged"].fillna(False).astype(bool)]
    return rows.sort_values(["rank", "path"], kind="stable")


def _by_similarity(pairs: pd.DataFrame) -> pd.DataFrame:
    return pairs.sort_values(["similarity", "path", "other_path"], ascending=[False, True, True], kind="stable")


def more_line(shown: int, total: int, where: str) -> str:
    """``24 of 130 shown; the other 106 are in health/pairs/`` (empty when every row is shown)."""
    return "" if total <= shown else f"{shown} of {total} shown; the other {total - shown} are in {HEALTH}/{where}/"


def found_sentence(counts: dict[str, Any]) -> str:
    """``2 exact and 5 near-duplicate pairs, 1 label conflict, 0 leaks, 3 outliers, 2 suspected mislabels``."""

    def said(key: str, one: str, many: str) -> str:
        number = counts.get(key) or 0
        return f"{number} {one if number == 1 else many}"

    return (
        f"{counts.get('exact_duplicate_pairs') or 0} exact and "
        + said("near_duplicate_pairs", "near-duplicate pair", "near-duplicate pairs")
        + ", "
        + ", ".join(
            said(key, one, many)
            for key, one, many in (
                ("label_conflicts", "label conflict", "label conflicts"),
                ("leaks", "leak", "leaks"),
                ("outliers", "outlier", "outliers"),
                ("suspected_mislabels", "suspected mislabel", "suspected mislabels"),
            )
        )
    )
