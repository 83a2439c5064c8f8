"""Validate a run's output with pandas against independent facts: the same checks whatever engine wrote it.

What the job says (metrics.json) is checked against what it wrote (the rows, their run ids, their PCA model ids)
and against the input itself, listed again from the source (``tasks.input_listing``): every listed image is in
exactly one of ``features/`` and ``errors/``, under the label its path gives, and ``pca/`` holds exactly the
paths of ``features/``, all in the output's one PCA space. Each check has a test that corrupts an output.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from prefect import task
from prefect.cache_policies import NO_CACHE
from pyarrow import fs as pafs

from fruitjob.rules import FEATURE_DIM
from tasks.input_listing import list_input_facts
from tasks.uris import filesystem_path

__all__ = ["OutputInvalid", "ValidationReport", "check_output", "filesystem_path", "validate_output"]
# Up to this many files the input is listed again and compared path by path; beyond, a sample of the rows is
# checked to exist in the input (listing millions of S3 objects again would cost minutes and requests).
FULL_CHECK_FILES = 200_000
SAMPLE_SIZE = 1_000
EXAMPLES = 3


class OutputInvalid(RuntimeError):
    """The output is incomplete or wrong; the message lists every problem found."""


@dataclass
class ValidationReport:
    output: str
    metrics: dict
    per_class: dict[str, dict[str, int]] = field(default_factory=dict)
    error_samples: list[dict[str, str]] = field(default_factory=list)
    kept_from_earlier_runs: int = 0  # rows of images no longer in the input, featurized by an earlier run

    def as_dict(self) -> dict:
        return {
            "output": self.output,
            "metrics": self.metrics,
            "per_class": self.per_class,
            "error_samples": self.error_samples,
            "kept_from_earlier_runs": self.kept_from_earlier_runs,
        }


def _read_table(filesystem: pafs.FileSystem, path: str, columns: list[str] | None = None) -> pa.Table:
    dataset = ds.dataset(path, filesystem=filesystem, format="parquet", exclude_invalid_files=True)
    wanted = None if columns is None else [c for c in columns if c in dataset.schema.names]
    return dataset.to_table(columns=wanted)


def _examples(paths) -> str:
    shown = sorted(paths)[:EXAMPLES]
    return ", ".join(repr(path) for path in shown) + (", ..." if len(paths) > EXAMPLES else "")


def _check_vectors(name: str, table: pa.Table, column: str, dim: int, problems: list[str]) -> None:
    if table.num_rows == 0:
        return
    values = table.column(column).combine_chunks()
    lengths = pc.list_value_length(values).to_numpy(zero_copy_only=False)
    flat = pc.list_flatten(values).to_numpy(zero_copy_only=False)
    if not (lengths == dim).all():
        problems.append(f"{name}: {int((lengths != dim).sum())} rows do not have {dim} values")
    if not np.isfinite(flat).all():
        problems.append(f"{name}: {int((~np.isfinite(flat)).sum())} values are NaN or infinite")


def _check_variance(metrics: dict, problems: list[str]) -> None:
    variance = np.asarray(metrics["explained_variance"], dtype=float)
    if len(variance) != metrics["pca_components"]:
        problems.append(f"{len(variance)} explained variances for {metrics['pca_components']} components")
    if len(variance) and not ((variance > 0) & (variance <= 1)).all():
        problems.append(f"explained variance outside (0, 1]: {variance.tolist()}")
    if len(variance) > 1 and (np.diff(variance) > 1e-9).any():
        problems.append("explained variance is not non-increasing")


def _check_rows(features: pd.DataFrame, errors: pd.DataFrame, pca: pd.DataFrame, problems: list[str]) -> None:
    """Each path once, in exactly one of features/ and errors/; pca/ has exactly the paths of features/."""
    for name, frame in (("features/", features), ("errors/", errors), ("pca/", pca)):
        duplicated = frame["path"][frame["path"].duplicated()]
        if len(duplicated):
            problems.append(f"{name} has {len(duplicated)} duplicate paths ({_examples(set(duplicated))})")
    both = set(features["path"]) & set(errors["path"])
    if both:
        problems.append(f"{len(both)} paths are in both features/ and errors/ ({_examples(both)})")
    missing, extra = set(features["path"]) - set(pca["path"]), set(pca["path"]) - set(features["path"])
    if missing or extra:
        problems.append(
            f"pca/ does not have the paths of features/: {len(missing)} missing ({_examples(missing)}), "
            f"{len(extra)} not in features/ ({_examples(extra)})"
        )
    if (features["label"].fillna("") == "").any():
        problems.append("features/ has rows without a label")


def _check_against_input(
    images: str, filesystem: pafs.FileSystem, metrics: dict, features: pd.DataFrame, errors: pd.DataFrame
) -> tuple[list[str], int]:
    """The rows against the input listed again: (problems, rows kept from earlier runs)."""
    problems: list[str] = []
    if metrics.get("files_seen", 0) > FULL_CHECK_FILES:
        rows = pd.concat([features["path"], errors["path"]])
        sample = random.Random(0).sample(list(rows), min(SAMPLE_SIZE, len(rows)))
        absent = [p for p in sample if filesystem.get_file_info(filesystem_path(p)).type == pafs.FileType.NotFound]
        if absent:
            problems.append(f"{len(absent)} of {len(sample)} sampled rows are not in the input ({_examples(absent)})")
        return problems, 0
    facts = list_input_facts(images, filesystem)
    listed = set(facts.images)
    featurized, failed = set(features["path"]), set(errors["path"])
    missing = listed - featurized - failed
    if missing:
        problems.append(
            f"{len(missing)} images of the input are in neither features/ nor errors/ ({_examples(missing)})"
        )
    if failed - listed:
        problems.append(
            f"errors/ has {len(failed - listed)} paths that are not in the input ({_examples(failed - listed)})"
        )
    gone = features[~features["path"].isin(listed)]
    new_gone = gone[gone["run_id"] == metrics.get("run_id")] if "run_id" in gone else gone
    if len(new_gone):
        problems.append(f"features/ has {len(new_gone)} rows of this run for files not in the input")
    rows = pd.concat([features[["path", "label"]], errors[["path", "label"]]])
    rows = rows[rows["path"].isin(listed)]
    wrong = rows[rows["label"] != rows["path"].map(facts.images)]
    if len(wrong):
        problems.append(
            f"{len(wrong)} rows do not carry their label (the first folder under the input): "
            f"{_examples(set(wrong['path']))}"
        )
    if metrics["files_skipped"] != facts.other_files:
        problems.append(f"files_skipped is {metrics['files_skipped']}, the input has {facts.other_files} non-images")
    if metrics["files_seen"] != len(listed) + facts.other_files:
        problems.append(f"files_seen is {metrics['files_seen']}, the input has {len(listed) + facts.other_files} files")
    reported = {entry["path"] for entry in metrics.get("folders_skipped", [])}
    if reported != facts.unlisted_folders:
        problems.append(
            f"folders not listed: metrics name {_examples(reported)}, the input has {_examples(facts.unlisted_folders)}"
        )
    done_before = metrics.get("images_already_done", 0)
    if metrics["images_total"] + done_before != len(listed):
        problems.append(
            f"images_total {metrics['images_total']} + images_already_done {done_before} != "
            f"{len(listed)} images in the input"
        )
    return problems, len(gone) - len(new_gone)


def _check_counts(metrics: dict, features: pd.DataFrame, errors: pd.DataFrame, problems: list[str]) -> None:
    """The metrics' counts are the rows' counts (this run's rows by their run id), and add up."""
    total, ok, failed = metrics["images_total"], metrics["images_ok"], metrics["images_failed"]
    if ok + failed != total:
        problems.append(f"counts do not reconcile: images_ok {ok} + images_failed {failed} != images_total {total}")
    this_run = int((features["run_id"] == metrics.get("run_id")).sum()) if "run_id" in features else -1
    if this_run != ok:
        problems.append(f"features/ has {this_run} rows of this run, metrics say images_ok {ok}")
    if len(errors) != failed:
        problems.append(f"errors/ has {len(errors)} rows, metrics say images_failed {failed}")
    if metrics.get("features_total", len(features)) != len(features):
        problems.append(f"features/ has {len(features)} rows, metrics say features_total {metrics['features_total']}")


def _check_space(filesystem: pafs.FileSystem, root: str, metrics: dict, pca: pd.DataFrame, problems: list[str]) -> None:
    """Every pca/ row is in the output's one PCA space: the model id of the rows, the metrics and space.json."""
    expected = metrics.get("pca_model_id")
    ids = set(pca["pca_model_id"].fillna("")) if "pca_model_id" in pca else {""}
    if len(pca) and ids != {expected}:
        problems.append(f"pca/ rows are in {len(ids)} PCA space(s) {sorted(ids)[:3]}, metrics say {expected}")
    try:
        with filesystem.open_input_stream(f"{root}/space.json") as stream:
            recorded = json.loads(stream.read()).get("pca_model_id")
    except (FileNotFoundError, OSError):
        recorded = None
    if recorded != expected:
        problems.append(f"space.json records PCA model {recorded}, metrics say {expected}")


def _per_class(features: pd.DataFrame, errors: pd.DataFrame) -> dict[str, dict[str, int]]:
    rows = pd.concat(
        [features.assign(status="ok")[["label", "status"]], errors.assign(status="failed")[["label", "status"]]]
    )
    if rows.empty:
        return {}
    table = rows.value_counts().unstack(fill_value=0)
    return {
        label: {"ok": int(row.get("ok", 0)), "failed": int(row.get("failed", 0))}
        for label, row in table.sort_index().iterrows()
    }


def check_output(output: str, filesystem: pafs.FileSystem, images: str | None = None) -> ValidationReport:
    """Read everything the run wrote and check it against the input; raise :class:`OutputInvalid` if anything is off.

    ``images`` is the input the run was asked to read (default: the one its metrics name).
    """
    root = filesystem_path(output)
    try:
        with filesystem.open_input_stream(f"{root}/metrics.json") as stream:
            metrics = json.loads(stream.read())
    except (FileNotFoundError, OSError) as exc:
        raise OutputInvalid(
            f"{output} holds no finished run: metrics.json is missing ({exc}); the job did not complete"
        ) from None
    problems: list[str] = []
    features_table = _read_table(filesystem, f"{root}/features")
    features = features_table.select([c for c in ("path", "label", "run_id") if c in features_table.schema.names])
    features = features.to_pandas()
    errors = _read_table(filesystem, f"{root}/errors", ["path", "label", "error", "run_id"]).to_pandas()
    pca_table = _read_table(filesystem, f"{root}/pca")
    pca = pca_table.select([c for c in ("path", "pca_model_id") if c in pca_table.schema.names]).to_pandas()

    _check_counts(metrics, features, errors, problems)
    _check_rows(features, errors, pca, problems)
    found, kept = _check_against_input(images or metrics["images"], filesystem, metrics, features, errors)
    problems += found
    _check_space(filesystem, root, metrics, pca, problems)
    if metrics["feature_dim"] != FEATURE_DIM:
        problems.append(f"feature_dim is {metrics['feature_dim']}, expected {FEATURE_DIM}")
    _check_vectors("features/", features_table, "features", FEATURE_DIM, problems)
    _check_vectors("pca/", pca_table, "pca", metrics["pca_components"], problems)
    _check_variance(metrics, problems)
    if problems:
        raise OutputInvalid(f"output {output} is invalid:\n- " + "\n- ".join(problems))
    samples = errors.head(20)[["path", "error"]].to_dict("records")
    return ValidationReport(output, metrics, _per_class(features, errors), samples, kept)


@task(name="validate-output", cache_policy=NO_CACHE)
def validate_output(output: str, filesystem: pafs.FileSystem | None = None, images: str | None = None) -> dict:
    """Check the output with pandas against the input listed again (every image accounted for, labels, counts,
    one PCA space, dimensions, finite values, variance)."""
    report = check_output(output, filesystem or pafs.LocalFileSystem(), images)
    return report.as_dict()
