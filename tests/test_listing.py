"""The listing names what it cannot list or read: an unreadable folder is a named skip, an unreadable file an
error row; the binaryFile reader (the one EMR uses) accounts for every image too."""

from __future__ import annotations

import os

import pytest
from pyarrow import fs

from tasks.input_listing import list_input_facts
from tasks.local.sample_images import make_sample_images
from tasks.validation import verify_output
from tests.helpers import metrics, read_parquet


@pytest.fixture
def images(tmp_path):
    return make_sample_images(tmp_path / "images", per_class=2, size=48)


def _deny(monkeypatch, folder) -> None:
    """As root, ``chmod 000`` still reads: inject the PermissionError a normal user would get for ``folder``."""
    real_scandir, real_listdir = os.scandir, os.listdir

    def refuse(real):
        def call(path="."):
            if os.path.abspath(path) == str(folder):
                raise PermissionError(13, "Permission denied", str(path))
            return real(path)

        return call

    monkeypatch.setattr(os, "scandir", refuse(real_scandir))
    monkeypatch.setattr(os, "listdir", refuse(real_listdir))


def test_an_unreadable_folder_is_a_named_skip_in_the_job_and_the_validator(spark, images, monkeypatch):
    from fruitjob.listing import list_input

    _deny(monkeypatch, images / "Banana")
    listing = list_input(spark, str(images))
    assert listing.skipped_folders == [(f"file:{images}/Banana", "folder could not be listed: Permission denied")]
    assert not [image for image in listing.images if "/Banana/" in image.path]
    assert list_input_facts(str(images), fs.LocalFileSystem()).unlisted_folders == {f"file:{images}/Banana"}


def test_an_unreadable_file_is_an_error_with_the_reason(monkeypatch, images):
    from fruitjob.reading import read_local_file

    target = images / "Banana" / "000.jpg"
    real_open = os.open

    def refuse(path, *args, **kwargs):
        if str(path) == str(target):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    data, reason = read_local_file(f"file:{target}")
    assert data is None and reason.endswith("Permission denied")
    assert read_local_file(f"file:{images}/Banana/001.jpg")[0]


def test_a_fifo_is_never_opened_for_a_blocking_read(tmp_path):
    from fruitjob.reading import read_local_file

    os.mkfifo(tmp_path / "swapped.jpg")  # a file replaced by a FIFO after the listing
    assert read_local_file(f"file:{tmp_path}/swapped.jpg") == (None, "not a regular file: only files are read")


@pytest.mark.slow
def test_the_binaryfile_reader_accounts_for_every_image(run_job, images):
    """EMR reads with binaryFile: names it cannot read (hidden ones here) come back as errors, never lost."""
    (images / "Banana" / "_hidden.jpg").write_bytes((images / "Banana" / "000.jpg").read_bytes())
    (images / "Banana" / "IMG 2026-11-30 12:30:00.jpg").write_bytes((images / "Banana" / "000.jpg").read_bytes())
    output = run_job(images, "--pca-components", "3", "--reader", "binaryfile")
    m = metrics(output)
    assert m["reader"] == "binaryfile" and m["images_total"] == 14
    assert m["images_ok"] + m["images_failed"] == 14
    errors = read_parquet(output, "errors")
    assert f"file:{images}/Banana/_hidden.jpg" in set(errors["path"])
    verify_output(str(output), fs.LocalFileSystem())
