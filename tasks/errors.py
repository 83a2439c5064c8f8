"""The one base class of every error a user can fix, and the message for the two such errors every engine meets.

A :class:`FruitflowError` says what is wrong and how to fix it in its message; the command line prints that message
once, with no traceback, and exits 1 (flows/cli_errors.py), and a UI run shows it as the failed state's message.
Subclasses keep the built-in base they had (``ValueError``, ``RuntimeError``) so existing ``except`` clauses hold.
The Spark job keeps its own ``fruitjob.errors.JobError`` under the same rule (no flow code runs on a cluster).
"""

from __future__ import annotations

from typing import Any, TypeVar

from botocore.exceptions import ClientError

BlockType = TypeVar("BlockType")
CREATE_BLOCKS = "python -m blocks.create_blocks"


class FruitflowError(Exception):
    """An error the user can fix; its message says how."""


class UsageError(FruitflowError, ValueError):
    """Options that do not go together (``--engine emr`` without ``--images``)."""


class MissingBlock(FruitflowError, ValueError):
    """A Prefect block the run needs is not saved on this Prefect server."""


def load_block(block_class: type[BlockType], name: str, option: str) -> BlockType:
    """``block_class.load(name)``, or :class:`MissingBlock` naming the option and the command that creates it.

    Prefect answers a missing block with a ``ValueError`` ("Unable to find block document named ..."); a block
    that exists but does not load (a changed schema) stays Prefect's own error.
    """
    loader: Any = block_class
    try:
        return loader.load(name)
    except ValueError as exc:
        if "Unable to find block document" not in str(exc):
            raise
        kind = getattr(block_class, "_block_type_name", None) or block_class.__name__
        raise MissingBlock(
            f"no {kind} block named {name!r} on this Prefect server ({option}): create the blocks with "
            f"`{CREATE_BLOCKS}` (it asks for what it needs), or pass {option} with the name of an existing one"
        ) from None


def aws_error_code(exc: BaseException) -> str:
    """AWS's own error code (``ExpiredToken``, ``InvalidClientTokenId``, ``AccessDenied``...), or the class name."""
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code", "") or type(exc).__name__
    return type(exc).__name__
