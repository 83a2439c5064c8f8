"""The input as validation sees it: every image-named file under the input with its label, listed again from the
source by a walk of its own (not the job's), so that what the job lost cannot hide behind the job's own counts.

The rules are the shared ones (``fruitjob.rules``: image extensions, labels); the traversal is independent: local
folders by ``os.scandir`` following folder links with loops cut by real path, S3 through pyarrow's listing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from pyarrow import fs as pafs

from fruitjob.rules import is_image_name, is_local, label_of, local_label, local_path, local_uri
from tasks.uris import filesystem_path


@dataclass(frozen=True)
class InputCount:
    """How much an engine's checks found under the input, before anything runs."""

    images: int
    bytes: int
    other_files: int
    linked_folders: tuple[tuple[str, str], ...] = ()  # (folder link, its real path): the listing follows them


@dataclass
class InputFacts:
    """What is under the input: image-named files (URI -> label), other files, folders that could not be listed."""

    images: dict[str, str] = field(default_factory=dict)
    other_files: int = 0
    other_paths: list[str] = field(default_factory=list)  # their URIs (what arrived during a run is told by them)
    unlisted_folders: set[str] = field(default_factory=set)
    linked_folders: dict[str, str] = field(default_factory=dict)  # folder link -> its real path, followed


def _local(root: str, facts: InputFacts) -> None:
    def walk(folder: str, chain: tuple[str, ...]) -> None:
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            facts.unlisted_folders.add(local_uri(folder))
            return
        for name in names:
            full = os.path.join(folder, name)
            if os.path.isdir(full):  # follows links
                real = os.path.realpath(full)
                if real in chain:
                    facts.unlisted_folders.add(local_uri(full))  # a loop: reported by the job as a skipped folder
                else:
                    if os.path.islink(full):
                        facts.linked_folders[local_uri(full)] = real
                    walk(full, (*chain, real))
                continue
            add(full)

    def add(path: str) -> None:
        uri = local_uri(path)  # the job's rule for the path column, a name that is not UTF-8 included
        if is_image_name(uri):
            facts.images[uri] = local_label(root, path)
        else:
            facts.other_files += 1
            facts.other_paths.append(uri)

    walk(root, (os.path.realpath(root),))


def _remote(images: str, filesystem: pafs.FileSystem, facts: InputFacts) -> None:
    scheme = images.split("://", 1)[0]
    root = images.rstrip("/")
    selector = pafs.FileSelector(filesystem_path(images), recursive=True, allow_not_found=True)
    for info in filesystem.get_file_info(selector):
        if info.type != pafs.FileType.File:
            continue
        uri = f"{scheme}://{info.path}"
        if is_image_name(uri):
            facts.images[uri] = label_of(root, uri)
        else:
            facts.other_files += 1
            facts.other_paths.append(uri)


def list_input_facts(images: str, filesystem: pafs.FileSystem) -> InputFacts:
    """List the input again, from the source: locally with the OS, on S3 with ``filesystem``."""
    facts = InputFacts()
    if is_local(images):
        _local(os.path.abspath(local_path(images)), facts)
    else:
        _remote(images, filesystem, facts)
    return facts
