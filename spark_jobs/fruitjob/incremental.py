"""Which listed images a previous run into the same output already handled (by path and size)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from fruitjob import layout, storage
from fruitjob.listing import ImageFile


@dataclass(frozen=True)
class Plan:
    todo: List[ImageFile]
    already_done: int
    changed: List[str]  # paths done before whose size changed: their old rows are replaced


def _done_sizes(spark: SparkSession, output: str) -> Dict[str, int]:
    """path -> size of every image with a row in features/ or errors/ (errors/ has no size: -1)."""
    done: Dict[str, int] = {}
    features = layout.child(output, layout.FEATURES)
    if storage.exists(spark, features):
        for row in spark.read.parquet(features).select("path", "size").collect():
            done[row["path"]] = int(row["size"])
    errors = layout.child(output, layout.ERRORS)
    if storage.exists(spark, errors):
        frame = spark.read.parquet(errors)
        size = F.col("size") if "size" in frame.columns else F.lit(-1)
        for row in frame.select("path", size.alias("size")).collect():
            done.setdefault(row["path"], int(row["size"]))
    return done


def plan_increment(spark: SparkSession, output: str, images: List[ImageFile]) -> Plan:
    done = _done_sizes(spark, output)
    todo = [image for image in images if image.path not in done or done[image.path] not in (image.size, -1)]
    changed = [image.path for image in todo if image.path in done]
    return Plan(todo=todo, already_done=len(images) - len(todo), changed=changed)


def without_paths(frame: DataFrame, paths: List[str]) -> DataFrame:
    return frame.where(~F.col("path").isin(paths)) if paths else frame


def replace_dataset(spark: SparkSession, uri: str, frame: DataFrame) -> None:
    """Rewrite a dataset from a frame that reads it: write beside it, then swap the folders."""
    staged = uri + ".next"
    frame.write.mode("overwrite").parquet(staged)
    storage.delete(spark, uri)
    storage.rename(spark, staged, uri)
