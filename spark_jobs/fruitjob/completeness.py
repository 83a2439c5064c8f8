"""When a part of an output counts as written: the one rule the job, a resumed run and ``--pca-model`` all follow.

A run can be killed at any moment, so nothing half-written may ever be read as data:

- **A Parquet dataset** (features/, errors/, pca/, a model's stage data) is complete when Spark's ``_SUCCESS`` marker
  is in it: the committer writes it last, once every part is in place (so does ``small_tables``, which writes errors/
  from the driver). An overwrite deletes the folder first, so a killed one holds only ``_temporary/`` (and no
  marker); a killed append leaves ``_temporary/`` beside the complete parts of the earlier write (and its marker).
- **A PCA model folder** (a Spark ML ``PipelineModel`` + ``pca_model.npz`` + ``identity.json``) is complete when its
  metadata and every stage's metadata and data are complete, and ``identity.json``, written last, is there; the model
  it then loads must have the id ``identity.json`` records (checked where it is loaded, ``pca_models``).
- **A small JSON file** (space.json, metrics.json, identity.json, the lease) is written atomically
  (``storage.write_bytes``): it is there whole or not at all.
"""

from __future__ import annotations

import json
from typing import List, Optional

from pyspark.sql import SparkSession

from fruitjob import layout, storage
from fruitjob.identity import IDENTITY_FILE

SUCCESS = "_SUCCESS"
TEMPORARY = "_temporary"
NUMPY_FILE = "pca_model.npz"
# What an interrupted incremental.replace_dataset leaves: the rewritten dataset beside the one it replaces.
REPLACEMENT_SUFFIX = ".next"


def dataset_complete(spark: SparkSession, uri: str) -> bool:
    return storage.exists(spark, layout.child(uri, SUCCESS))


def _stage_folders(spark: SparkSession, model: str) -> Optional[List[str]]:
    """``stages/<index>_<uid>`` of every stage the pipeline's metadata names, or None when it cannot be read."""
    metadata = layout.child(model, "metadata")
    parts = [name for name in storage.list_names(spark, metadata) if name.startswith("part-")]
    if not parts:
        return None
    try:
        record = json.loads(storage.read_bytes(spark, layout.child(metadata, parts[0])).decode().splitlines()[0])
        uids = record["paramMap"]["stageUids"]
    except (ValueError, KeyError, IndexError, UnicodeDecodeError):
        return None
    return ["stages/%d_%s" % (index, uid) for index, uid in enumerate(uids)]


def model_problem(spark: SparkSession, model: str) -> Optional[str]:
    """What is missing from the PCA model folder ``model`` (paths relative to it), or None when it is complete."""
    if not storage.exists(spark, model):
        return "%s/ is missing" % model.rstrip("/").rsplit("/", 1)[-1]
    if not dataset_complete(spark, layout.child(model, "metadata")):
        return "metadata/ is missing or incomplete"
    stages = _stage_folders(spark, model)
    if stages is None:
        return "metadata/ does not name the pipeline's stages"
    missing = [
        "%s/%s" % (stage, part)
        for stage in stages
        for part in ("metadata", "data")
        if not dataset_complete(spark, layout.child(model, "%s/%s" % (stage, part)))
    ]
    missing += [name for name in (NUMPY_FILE, IDENTITY_FILE) if not storage.exists(spark, layout.child(model, name))]
    if missing:
        return "%s %s missing or incomplete" % (", ".join(missing), "is" if len(missing) == 1 else "are")
    return None
