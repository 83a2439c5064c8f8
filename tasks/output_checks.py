"""The checks of a run's output against independent facts: the rows, the metrics, space.json and the input listed again.

Each appends what it finds to ``problems``; ``tasks.validation`` runs them all and reports every problem at once.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from pyarrow import fs as pafs

from fruitjob.metrics import RunMetrics
from tasks.errors import FruitflowError
from tasks.input_drift import Drift, arrived_after, deleted_during, seconds
from tasks.input_listing import list_input_facts
from tasks.uris import filesystem_path

# Up to this many files the input is listed again and compared path by path; beyond, a sample of the rows is
# checked to exist in the input (listing millions of S3 objects again would cost minutes and requests).
FULL_CHECK_FILES = 200_000
SAMPLE_SIZE = 1_000
EXAMPLES = 3


# Every page's CRC is verified as it is read: the job writes them (fruitjob.tuning), so a byte changed in a file since
# fails here instead of passing as a slightly different value (pyarrow ignores Hadoop's .crc side files).
VERIFIED_PARQUET = ds.ParquetFileFormat(
    default_fragment_scan_options=ds.ParquetFragmentScanOptions(page_checksum_verification=True)
)


class CorruptParquet(FruitflowError, ValueError):
    """A file of the output cannot be read as written; the message names each such file and why."""


def read_table(filesystem: pafs.FileSystem, path: str, columns: list[str] | None = None) -> pa.Table:
    """The dataset at ``path``, page checksums verified; :class:`CorruptParquet` naming the files that fail."""
    dataset = ds.dataset(path, filesystem=filesystem, format=VERIFIED_PARQUET, exclude_invalid_files=True)
    wanted = None if columns is None else [c for c in columns if c in dataset.schema.names]
    try:
        return dataset.to_table(columns=wanted)
    except (OSError, pa.ArrowException) as exc:
        raise CorruptParquet(_corrupt_files(dataset, wanted) or f"{path}: {_first_line(exc)}") from None


def _corrupt_files(dataset: ds.Dataset, columns: list[str] | None) -> str:
    """Which files of ``dataset`` fail to read, file by file (the dataset's error does not say which)."""
    found = []
    for fragment in dataset.get_fragments():
        try:
            fragment.to_table(schema=dataset.schema, columns=columns)
        except (OSError, pa.ArrowException) as exc:
            why = "a page fails its checksum: the file changed after it was written" if "CRC" in str(exc) else ""
            name = "/".join(fragment.path.rsplit("/", 2)[-2:])
            found.append(f"{name} cannot be read ({why or _first_line(exc)})")
    return "\n- ".join(found)


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _examples(paths) -> str:
    shown = sorted(paths)[:EXAMPLES]
    return ", ".join(repr(path) for path in shown) + (", ..." if len(paths) > EXAMPLES else "")


def check_vectors(name: str, table: pa.Table, column: str, dim: int, problems: list[str]) -> None:
    if table.num_rows == 0:
        return
    values = table.column(column).combine_chunks()
    lengths = pc.list_value_length(values).to_numpy(zero_copy_only=False)
    flat = pc.list_flatten(values).to_numpy(zero_copy_only=False)
    if not (lengths == dim).all():
        problems.append(f"{name}: {int((lengths != dim).sum())} rows do not have {dim} values")
    if not np.isfinite(flat).all():
        problems.append(f"{name}: {int((~np.isfinite(flat)).sum())} values are NaN or infinite")


def check_variance(metrics: RunMetrics, problems: list[str]) -> None:
    variance = np.asarray(metrics.explained_variance, dtype=float)
    if len(variance) != metrics.pca_components:
        problems.append(f"{len(variance)} explained variances for {metrics.pca_components} components")
    if len(variance) and not ((variance > 0) & (variance <= 1)).all():
        problems.append(f"explained variance outside (0, 1]: {variance.tolist()}")
    if len(variance) > 1 and (np.diff(variance) > 1e-9).any():
        problems.append("explained variance is not non-increasing")


def check_rows(features: pd.DataFrame, errors: pd.DataFrame, pca: pd.DataFrame, problems: list[str]) -> None:
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


def check_against_input(
    images: str, filesystem: pafs.FileSystem, metrics: RunMetrics, features: pd.DataFrame, errors: pd.DataFrame
) -> tuple[list[str], Drift]:
    """The rows against the input listed again: (problems, what came or went during the run).

    The output mirrors the input: every image in it is in features/ or errors/ unless it arrived after the job's
    listing, and no row is of a file the input does not have unless this run's file was deleted during the run
    (``tasks.input_drift`` says how both are told from lost images and stale rows).
    """
    problems: list[str] = []
    if metrics.files_seen > FULL_CHECK_FILES:
        rows = pd.concat([features["path"], errors["path"]])
        sample = random.Random(0).sample(list(rows), min(SAMPLE_SIZE, len(rows)))
        absent = [p for p in sample if filesystem.get_file_info(filesystem_path(p)).type == pafs.FileType.NotFound]
        if absent:
            problems.append(f"{len(absent)} of {len(sample)} sampled rows are not in the input ({_examples(absent)})")
        return problems, Drift()
    facts = list_input_facts(images, filesystem)
    listed = set(facts.images)
    listed_at, finished_at = seconds(metrics.listed_at), seconds(metrics.finished_at)
    featurized, failed = set(features["path"]), set(errors["path"])
    missing = listed - featurized - failed
    arrived = sorted(path for path in missing if arrived_after(path, filesystem, listed_at))
    lost = missing - set(arrived)
    if lost:
        problems.append(
            f"{len(lost)} images of the input are in neither features/ nor errors/ ({_examples(lost)}), "
            + (
                f"and were there before the job listed the input (at {metrics.listed_at})"
                if metrics.listed_at
                else "and the job recorded no listing time (listed_at) to tell arrivals by"
            )
        )
    deleted: list[str] = []
    for name, frame in (("features/", features), ("errors/", errors)):
        gone = frame[~frame["path"].isin(listed)]
        ours = gone["run_id"] == metrics.run_id if "run_id" in gone else pd.Series(False, index=gone.index)
        reasons = gone["error"] if "error" in gone else pd.Series(None, index=gone.index, dtype=object)
        during = [
            mine and deleted_during(path, reason, listed_at, finished_at)
            for path, mine, reason in zip(gone["path"], ours, reasons, strict=True)
        ]
        stale = set(gone["path"][[not d for d in during]])
        deleted += list(gone["path"][during])
        if stale:
            problems.append(
                f"{name} has {len(stale)} rows for files not in the input ({_examples(stale)}): "
                "an --incremental run removes them"
            )
    rows = pd.concat([features[["path", "label"]], errors[["path", "label"]]])
    rows = rows[rows["path"].isin(listed)]
    wrong = rows[rows["label"] != rows["path"].map(facts.images)]
    if len(wrong):
        problems.append(
            f"{len(wrong)} rows do not carry their label (the first folder under the input): "
            f"{_examples(set(wrong['path']))}"
        )
    # the job's counts are of its listing: the input now, less what arrived since, plus what went during the run
    other_files = facts.other_files
    if metrics.files_skipped != other_files:  # only then ask for timestamps (a request each on S3)
        other_files -= sum(arrived_after(path, filesystem, listed_at) for path in facts.other_paths)
    images_listed = len(listed) - len(arrived) + len(deleted)
    if metrics.files_skipped != other_files:
        problems.append(f"files_skipped is {metrics.files_skipped}, the input has {other_files} non-images")
    if metrics.files_seen != images_listed + other_files:
        problems.append(f"files_seen is {metrics.files_seen}, the input has {images_listed + other_files} files")
    reported = {entry.path for entry in metrics.folders_skipped}
    if reported != facts.unlisted_folders:
        problems.append(
            f"folders not listed: metrics name {_examples(reported)}, the input has {_examples(facts.unlisted_folders)}"
        )
    done_before = metrics.images_already_done
    if metrics.images_total + done_before != images_listed:
        problems.append(
            f"images_total {metrics.images_total} + images_already_done {done_before} != "
            f"{images_listed} images in the input"
            + (f" ({len(arrived)} arrived and {len(deleted)} went after the listing)" if arrived or deleted else "")
        )
    return problems, Drift(arrived=arrived, deleted=sorted(deleted))


def check_counts(metrics: RunMetrics, features: pd.DataFrame, errors: pd.DataFrame, problems: list[str]) -> None:
    """The metrics' counts are the rows' counts (this run's rows by their run id), and add up."""
    total, ok, failed = metrics.images_total, metrics.images_ok, metrics.images_failed
    if ok + failed != total:
        problems.append(f"counts do not reconcile: images_ok {ok} + images_failed {failed} != images_total {total}")
    this_run = int((features["run_id"] == metrics.run_id).sum()) if "run_id" in features else -1
    if this_run != ok:
        problems.append(f"features/ has {this_run} rows of this run, metrics say images_ok {ok}")
    if len(errors) != failed:
        problems.append(f"errors/ has {len(errors)} rows, metrics say images_failed {failed}")
    if metrics.features_total not in (None, len(features)):
        problems.append(f"features/ has {len(features)} rows, metrics say features_total {metrics.features_total}")


def check_space(
    filesystem: pafs.FileSystem, root: str, metrics: RunMetrics, pca: pd.DataFrame, problems: list[str]
) -> None:
    """Every pca/ row is in the output's one PCA space: the model id of the rows, the metrics and space.json."""
    expected = metrics.pca_model_id
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
