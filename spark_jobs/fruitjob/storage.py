"""Small file operations on any URI Spark can reach (local, s3:// through EMRFS), via Hadoop's FileSystem."""

from __future__ import annotations

import json
import os
from typing import Any, Iterator, List, Optional, Tuple

from pyspark.sql import DataFrame, SparkSession

from fruitjob.rules import is_local, local_path

_GLOB_SPECIALS = "\\[]{}*?"
# The temporary file of an atomic local write (``.NAME.PID.tmp``): one left behind was killed before its rename.
WRITE_LEFTOVER_SUFFIX = ".tmp"


def escape_glob(path: str) -> str:
    """Escape Hadoop glob characters, so that ``/data/wk[49]`` or a file named ``a[1].jpg`` is read as itself.

    Spark's readers (``spark.read.parquet``, ``binaryFile``, ``textFile`` under ``PipelineModel.load``) expand globs in
    the paths they are given; writers and ``FileSystem`` calls do not.
    """
    return "".join("\\" + c if c in _GLOB_SPECIALS else c for c in path)


def read_parquet(spark: SparkSession, uri: str) -> DataFrame:
    """The Parquet dataset at ``uri`` (its name never read as a glob)."""
    return spark.read.parquet(escape_glob(uri))


def _path_and_fs(spark: SparkSession, uri: str):
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    return path, path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())


def exists(spark: SparkSession, uri: str) -> bool:
    path, fs = _path_and_fs(spark, uri)
    return bool(fs.exists(path))


def read_file(spark: SparkSession, uri: str) -> bytes:
    """A whole file, local (read directly) or on a Hadoop filesystem (s3://, hdfs://: through the JVM)."""
    if is_local(uri):
        with open(local_path(uri), "rb") as handle:
            return handle.read()
    return read_bytes(spark, uri)


def read_json_if_present(spark: SparkSession, uri: str) -> Optional[Any]:
    """The JSON document at ``uri``, or None when there is none; ``ValueError`` when it is not JSON."""
    if not exists(spark, uri):
        return None
    return json.loads(read_bytes(spark, uri).decode())


def read_bytes(spark: SparkSession, uri: str) -> bytes:
    path, fs = _path_and_fs(spark, uri)
    stream = fs.open(path)
    try:
        return bytes(spark.sparkContext._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
    finally:
        stream.close()


def write_bytes(spark: SparkSession, uri: str, data: bytes) -> None:
    """Write a whole file so that a reader sees the old content or the new one, never a part (a kill mid-write).

    Locally: a temporary file beside it, then an atomic rename over it. An object store's PUT is atomic already
    (the object appears when the stream closes).
    """
    if is_local(uri):
        _write_local_atomically(local_path(uri), data)
        return
    path, fs = _path_and_fs(spark, uri)
    stream = fs.create(path, True)
    try:
        stream.write(bytearray(data))
    finally:
        stream.close()


def _write_local_atomically(target: str, data: bytes) -> None:
    folder, name = os.path.split(target)
    os.makedirs(folder or ".", exist_ok=True)
    # Hadoop's local file system verifies a file against its ``.NAME.crc`` when there is one: a checksum of the
    # previous content would fail the new one, so it goes first (a file without it is read unverified).
    stale_checksum = os.path.join(folder, ".%s.crc" % name)
    if os.path.exists(stale_checksum):
        os.remove(stale_checksum)
    temporary = os.path.join(folder, ".%s.%d%s" % (name, os.getpid(), WRITE_LEFTOVER_SUFFIX))
    with open(temporary, "wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(temporary, target)


def delete(spark: SparkSession, uri: str) -> None:
    path, fs = _path_and_fs(spark, uri)
    if fs.exists(path):
        fs.delete(path, True)


def list_names(spark: SparkSession, uri: str) -> List[str]:
    """The names of the entries directly under the folder ``uri`` ([] when it is not there)."""
    path, fs = _path_and_fs(spark, uri)
    if not fs.exists(path):
        return []
    return sorted(str(status.getPath().getName()) for status in fs.listStatus(path))


def list_files_recursive(spark: SparkSession, uri: str) -> Iterator[Tuple[str, int, int, Optional[str]]]:
    """Yield (path, size, modified ms, ETag or None) of every file under ``uri``; paths as Hadoop prints them
    (not URL-encoded). The ETag comes from file systems that report one (Hadoop's ``EtagSource``: S3A)."""
    path, fs = _path_and_fs(spark, uri)
    files = fs.listFiles(path, True)
    etags = True
    while files.hasNext():
        status = files.next()
        etag = None
        if etags:
            try:
                etag = str(status.getEtag())
            except Exception:  # noqa: BLE001 - py4j raises when the status has no such method: stop asking
                etags = False
        yield str(status.getPath().toString()), int(status.getLen()), int(status.getModificationTime()), etag


def rename(spark: SparkSession, source: str, target: str) -> None:
    path, fs = _path_and_fs(spark, source)
    target_path = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(target)
    if not fs.rename(path, target_path):
        raise OSError("could not rename %s to %s" % (source, target))
