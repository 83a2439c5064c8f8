"""Paths as pyarrow's file systems take them."""

from __future__ import annotations

from urllib.parse import urlparse


def filesystem_path(uri: str) -> str:
    """The path pyarrow's file systems take: ``bucket/key`` for s3://, a plain path for local files.

    Example:
        >>> filesystem_path("s3://fruit/runs/1/")
        'fruit/runs/1'
    """
    parsed = urlparse(uri)
    if parsed.scheme in ("s3", "s3a"):
        return (parsed.netloc + parsed.path).rstrip("/")
    if uri.startswith("file:"):
        from fruitjob.rules import local_path

        return local_path(uri).rstrip("/")
    return uri.rstrip("/")
