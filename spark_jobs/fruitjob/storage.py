"""Small file operations on any URI Spark can reach (local, s3:// through EMRFS), via Hadoop's FileSystem."""

from __future__ import annotations

from typing import Iterator, Optional, Tuple

from pyspark.sql import DataFrame, SparkSession

_GLOB_SPECIALS = "\\[]{}*?"


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


def read_bytes(spark: SparkSession, uri: str) -> bytes:
    path, fs = _path_and_fs(spark, uri)
    stream = fs.open(path)
    try:
        return bytes(spark.sparkContext._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
    finally:
        stream.close()


def write_bytes(spark: SparkSession, uri: str, data: bytes) -> None:
    path, fs = _path_and_fs(spark, uri)
    stream = fs.create(path, True)
    try:
        stream.write(bytearray(data))
    finally:
        stream.close()


def delete(spark: SparkSession, uri: str) -> None:
    path, fs = _path_and_fs(spark, uri)
    if fs.exists(path):
        fs.delete(path, True)


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
