"""What the fake EMR cluster does to a job's output before uploading it, so that it reads as if run on EMR.

The fake runs the real job on a local copy of the images (pip's pyspark has no S3 connector); on EMR the same job
reads ``s3://`` directly, so its rows and metrics name S3 URIs. Rewriting the local prefixes to the S3 ones is the
only difference; everything else is the job's own output.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq


def _swap(value, local: str, remote: str):
    if isinstance(value, str) and (value == local or value.startswith(local + "/")):
        return remote + value[len(local) :]
    if isinstance(value, list):
        return [_swap(item, local, remote) for item in value]
    if isinstance(value, dict):
        return {key: _swap(item, local, remote) for key, item in value.items()}
    return value


# the columns of an output's tables that name an image or an output (health/pairs: the other image and its output)
PATH_COLUMNS = ("path", "other_path", "other_output")


def as_if_on_s3(output: Path, prefixes: dict[str, str]) -> None:
    """Rewrite ``file:``/plain local prefixes to their S3 URIs in the datasets' ``path`` column and the JSON files."""
    pairs = [(f"file:{local}", remote) for local, remote in prefixes.items()] + list(prefixes.items())
    for name in ("features", "errors", "pca", "health/pairs", "health/outliers", "health/mislabels"):
        folder = output / name
        if not folder.is_dir():
            continue
        for part in sorted(folder.glob("*.parquet")):
            table = pq.read_table(part)
            for column in PATH_COLUMNS:
                if column not in table.column_names:
                    continue
                paths = table[column]
                for local, remote in pairs:
                    paths = pc.replace_substring_regex(paths, "^" + _regex(local), remote.replace("\\", "\\\\"))
                table = table.set_column(table.schema.get_field_index(column), column, paths)
            # with page checksums, as the job's Spark writes them on EMR (fruitjob.tuning)
            pq.write_table(table, part, write_page_checksum=True)
        for checksum in folder.glob(".*.crc"):
            checksum.unlink()
    for name in ("metrics.json", "space.json"):
        path = output / name
        if path.exists():
            data = json.loads(path.read_text())
            for local, remote in pairs:
                data = _swap(data, local, remote)
            path.write_text(json.dumps(data, indent=2))


def _regex(text: str) -> str:
    return re.escape(text)
