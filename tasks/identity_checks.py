"""The output's feature space, as each of its records gives it, checked against the others.

metrics.json and space.json name the space (weights, their sha256, alpha, featurizer, the int8 calibration) and the
PCA model of pca/; every Parquet file of features/ and pca/ records the space in its own footer, pca/ with the model's
id (``fruitjob.identity.recorded``); the model keeps its identity.json and its pca_model.npz, from whose mean and
components the id is computed again here. An edited metrics.json, a file from another space or a replaced model
disagrees with the others: each disagreement is named with every record's value, so that the odd one out shows.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow.dataset as ds
from pyarrow import fs as pafs

from fruitjob.identity import IDENTITY_FILE, IDENTITY_KEYS, PARQUET_METADATA_KEY, pca_model_id
from fruitjob.metrics import RunMetrics
from tasks.uris import filesystem_path

# Where Spark keeps its schema, column metadata included, in each Parquet file's key-value metadata.
SPARK_SCHEMA_KEY = b"org.apache.spark.sql.parquet.row.metadata"
MODEL_ARRAYS = "pca_model.npz"
MODEL_ID = "pca_model_id"
# metrics.json and space.json are written by the same run: they agree on the weights' name too. The Parquet files and
# the model may come from earlier runs into the same space, which may have named the same weights by another path.
RUN_KEYS = ("weights", *IDENTITY_KEYS)
EXAMPLES = 2

Record = tuple[str, dict[str, Any]]  # where a record is, and what it says


def check_identity(filesystem: pafs.FileSystem, root: str, metrics: RunMetrics, problems: list[str]) -> None:
    """metrics.json, space.json, the footers of features/ and pca/ and the PCA model all name the one space."""
    recorded_by_metrics = {key: getattr(metrics, key) for key in RUN_KEYS}
    records: list[Record] = [("metrics.json", {**recorded_by_metrics, MODEL_ID: metrics.pca_model_id})]
    space = _read_json(filesystem, f"{root}/space.json", problems)
    if space is not None:  # its pca_model_id against metrics.json is output_checks.check_space's
        records.append(("space.json", dict(space.get("identity") or {})))
    features = list(_footer_records(filesystem, root, "features", "features", problems))
    pca = list(_footer_records(filesystem, root, "pca", "pca", problems))
    _require_records(filesystem, root, metrics, features, pca, problems)
    records += [(place, record) for place, record in features + pca if record is not None]
    records += _model_records(filesystem, root, metrics, space, problems)
    totals = {"features/": len(features), "pca/": len(pca)}
    for key in (*RUN_KEYS, MODEL_ID):
        _compare(key, records, totals, problems)


def _compare(key: str, records: list[Record], totals: dict[str, int], problems: list[str]) -> None:
    groups: list[tuple[Any, list[str]]] = []  # each value, and the records that give it
    for place, record in records:
        if key not in record:  # older records lack what was added since (calibration)
            continue
        for value, places in groups:
            if value == record[key]:
                places.append(place)
                break
        else:
            groups.append((record[key], [place]))
    if len(groups) > 1:
        problems.append(
            f"{key} differs between the records of the output's space: "
            + "; ".join(f"{value!r} in {_places(places, totals)}" for value, places in groups)
        )


def _places(places: list[str], totals: dict[str, int]) -> str:
    """``metrics.json, every file of features/ (2), 1 of 2 files of pca/ (pca/part-0...)``: files by name where
    only some of their folder's give the value."""
    named = [place for place in places if not place.startswith(tuple(totals))]
    for folder, total in totals.items():
        files = [place for place in places if place.startswith(folder)]
        if files and len(files) == total:
            named.append(f"every file of {folder} ({total})")
        elif files:
            shown = ", ".join(files[:EXAMPLES]) + (", ..." if len(files) > EXAMPLES else "")
            named.append(f"{len(files)} of {total} files of {folder} ({shown})")
    return ", ".join(named)


def _footer_records(
    filesystem: pafs.FileSystem, root: str, folder: str, column: str, problems: list[str]
) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """(file, the space its footer records, or None) for each Parquet file of ``folder``: only space-defining keys."""
    try:
        dataset = ds.dataset(f"{root}/{folder}", filesystem=filesystem, format="parquet")
        fragments = list(dataset.get_fragments())
    except (OSError, ValueError) as exc:  # a missing dataset is named where the rows are read
        problems.append(f"{folder}/ footers cannot be read: {str(exc).splitlines()[0]}")
        return
    for fragment in fragments:
        place = f"{folder}/{fragment.path.rsplit('/', 1)[-1]}"
        try:
            schema = json.loads((fragment.metadata.metadata or {}).get(SPARK_SCHEMA_KEY, b"{}"))
        except (OSError, ValueError) as exc:
            problems.append(f"{place}: its footer cannot be read ({str(exc).splitlines()[0]})")
            continue
        fields = {entry.get("name"): entry.get("metadata") or {} for entry in schema.get("fields", [])}
        text = fields.get(column, {}).get(PARQUET_METADATA_KEY)
        record = json.loads(text) if text else None
        yield place, None if record is None else _space_keys(record)


def _require_records(
    filesystem: pafs.FileSystem,
    root: str,
    metrics: RunMetrics,
    features: list[tuple[str, dict[str, Any] | None]],
    pca: list[tuple[str, dict[str, Any] | None]],
    problems: list[str],
) -> None:
    """This run wrote its files with the space in their footers; files of older runs may lack it (older jobs)."""
    unrecorded = [place for place, record in features if record is None]
    for place in unrecorded:
        table = ds.dataset(f"{root}/{place}", filesystem=filesystem, format="parquet").to_table(columns=["run_id"])
        if metrics.run_id in set(table.column("run_id").to_pylist()):
            problems.append(f"{place} holds rows of this run but records no feature space in its footer")
    if features and not unrecorded:  # all of features/ is of this job's version: so is pca/
        problems += [f"{place} records no feature space in its footer" for place, record in pca if record is None]


def _model_folder(root: str, metrics: RunMetrics, space: dict[str, Any] | None) -> tuple[str, str] | None:
    """(the model as the output names it, its path for the file system); a relative name is under the output."""
    named = (space or {}).get("pca_model") or metrics.pca_model
    if not named:
        return None
    if "://" in named or named.startswith(("/", "file:")):
        return named.rstrip("/"), filesystem_path(named)
    return named.rstrip("/"), f"{root}/{named.strip('/')}"


def _model_records(
    filesystem: pafs.FileSystem, root: str, metrics: RunMetrics, space: dict[str, Any] | None, problems: list[str]
) -> list[Record]:
    """The model's identity.json, and its id computed again from pca_model.npz (whose variance metrics repeat)."""
    found = _model_folder(root, metrics, space)
    if found is None:
        problems.append("neither space.json nor metrics.json names the PCA model of pca/")
        return []
    named, folder = found
    records: list[Record] = []
    saved = _read_json(filesystem, f"{folder}/{IDENTITY_FILE}", problems)
    if saved is not None:  # models of older jobs have none
        records.append((f"{named}/{IDENTITY_FILE}", _space_keys(saved)))
    try:
        with filesystem.open_input_file(f"{folder}/{MODEL_ARRAYS}") as stream:
            arrays = np.load(io.BytesIO(stream.read()))
            mean, components, variance = arrays["mean"], arrays["components"], arrays["explained_variance"]
    except (OSError, KeyError, ValueError) as exc:
        problems.append(f"the PCA model {named} cannot be checked: {MODEL_ARRAYS} ({str(exc).splitlines()[0]})")
        return records
    records.append((f"{named}/{MODEL_ARRAYS} (its mean and components)", {MODEL_ID: pca_model_id(mean, components)}))
    told = np.asarray(metrics.explained_variance, dtype=np.float64)
    if told.shape != variance.shape or not np.allclose(told, variance, rtol=1e-9, atol=0.0):
        problems.append(
            f"explained_variance in metrics.json is {told.tolist()}, the PCA model {named} has {variance.tolist()}"
        )
    return records


def _space_keys(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key in (*IDENTITY_KEYS, MODEL_ID)}


def _read_json(filesystem: pafs.FileSystem, path: str, problems: list[str]) -> dict[str, Any] | None:
    try:
        with filesystem.open_input_stream(path) as stream:
            return json.loads(stream.read())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        problems.append(f"{path.rsplit('/', 1)[-1]} cannot be read: {str(exc).splitlines()[0]}")
        return None
