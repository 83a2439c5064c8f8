"""Validate a run's output with pandas: the same checks whatever engine wrote it, local or S3."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE
from pyarrow import fs as pafs

FEATURE_DIM = 1280


class OutputInvalid(RuntimeError):
    """The output is incomplete or wrong; the message lists every problem found."""


@dataclass
class ValidationReport:
    output: str
    metrics: dict
    per_class: dict[str, dict[str, int]] = field(default_factory=dict)
    error_samples: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "output": self.output,
            "metrics": self.metrics,
            "per_class": self.per_class,
            "error_samples": self.error_samples,
        }


def filesystem_path(uri: str) -> str:
    """The path pyarrow's file systems take: ``bucket/key`` for s3://, a plain path for local files."""
    parsed = urlparse(uri)
    if parsed.scheme in ("s3", "s3a"):
        return (parsed.netloc + parsed.path).rstrip("/")
    if parsed.scheme == "file":
        return parsed.path.rstrip("/")
    return uri.rstrip("/")


def _read_table(filesystem: pafs.FileSystem, path: str) -> pa.Table:
    return pq.read_table(path, filesystem=filesystem)


def _matrix(table: pa.Table, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-row lengths and the flattened values of a list<float> column."""
    values = table.column(column).combine_chunks()
    lengths = pc.list_value_length(values).to_numpy(zero_copy_only=False)
    return lengths, pc.list_flatten(values).to_numpy(zero_copy_only=False)


def _check_vectors(name: str, table: pa.Table, column: str, dim: int, problems: list[str]) -> None:
    if table.num_rows == 0:
        return
    lengths, flat = _matrix(table, column)
    if not (lengths == dim).all():
        problems.append(f"{name}: {int((lengths != dim).sum())} rows do not have {dim} values")
    if not np.isfinite(flat).all():
        problems.append(f"{name}: {int((~np.isfinite(flat)).sum())} values are NaN or infinite")


def check_output(output: str, filesystem: pafs.FileSystem) -> ValidationReport:
    """Read everything the run wrote and check that it reconciles; raise :class:`OutputInvalid` if not."""
    root = filesystem_path(output)
    try:
        with filesystem.open_input_stream(f"{root}/metrics.json") as stream:
            metrics = json.loads(stream.read())
    except (FileNotFoundError, OSError) as exc:
        raise OutputInvalid(
            f"{output} holds no finished run: metrics.json is missing ({exc}); the job did not complete"
        ) from None
    problems: list[str] = []
    features = _read_table(filesystem, f"{root}/features")
    errors = _read_table(filesystem, f"{root}/errors")
    pca = _read_table(filesystem, f"{root}/pca")

    total, ok, failed = metrics["images_total"], metrics["images_ok"], metrics["images_failed"]
    done_before = metrics.get("images_already_done", 0)
    if ok + failed != total:
        problems.append(f"counts do not reconcile: images_ok {ok} + images_failed {failed} != images_total {total}")
    if total + metrics["files_skipped"] + done_before != metrics["files_seen"]:
        problems.append(
            f"files do not reconcile: images_total {total} + files_skipped {metrics['files_skipped']} + "
            f"images_already_done {done_before} != files_seen {metrics['files_seen']}"
        )
    # An incremental run appends: the datasets hold this run's rows plus the earlier runs'.
    features_expected = metrics.get("features_total", ok)
    errors_expected = metrics.get("errors_total", failed)
    if features.num_rows != features_expected:
        problems.append(f"features/ has {features.num_rows} rows, metrics say {features_expected} images succeeded")
    if errors.num_rows != errors_expected:
        problems.append(f"errors/ has {errors.num_rows} rows, metrics say {errors_expected} images failed")
    if pca.num_rows != features.num_rows:
        problems.append(f"pca/ has {pca.num_rows} rows, features/ has {features.num_rows}")

    frame = features.select(["path", "label"]).to_pandas()
    if frame["path"].duplicated().any():
        problems.append(f"features/ has {int(frame['path'].duplicated().sum())} duplicate paths")
    if (frame["label"].fillna("") == "").any():
        problems.append("features/ has rows without a label")
    if metrics["feature_dim"] != FEATURE_DIM:
        problems.append(f"feature_dim is {metrics['feature_dim']}, expected {FEATURE_DIM}")
    _check_vectors("features/", features, "features", FEATURE_DIM, problems)
    _check_vectors("pca/", pca, "pca", metrics["pca_components"], problems)

    variance = np.asarray(metrics["explained_variance"], dtype=float)
    if len(variance) != metrics["pca_components"]:
        problems.append(f"{len(variance)} explained variances for {metrics['pca_components']} components")
    if len(variance) and not ((variance > 0) & (variance <= 1)).all():
        problems.append(f"explained variance outside (0, 1]: {variance.tolist()}")
    if len(variance) > 1 and (np.diff(variance) > 1e-9).any():
        problems.append("explained variance is not non-increasing")
    if problems:
        raise OutputInvalid(f"output {output} is invalid:\n- " + "\n- ".join(problems))

    error_frame = errors.to_pandas()
    per_class = (
        pd.concat(
            [
                frame.assign(status="ok")[["label", "status"]],
                error_frame.assign(status="failed")[["label", "status"]],
            ]
        )
        .value_counts()
        .unstack(fill_value=0)
    )
    per_class_dict = {
        label: {"ok": int(row.get("ok", 0)), "failed": int(row.get("failed", 0))}
        for label, row in per_class.sort_index().iterrows()
    }
    samples = error_frame.head(20)[["path", "error"]].to_dict("records")
    return ValidationReport(output=output, metrics=metrics, per_class=per_class_dict, error_samples=samples)


@task(name="validate-output", cache_policy=NO_CACHE)
def validate_output(output: str, filesystem: pafs.FileSystem | None = None) -> dict:
    """Check the output with pandas (counts reconcile, dimensions, finite values, labels, variance)."""
    report = check_output(output, filesystem or pafs.LocalFileSystem())
    return report.as_dict()
