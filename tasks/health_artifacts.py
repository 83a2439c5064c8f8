"""Dataset health in Prefect: the page beside the summary, capped tables of what it found, and a link to the page.

Like the run's other artifacts (tasks/run_artifacts.py), each description names the batch and what the run found,
so that a key's history on the Artifacts page tells runs apart. Tables are sorted by score and capped at
``tasks.health_tables.SHOWN`` rows per kind; the full tables are in ``health/``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import get_run_logger
from prefect.artifacts import create_link_artifact, create_table_artifact
from pyarrow import fs as pafs

from tasks.health_page import write_page
from tasks.health_tables import (
    SHOWN,
    conflicts,
    flagged,
    found_sentence,
    health_counts,
    leaks,
    near_duplicate_caveat,
    read_health,
)
from tasks.markdown import file_link
from tasks.run_artifacts import describe
from tasks.validation import ValidationReport

HEALTH_KEY = "fruit-features-health"  # the pairs: duplicates, label conflicts, leaks
OUTLIERS_KEY = "fruit-features-health-outliers"
MISLABELS_KEY = "fruit-features-health-mislabels"
PAGE_KEY = "fruit-features-health-page"


def pair_rows(pairs: pd.DataFrame) -> list[dict[str, Any]]:
    """Label conflicts, then leaks, then the other duplicates: each kind by similarity, ``SHOWN`` at most. The labels
    come before the paths: the UI does not wrap cells, so long paths run off the right of the page."""
    conflicting, leaking = conflicts(pairs), leaks(pairs)
    rest = pairs.drop(index=conflicting.index.union(leaking.index))
    rest = rest.sort_values(["similarity", "path"], ascending=[False, True], kind="stable")
    rows = []
    for kind, table in (("label conflict", conflicting), ("leak", leaking), ("duplicate", rest)):
        for row in table.head(SHOWN).itertuples():
            rows.append(
                {
                    "kind": kind + (" (exact)" if row.exact else ""),
                    "similarity": round(float(row.similarity), 4),
                    "label": row.label,
                    "other_label": row.other_label,
                    "path": row.path,
                    "other_path": row.other_path,
                    "other_output": row.other_output,
                }
            )
    return rows


def ranked_rows(table: pd.DataFrame, score: str, other: str) -> list[dict[str, Any]]:
    """The flagged rows of ``outliers`` (score, nearest_label) or ``mislabels`` (confidence, resembles), by rank."""
    rows = flagged(table).head(SHOWN)
    return [
        {
            "rank": int(r["rank"]),
            score: round(float(r[score]), 4),
            "label": r["label"],
            other: r[other],
            "path": r["path"],
        }
        for r in rows.to_dict("records")
    ]


def _shown(rows: int, total: int) -> str:
    return f"all {total}" if rows == total else f"the first {rows} of {total}, by score"


def publish_health(report: ValidationReport, filesystem: pafs.FileSystem) -> str | None:
    """Write health.html beside summary.md and publish the health artifacts; the page's URI, or None when the run
    computed no health (``--health off``)."""
    counts = health_counts(report.metrics)
    if counts is None:
        return None
    tables = read_health(filesystem, report.output, flagged_only=True)
    page = write_page(filesystem, report.output, tables, counts, near_duplicate_caveat(report.metrics))
    found = found_sentence(counts)
    pairs = pair_rows(tables.pairs)
    if pairs:
        create_table_artifact(
            key=HEALTH_KEY,
            table=pairs,
            description=describe(report, f"{found}; pairs: label conflicts, leaks, duplicates (up to {SHOWN} each)"),
        )
    outliers = ranked_rows(tables.outliers, "score", "nearest_label")
    mislabels = ranked_rows(tables.mislabels, "confidence", "resembles")
    for key, rows, total, what in (
        (OUTLIERS_KEY, outliers, counts.get("outliers") or 0, "outliers"),
        (MISLABELS_KEY, mislabels, counts.get("suspected_mislabels") or 0, "suspected mislabels"),
    ):
        if rows:
            create_table_artifact(
                key=key, table=rows, description=describe(report, f"{_shown(len(rows), total)} {what}")
            )
    create_link_artifact(
        key=PAGE_KEY, link=file_link(page), link_text=page, description=describe(report, f"health page: {found}")
    )
    get_run_logger().info("dataset health: %s; page %s", found, page)
    return page
