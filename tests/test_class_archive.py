"""The driver JVM's class-data archive (tasks/local/class_archive.py): keyed by Spark home and JVM, mapped by a real
``spark-submit``, made only by a run that ended well."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tasks.local import class_archive
from tasks.local.spark_submit import DRIVER_JAVA_OPTIONS, job_environment, spark_home


@pytest.fixture
def archives(tmp_path, monkeypatch):
    monkeypatch.setattr(class_archive, "ARCHIVES", tmp_path / "jvm")
    return tmp_path / "jvm"


def _fake_home_and_java(root, jars=("spark-core_2.13-4.0.0.jar",)):
    home, java_home = root / "spark", root / "jdk"
    (home / "jars").mkdir(parents=True)
    for jar in jars:
        (home / "jars" / jar).write_bytes(b"")
    (java_home / "bin").mkdir(parents=True)
    (java_home / "bin" / "java").write_text("#!/bin/sh\n")
    return home, {"JAVA_HOME": str(java_home), "PATH": os.environ.get("PATH", "")}


def test_the_archive_is_named_by_its_spark_home_and_its_jvm(tmp_path, archives):
    home, environ = _fake_home_and_java(tmp_path)
    first = class_archive.archive_path(home, environ)
    assert first is not None and first.parent == archives
    assert class_archive.archive_path(home, environ) == first

    jar = home / "jars" / "spark-core_2.13-4.0.0.jar"
    os.utime(jar, ns=(jar.stat().st_atime_ns, jar.stat().st_mtime_ns + 10**9))  # reinstalled at the same path
    reinstalled = class_archive.archive_path(home, environ)
    assert reinstalled != first

    (home / "jars" / "spark-sql_2.13-4.0.1.jar").write_bytes(b"")  # Spark upgraded in place
    upgraded = class_archive.archive_path(home, environ)
    assert upgraded not in (first, reinstalled)

    java = tmp_path / "jdk" / "bin" / "java"
    java.write_text("#!/bin/sh\n# another build\n")  # the JVM upgraded
    assert class_archive.archive_path(home, environ) not in (first, reinstalled, upgraded)

    other_home, _ = _fake_home_and_java(tmp_path / "other")
    assert class_archive.archive_path(other_home, environ) not in (first, reinstalled, upgraded)
    assert class_archive.archive_path(home, {"JAVA_HOME": str(tmp_path / "no-jdk"), "PATH": ""}) is None


def test_a_run_writes_the_archive_only_when_it_ends_well(tmp_path, archives):
    home, environ = _fake_home_and_java(tmp_path)
    path = class_archive.archive_path(home, environ)

    with pytest.raises(RuntimeError), class_archive.run_options(home, environ) as options:
        (partial,) = (option.split("=", 1)[1] for option in options if option.startswith("-XX:ArchiveClassesAtExit="))
        open(partial, "wb").write(b"half an archive")  # the JVM wrote it, then the run failed
        raise RuntimeError("the Spark job failed")
    assert not path.exists() and not os.path.exists(partial)
    assert class_archive.java_options(home, environ) == []

    with class_archive.run_options(home, environ) as options:
        (partial,) = (option.split("=", 1)[1] for option in options if option.startswith("-XX:ArchiveClassesAtExit="))
        open(partial, "wb").write(b"an archive")
    assert path.read_bytes() == b"an archive"
    assert list(archives.iterdir()) == [path]  # no partial left beside it

    with class_archive.run_options(home, environ) as options:
        assert options == [f"-XX:SharedArchiveFile={path}"]


def test_spark_submit_maps_spark_s_classes_from_the_archive(tmp_path):
    """A real ``spark-submit`` given the local engine's options loads SparkContext from the archive (the session's,
    made by tests/conftest.py), not from Spark's jars."""
    home = spark_home()
    options = class_archive.java_options(home)
    assert options, "tests/conftest.py makes the archive of pip's Spark"
    log = tmp_path / "classes.log"
    env = {**job_environment(), "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    env.pop("SPARK_SUBMIT_OPTS", None)
    subprocess.run(
        [
            str(home / "bin" / "spark-submit"),
            "--master",
            "local[1]",
            "--driver-java-options",
            " ".join([DRIVER_JAVA_OPTIONS, *options, f"-Xlog:class+load=info:file={log}"]),
            str(class_archive.WARM_UP_SCRIPT),
            str(tmp_path / "scratch"),
        ],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    loaded = {line.split()[1]: line for line in log.read_text().splitlines() if " source: " in line}
    assert "shared objects file (top)" in loaded["org.apache.spark.SparkContext"]
    from_archive = sum("source: shared objects file" in line for line in loaded.values())
    from_jars = sum(f"source: file:{home}" in line or "source: jar:" in line for line in loaded.values())
    # (lambdas and generated classes are made at run time either way)
    assert from_jars < 0.1 * from_archive, f"{from_jars} classes read from jars, {from_archive} from the archive"
