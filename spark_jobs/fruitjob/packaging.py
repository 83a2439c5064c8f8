"""Make the ``fruitjob`` package importable by the Python workers, wherever the driver found it."""

from __future__ import annotations

import io
import os
import tempfile
import zipfile

from pyspark.sql import SparkSession

import fruitjob
from fruitjob import private_files

_SHIPPED = set()
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def _package_dir() -> str:
    return os.path.dirname(os.path.abspath(fruitjob.__file__))


def _zip_bytes(root: str) -> bytes:
    """``fruitjob``'s sources as a zip whose bytes depend only on them (fixed times and modes, stored)."""
    files = sorted(
        os.path.join(folder, name) for folder, _dirs, names in os.walk(root) for name in names if name.endswith(".py")
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for path in files:
            info = zipfile.ZipInfo(os.path.relpath(path, os.path.dirname(root)).replace(os.sep, "/"), _ZIP_TIME)
            info.external_attr = 0o644 << 16
            with open(path, "rb") as handle:
                archive.writestr(info, handle.read())
    return buffer.getvalue()


def zip_package(target_dir: str) -> str:
    """Zip ``fruitjob`` (sources only) into ``target_dir``; the name carries the sha256 of the zip's bytes.

    A zip already there under that name is reused only when its bytes match the name (another one, planted
    or half-written, is replaced, never shipped); it is written atomically. The system temp directory, shared
    by every user, is never the target: the caller's private directory in it is (``private_files``).
    """
    if os.path.realpath(target_dir) == os.path.realpath(tempfile.gettempdir()):
        target_dir = private_files.private_dir()
    return private_files.store("fruitjob", _zip_bytes(_package_dir()), ".zip", target_dir)


def ship_package(spark: SparkSession) -> None:
    """When the job runs from a source tree (not from a ``--py-files`` zip), send the package along."""
    if not os.path.isdir(_package_dir()):
        return  # imported from a zip that spark-submit already distributes
    key = (id(spark.sparkContext), _package_dir())
    if key in _SHIPPED:
        return
    spark.sparkContext.addPyFile(zip_package(private_files.private_dir()))
    _SHIPPED.add(key)
