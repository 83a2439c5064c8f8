"""Fail fast, before Spark starts: the input holds images and the output does not hold a finished run."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlparse

from prefect import get_run_logger, task
from pyarrow import fs as pafs

from fruitjob import rules
from tasks.contract import Preflight
from tasks.errors import FruitflowError
from tasks.input_listing import InputCount, list_input_facts


class InputError(FruitflowError, ValueError):
    """The input or output location cannot be used as given; the message says what to do."""


def local_path(uri: str) -> Path:
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(parsed.path)
    if parsed.scheme:
        raise InputError(
            f"the local engine reads local folders, not {parsed.scheme}:// ({uri}); pip's pyspark has no S3 "
            "connector: download the images first, or run with --engine emr"
        )
    return Path(uri)


def summarize_local_input(images: str) -> InputCount:
    """Count image files (by extension, case-insensitive) and other files, following folder links but not loops."""
    root = local_path(images)
    if not root.exists():
        raise InputError(f"input folder {images} does not exist")
    if not root.is_dir():
        raise InputError(f"input {images} is not a folder; pass the folder that holds one sub-folder per label")
    facts = list_input_facts(str(root), pafs.LocalFileSystem())
    size = 0
    for uri in facts.images:
        try:
            size += os.stat(rules.local_file(uri)).st_size
        except OSError:
            pass  # a dangling link or a link loop: the job reports it in errors/
    if not facts.images:
        raise InputError(
            f"no images under {images} ({facts.other_files} other files); expected .jpg, .jpeg or .png files in "
            "one sub-folder per label"
        )
    linked = tuple(sorted(facts.linked_folders.items()))
    return InputCount(images=len(facts.images), other_files=facts.other_files, bytes=size, linked_folders=linked)


def ensure_output_free(
    images: str, output: str, overwrite: bool, incremental: bool, linked_folders: Iterable[tuple[str, str]] = ()
) -> None:
    """Refuse an output inside the input (or a folder it links to), or one holding a run (finished or not) the
    options say nothing about."""
    folder = local_path(output)
    present = [name for name in rules.OUTPUT_PARTS if (folder / name).exists()]
    problem = (
        rules.output_inside_input(images, output)
        or rules.output_inside_linked_folder(output, linked_folders)
        or rules.output_refusal(output, present, overwrite, incremental)
    )
    if problem:
        raise InputError(problem)


@task(name="check-input")
def check_local_input(images: str, output: str, overwrite: bool = False, incremental: bool = False) -> Preflight:
    """Check the local input and output before any Spark process starts."""
    summary = summarize_local_input(images)
    ensure_output_free(images, output, overwrite, incremental, summary.linked_folders)
    get_run_logger().info(
        "input %s: %d images (%.1f MB), %d other files",
        images,
        summary.images,
        summary.bytes / 1e6,
        summary.other_files,
    )
    return Preflight(images=summary.images, bytes=summary.bytes, other_files=summary.other_files)
