"""Fail fast, before Spark starts: the input holds images and the output does not hold a finished run."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from prefect import get_run_logger, task

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


class InputError(ValueError):
    """The input or output location cannot be used as given; the message says what to do."""


@dataclass(frozen=True)
class InputSummary:
    images: int
    other_files: int
    total_bytes: int


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


def summarize_local_input(images: str) -> InputSummary:
    """Count image files (by extension, case-insensitive) and other files, without following dir links."""
    root = local_path(images)
    if not root.exists():
        raise InputError(f"input folder {images} does not exist")
    if not root.is_dir():
        raise InputError(f"input {images} is not a folder; pass the folder that holds one sub-folder per label")
    count = other = size = 0
    for folder, _dirs, names in os.walk(root, followlinks=False):
        for name in names:
            if name.lower().endswith(IMAGE_EXTENSIONS):
                count += 1
                try:
                    size += os.stat(os.path.join(folder, name)).st_size
                except OSError:
                    pass  # a dangling link: the job reports it in errors/
            else:
                other += 1
    if count == 0:
        raise InputError(
            f"no images under {images} ({other} other files); expected .jpg, .jpeg or .png files in "
            "one sub-folder per label"
        )
    return InputSummary(images=count, other_files=other, total_bytes=size)


def ensure_output_free(output: str, overwrite: bool, incremental: bool) -> None:
    """Refuse an output that holds a finished run unless the user said what to do with it."""
    if overwrite or incremental:
        return
    metrics = local_path(output) / "metrics.json"
    if metrics.exists():
        raise InputError(
            f"{output} already holds a finished run (metrics.json is there); pass --overwrite to replace it, "
            "--incremental to add new images to it, or choose another --output"
        )


@task(name="check-input")
def check_local_input(images: str, output: str, overwrite: bool = False, incremental: bool = False) -> dict:
    """Check the local input and output before any Spark process starts."""
    summary = summarize_local_input(images)
    ensure_output_free(output, overwrite, incremental)
    get_run_logger().info(
        "input %s: %d images (%.1f MB), %d other files",
        images,
        summary.images,
        summary.total_bytes / 1e6,
        summary.other_files,
    )
    return {"images": summary.images, "other_files": summary.other_files, "total_bytes": summary.total_bytes}
