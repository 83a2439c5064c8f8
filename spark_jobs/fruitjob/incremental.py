"""What an --incremental run does to the output so that it mirrors the input: which listed images a previous run
already featurized (same size, time and ETag), which changed, and which rows belong to files no longer listed."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from fruitjob import layout, storage
from fruitjob.completeness import dataset_complete
from fruitjob.listing import ImageFile

Key = Tuple[Optional[int], Optional[int], Optional[str]]


@dataclass(frozen=True)
class Plan:
    todo: List[ImageFile]  # readable images to featurize in this run
    already_done: int  # listed images whose features are there and still current
    changed: List[str]  # paths with features that no longer match the file: their old rows are replaced
    # path -> label of the rows whose file is no longer listed (deleted, or moved: a moved photo is new under its
    # new path): their rows leave features/ and pca/
    removed: Dict[str, str] = field(default_factory=dict)

    @property
    def stale(self) -> List[str]:
        """Every path whose rows go before this run writes: changed files and files no longer in the input."""
        return [*self.changed, *sorted(self.removed)]

    def removed_per_class(self) -> Dict[str, int]:
        return dict(sorted(Counter(self.removed.values()).items()))


def _done_keys(spark: SparkSession, output: str) -> Dict[str, Tuple[str, Key]]:
    """path -> (label, (size, modified, etag)) of every image with a row in features/ (older outputs lack the last
    two)."""
    uri = layout.child(output, layout.FEATURES)
    if not dataset_complete(spark, uri):  # absent, or left unfinished by a killed run: no row of it is done
        return {}
    frame = storage.read_parquet(spark, uri)
    columns = [name for name in ("path", "label", "size", "modified", "etag") if name in frame.columns]
    done = {}
    for row in frame.select(*columns).collect():
        values = row.asDict()
        done[values["path"]] = (values["label"], (values.get("size"), values.get("modified"), values.get("etag")))
    return done


def is_current(done: Key, image: ImageFile) -> bool:
    """The features of ``done`` are still those of ``image``: same size, and the same modification time and ETag
    wherever both sides know them."""
    size, modified, etag = done
    if image.problem is not None or size != image.size:
        return False
    if modified is not None and image.modified is not None and modified != image.modified:
        return False
    return not (etag and image.etag and etag != image.etag)


def plan_increment(spark: SparkSession, output: str, images: List[ImageFile]) -> Plan:
    """Every image is featurized again unless its features are current; images that failed before are retried;
    rows of files the listing no longer has are removed (the output mirrors the input)."""
    done = _done_keys(spark, output)
    current = [image for image in images if image.path in done and is_current(done[image.path][1], image)]
    current_paths = {image.path for image in current}
    todo = [image for image in images if image.problem is None and image.path not in current_paths]
    changed = [image.path for image in images if image.path in done and image.path not in current_paths]
    listed = {image.path for image in images}
    removed = {path: label for path, (label, _key) in done.items() if path not in listed}
    return Plan(todo=todo, already_done=len(current), changed=changed, removed=removed)


def without_paths(frame: DataFrame, paths: List[str]) -> DataFrame:
    return frame.where(~F.col("path").isin(paths)) if paths else frame


def replace_dataset(spark: SparkSession, uri: str, frame: DataFrame) -> None:
    """Rewrite a dataset from a frame that reads it: write beside it, then swap the folders."""
    staged = uri + ".next"
    frame.write.mode("overwrite").parquet(staged)
    storage.delete(spark, uri)
    storage.rename(spark, staged, uri)
