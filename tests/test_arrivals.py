"""Files that arrive or vanish while the job runs are not errors (issue 19, case 7): the job lists once, validation
checks the output against the input as it is now and tells a file that arrived after the listing (by the input's
own timestamps) from a lost one; a file deleted after the listing is an errors/ row that validation accepts."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import boto3
import pytest
from pyarrow import fs

from tasks.contract import RunResult
from tasks.local.sample_images import make_sample_images
from tasks.summary import summary_markdown
from tasks.validation import OutputInvalid, record_arrivals, verify_output
from tests.conftest import JOB_DEFAULTS, NO_HEALTH
from tests.fake_emr_outputs import as_if_on_s3
from tests.helpers import metrics, read_parquet

BUCKET = "fruitflow-arrivals"


def _run(spark, images, output, *extra):
    from fruitjob.job import run
    from fruitjob.options import parse_options

    argv = ["--images", str(images), "--output", str(output), *JOB_DEFAULTS, *NO_HEALTH, "--pca-components", "2"]
    argv += extra
    return run(spark, parse_options(argv))


@contextlib.contextmanager
def on_job_line(prefix: str, action: Callable[[], None]) -> Iterator[list[str]]:
    """Run ``action`` once, in the job's thread, when the job logs a line starting with ``prefix``."""
    logger = logging.getLogger("fruitflow.job")
    fired: list[str] = []

    class Trigger(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if not fired and record.getMessage().startswith(prefix):
                fired.append(record.getMessage())
                action()

    handler, level = Trigger(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield fired
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
def images(tmp_path):
    root = make_sample_images(tmp_path / "photos", per_class=2, size=48)
    (root / "README.txt").write_text("not an image")
    return root


@pytest.mark.slow
def test_files_added_and_deleted_while_the_job_runs_are_not_errors(spark, images, tmp_path):
    output = tmp_path / "out"
    arrived, deleted = images / "Banana" / "arrived.jpg", images / "Lime Verde" / "000.jpg"

    def change_the_input() -> None:  # right after the job's listing, before any image is read
        shutil.copyfile(images / "Banana" / "000.jpg", arrived)
        (images / "notes.txt").write_text("arrived too, not an image")
        deleted.unlink()

    with on_job_line("listed ", change_the_input) as fired:
        m = _run(spark, images, output)
    assert fired and fired[0].startswith("listed 12 images")
    assert (m.images_total, m.images_ok, m.images_failed, m.files_seen) == (12, 11, 1, 13)
    (row,) = read_parquet(output, "errors").itertuples()
    assert row.path == f"file:{deleted}" and "could not be read" in row.error and "No such file" in row.error

    report = verify_output(str(output), fs.LocalFileSystem())  # the code before this change failed here
    assert (report.drift.arrived, report.drift.deleted) == ([f"file:{arrived}"], [f"file:{deleted}"])
    report = record_arrivals(str(output), fs.LocalFileSystem(), report)
    assert metrics(output)["files_arrived_during_run"] == report.metrics.files_arrived_during_run == 1
    markdown = summary_markdown(report, RunResult(engine="local", output=str(output)))
    assert "1 files arrived after the listing: the next `--incremental` run takes them." in markdown
    assert "1 files were deleted after the listing" in markdown
    verify_output(str(output), fs.LocalFileSystem())  # metrics.json rewritten: still valid

    later = _run(spark, images, output, "--incremental")
    assert (later.images_ok, later.images_failed, later.images_already_done) == (1, 0, 11)
    assert read_parquet(output, "errors").empty and f"file:{arrived}" in set(read_parquet(output, "features")["path"])
    assert later.previous_run.run_id == m.run_id
    final = verify_output(str(output), fs.LocalFileSystem())
    assert (final.drift.arrived, final.drift.deleted) == ([], [])

    # A file that was there when the job listed and has no row is lost, whatever its modification time says.
    lost = images / "Plum Dark" / "000.jpg"
    features = read_parquet(output, "features")  # as if the job had lost it
    features[features["path"] != f"file:{lost}"].to_parquet(output / "features" / "kept.parquet", index=False)
    for part in (output / "features").glob("part-*"):
        part.unlink()
    with pytest.raises(OutputInvalid, match=r"1 images of the input are in neither .* were there before the job"):
        verify_output(str(output), fs.LocalFileSystem())


def _s3(moto_endpoint):
    client = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    host = moto_endpoint.split("://", 1)[1]
    filesystem = fs.S3FileSystem(
        endpoint_override=host, scheme="http", access_key="testing", secret_key="testing", region="us-east-1"
    )
    return client, filesystem


def _upload(client, folder, prefix: str) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.endswith(".crc"):
            client.upload_file(str(path), BUCKET, f"{prefix}/{path.relative_to(folder).as_posix()}")


@pytest.mark.slow
def test_on_s3_an_object_uploaded_after_the_listing_arrived_and_one_from_before_is_lost(spark, moto_endpoint, tmp_path):
    """The EMR engine's case: LastModified against listed_at, and an errors/ row of an object deleted meanwhile.

    No README here: LastModified counts whole seconds, and an object of the listing's own second counts as arrived
    (tasks/input_drift.py); these objects are uploaded just before the job lists, maybe in that second.
    """
    images = make_sample_images(tmp_path / "photos", per_class=2, size=48)
    client, filesystem = _s3(moto_endpoint)
    client.create_bucket(Bucket=BUCKET)
    _upload(client, images, "images")  # uploaded before the job lists
    output, deleted = tmp_path / "out", images / "Lime Verde" / "000.jpg"
    with on_job_line("listed ", deleted.unlink):
        _run(spark, images, output)
    as_if_on_s3(output, {str(images): f"s3://{BUCKET}/images", str(output): f"s3://{BUCKET}/out"})
    _upload(client, output, "out")
    client.delete_object(Bucket=BUCKET, Key="images/Lime Verde/000.jpg")
    client.copy_object(
        Bucket=BUCKET, Key="images/Banana/arrived.jpg", CopySource={"Bucket": BUCKET, "Key": "images/Banana/000.jpg"}
    )

    report = verify_output(f"s3://{BUCKET}/out", filesystem)
    assert report.drift.arrived == [f"s3://{BUCKET}/images/Banana/arrived.jpg"]
    assert report.drift.deleted == [f"s3://{BUCKET}/images/Lime Verde/000.jpg"]
    record_arrivals(f"s3://{BUCKET}/out", filesystem, report)
    stored = json.loads(client.get_object(Bucket=BUCKET, Key="out/metrics.json")["Body"].read())
    assert stored["files_arrived_during_run"] == 1

    # An object deleted after the run finished leaves a row the output should not hold (S3 keeps no trace of when).
    client.delete_object(Bucket=BUCKET, Key="images/Plum Dark/000.jpg")
    with pytest.raises(OutputInvalid, match=r"features/ has 1 rows for files not in the input \(.*Plum Dark/000"):
        verify_output(f"s3://{BUCKET}/out", filesystem)
    client.copy_object(
        Bucket=BUCKET, Key="images/Plum Dark/000.jpg", CopySource={"Bucket": BUCKET, "Key": "images/Plum Dark/001.jpg"}
    )  # back (as another file, uploaded after the listing: its old row stays, which validation cannot tell)

    # Listed after that upload (as the job's listed_at would then say): the object has no row and is lost.
    later = datetime.fromisoformat(stored["listed_at"]) + timedelta(minutes=5)
    stored["listed_at"] = later.isoformat()
    client.put_object(Bucket=BUCKET, Key="out/metrics.json", Body=json.dumps(stored).encode())
    with pytest.raises(OutputInvalid, match=r"1 images of the input are in neither .*arrived\.jpg"):
        verify_output(f"s3://{BUCKET}/out", filesystem)


def _when_it_appears(path, action: Callable[[], None], deadline_s: float = 300) -> threading.Thread:
    """In a thread: run ``action`` as soon as ``path`` exists (polled, bounded); the thread's end says it ran."""

    def watch() -> None:
        end = time.monotonic() + deadline_s
        while not path.exists():
            if time.monotonic() > end:
                return
            time.sleep(0.02)  # a poll of the condition itself, not a wait standing in for it
        action()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher


@pytest.mark.slow
def test_the_flow_completes_and_says_what_arrived(prefect_harness, images, tmp_path):
    """The flow of issue 19's case 7 (spark-submit, validation, summary): a photo added and one deleted while the
    job runs, when its featurizing starts (features/ appears in the output, after the listing). The photo
    deleted then may have been read already or not: either way validation accepts its row."""
    from flows.fruit_features import fruit_features
    from fruitjob.layout import FEATURES

    output = tmp_path / "out"
    arrived, deleted = images / "Banana" / "arrived.jpg", images / "Lime Verde" / "000.jpg"
    changed: list[bool] = []

    def change_the_input() -> None:
        shutil.copyfile(images / "Banana" / "000.jpg", arrived)
        deleted.unlink()
        changed.append(True)

    watcher = _when_it_appears(output / FEATURES, change_the_input)
    state = fruit_features(
        images=str(images), output=str(output), return_state=True, weights="random", alpha=0.35, pca_components=2
    )
    watcher.join(timeout=5)
    assert changed, "the job never started featurizing"
    assert state.is_completed(), state.message
    assert metrics(output)["files_arrived_during_run"] == 1
    summary = (output / "summary.md").read_text()
    assert "1 files arrived after the listing: the next `--incremental` run takes them." in summary
    assert state.result().validation.drift.deleted == [f"file:{deleted}"]
