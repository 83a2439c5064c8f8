"""The driver JVM's class-data archive (AppCDS): Spark's classes mapped from one file instead of loaded from its jars.

A local run's driver JVM spends most of its ~3 s start loading and verifying the classes of the ~280 jars in Spark's
home. The JVM can write the classes a run loaded into an archive when it exits (``-XX:ArchiveClassesAtExit``, JDK 13+)
and map that archive at the start of later runs (``-XX:SharedArchiveFile``): the same classes, ready to use.

An archive belongs to one Spark home and one JVM. Its file name is a hash of both (the home's path, each jar's name,
size and time, the ``java`` that ``spark-class`` runs and that JVM's library), so an upgrade or a reinstall of either
makes a new one instead of using a stale one (which the JVM would refuse); a JVM given an archive it cannot use
prints one warning and starts as it would without it. The archive is made once, by
``python -m tasks.local.class_archive`` (``.ci/setup.sh`` runs it) or, where it is missing, at the end of the next
local run, and lives under ``~/.cache/fruitflow/jvm`` (``FRUITFLOW_CACHE``).

Measured in pairs (docs/performance.md, "The driver JVM maps its classes from an archive"): a ``spark-submit`` of the
job on 24 small images 12.6 -> 9.5 s, of a two-line Spark script 4.7 -> 3.0 s.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tasks.job_files import CACHE

ARCHIVES = CACHE / "jvm"
# What the archive is made from: a session that does what every run does first (start, plan, run a Python task over
# Arrow, write and read Parquet), so the classes of those steps are in it.
WARM_UP_SCRIPT = Path(__file__).with_name("class_archive_warm_up.py")


def _java(environ: dict[str, str] | None = None) -> Path | None:
    """The ``java`` that ``spark-class`` starts: ``$JAVA_HOME/bin/java``, else the first on ``PATH``."""
    environ = os.environ if environ is None else environ
    if environ.get("JAVA_HOME"):
        return Path(environ["JAVA_HOME"], "bin", "java").resolve()
    found = shutil.which("java", path=environ.get("PATH"))
    return Path(found).resolve() if found else None


def _stat_key(path: Path) -> str:
    stat = path.stat()
    return f"{path}:{stat.st_size}:{stat.st_mtime_ns}"


def archive_path(home: Path, environ: dict[str, str] | None = None) -> Path | None:
    """Where the archive of this Spark home and this JVM lives (it may not exist yet); None without a ``java``."""
    java = _java(environ)
    if java is None or not java.exists():
        return None
    jvm_library = next(iter(sorted(java.parent.parent.glob("lib/*/libjvm.so"))), java)
    jars = sorted((home / "jars").glob("*.jar"))
    # The JVM checks each jar's size and time against the archive's: a reinstall at the same path needs a new one.
    identity = "\n".join([str(home.resolve()), _stat_key(java), _stat_key(jvm_library), *map(_stat_key, jars)])
    return ARCHIVES / f"spark-classes-{hashlib.sha256(identity.encode()).hexdigest()[:16]}.jsa"


def java_options(home: Path, environ: dict[str, str] | None = None) -> list[str]:
    """The options that map the archive, or an empty list where there is none (yet)."""
    path = archive_path(home, environ)
    return [f"-XX:SharedArchiveFile={path}"] if path is not None and path.exists() else []


@contextlib.contextmanager
def run_options(home: Path, environ: dict[str, str] | None = None) -> Iterator[list[str]]:
    """The driver's options for one run: map the archive, or, where it is missing, write it when the run ends.

    The JVM writes it under a name of its own (about 7 s more at the end of that one run), moved into place only when
    the ``with`` block ends without an exception: a failed, cancelled or killed run leaves no half archive.
    """
    path = archive_path(home, environ)
    if path is None or path.exists():
        yield java_options(home, environ)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".partial-", dir=path.parent) as scratch:
        partial = Path(scratch) / path.name
        yield [f"-XX:ArchiveClassesAtExit={partial}"]
        if partial.exists():
            os.replace(partial, path)


def make_archive(home: Path, environ: dict[str, str] | None = None) -> Path | None:
    """Make the archive of ``home`` from a short warm-up session unless it is there; returns its path (None without a
    ``java`` or where the JVM made none). Two processes making it at once each write their own; the last move wins."""
    path = archive_path(home, environ)
    if path is None or path.exists():
        return path
    env = dict(os.environ if environ is None else environ, SPARK_HOME=str(home))
    with run_options(home, environ) as options, tempfile.TemporaryDirectory(prefix="class-archive-") as scratch:
        command = [str(home / "bin" / "spark-submit"), "--master", "local[1]", "--driver-java-options", *options]
        command += ["--conf", "spark.ui.enabled=false", str(WARM_UP_SCRIPT), scratch]
        # A failure here costs only speed: runs start as they would without the archive.
        subprocess.run(command, env=env, capture_output=True)
    return path if path.exists() else None


def main() -> None:
    import pyspark

    home = Path(os.environ.get("SPARK_HOME") or Path(pyspark.__file__).resolve().parent)
    path = make_archive(home, dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable))
    print(f"class archive of {home}: {path}" if path else "no class archive made (no java, or its warm-up failed)")


if __name__ == "__main__":
    main()
