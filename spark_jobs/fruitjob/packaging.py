"""Make the ``fruitjob`` package importable by the Python workers, wherever the driver found it."""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile

from pyspark.sql import SparkSession

import fruitjob

_SHIPPED = set()


def _package_dir() -> str:
    return os.path.dirname(os.path.abspath(fruitjob.__file__))


def zip_package(target_dir: str) -> str:
    """Zip ``fruitjob`` (sources only) into ``target_dir``; the name carries a hash of the content."""
    root = _package_dir()
    files = sorted(
        os.path.join(folder, name) for folder, _dirs, names in os.walk(root) for name in names if name.endswith(".py")
    )
    digest = hashlib.sha256()
    for path in files:
        with open(path, "rb") as handle:
            digest.update(path.encode() + handle.read())
    target = os.path.join(target_dir, "fruitjob-%s.zip" % digest.hexdigest()[:12])
    if not os.path.exists(target):
        with zipfile.ZipFile(target, "w") as archive:
            for path in files:
                archive.write(path, os.path.relpath(path, os.path.dirname(root)))
    return target


def ship_package(spark: SparkSession) -> None:
    """When the job runs from a source tree (not from a ``--py-files`` zip), send the package along."""
    if not os.path.isdir(_package_dir()):
        return  # imported from a zip that spark-submit already distributes
    key = (id(spark.sparkContext), _package_dir())
    if key in _SHIPPED:
        return
    spark.sparkContext.addPyFile(zip_package(tempfile.gettempdir()))
    _SHIPPED.add(key)
