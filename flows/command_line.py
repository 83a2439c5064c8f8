"""Command lines made from what a flow declares, so that options and parameters never drift.

:func:`parser_for` reads a flow of plain parameters (the reaper); :class:`ModelOptions` makes ``--options`` of a
pydantic model's fields (the fruit-features flow's :class:`flows.parameters.JobParameters` and engine settings).
"""

from __future__ import annotations

import argparse
import inspect
import types
import typing
from collections.abc import Iterable
from typing import Any, Literal

from prefect import Flow
from pydantic import BaseModel, ValidationError


def _argument_type(hint: Any) -> tuple[Any, list[str] | None]:
    """(type, choices) for a parameter hint: ``int``, ``str | None``, ``Literal["a", "b"]``; a block or a name:
    ``str`` (the command line names blocks)."""
    if typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    if typing.get_origin(hint) is Literal:
        return str, list(typing.get_args(hint))
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        kinds = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        hint = str if str in kinds else kinds[0]
    return hint, None


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def parser_for(flow: Flow, prog: str) -> argparse.ArgumentParser:
    """``--name-with-dashes`` for every parameter, with the flow's default and the docstring's description."""
    summary = (flow.description or "").strip().split("\n\n")[0]  # the docstring's first paragraph
    parser = argparse.ArgumentParser(prog=prog, description=summary)
    hints = typing.get_type_hints(flow.fn)
    described = flow.parameters.properties
    for name, parameter in inspect.signature(flow.fn).parameters.items():
        text = described.get(name, {}).get("description")
        if hints[name] is bool:
            parser.add_argument(flag(name), action="store_true", help=text)
            continue
        kind, choices = _argument_type(hints[name])
        parser.add_argument(flag(name), type=kind, choices=choices, default=parameter.default, help=text)
    return parser


def add_model_options(
    group: argparse._ActionsContainer, models: Iterable[type[BaseModel]], skip: tuple[str, ...] = ()
) -> list[str]:
    """One ``--option`` per field of ``models`` (a name shared by several is added once); the names added.

    An option not given is left out of the parsed namespace (``argparse.SUPPRESS``), so that the model's own default
    applies; the help says the default.
    """
    added: list[str] = []
    for model in models:
        for name, info in model.model_fields.items():
            if name in skip or name in added:
                continue
            added.append(name)
            text = f"{info.description or ''} (default: {info.get_default(call_default_factory=True)})"
            if info.annotation is bool:
                group.add_argument(flag(name), action="store_true", default=argparse.SUPPRESS, help=text)
                continue
            if typing.get_origin(info.annotation) is list:  # --health-against A B
                group.add_argument(flag(name), nargs="+", default=argparse.SUPPRESS, help=text)
                continue
            kind, choices = _argument_type(info.annotation)
            group.add_argument(flag(name), type=kind, choices=choices, default=argparse.SUPPRESS, help=text)
    return added


def one_line(error: ValidationError) -> str:
    """A model's refusal on one line, options named as the command line names them.

    The models word their own refusals for the command line (``--cluster-id is for --engine emr, not --engine
    local``); a field's own problem is prefixed with its option (``--step-timeout-minutes: Input should be ...``).
    """
    reasons = []
    for problem in error.errors():
        names = [part for part in problem["loc"] if isinstance(part, str)]
        message = problem["msg"].removeprefix("Value error, ")
        reasons.append(f"{flag(names[-1])}: {message}" if names else message)
    return "; ".join(reasons)
