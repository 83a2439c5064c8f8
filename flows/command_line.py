"""A command line for a flow, made from its signature and docstring, so options and parameters never drift."""

from __future__ import annotations

import argparse
import inspect
import types
import typing
from typing import Any, Literal

from prefect import Flow


def _argument_type(hint: Any) -> tuple[Any, list[str] | None]:
    """(type, choices) for a parameter hint: ``int``, ``str | None``, ``Literal["a", "b"]``..."""
    if typing.get_origin(hint) is Literal:
        return str, list(typing.get_args(hint))
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return hint, None


def parser_for(flow: Flow, prog: str) -> argparse.ArgumentParser:
    """``--name-with-dashes`` for every parameter, with the flow's default and the docstring's description."""
    summary = (flow.description or "").strip().split("\n\n")[0]  # the docstring's first paragraph
    parser = argparse.ArgumentParser(prog=prog, description=summary)
    hints = typing.get_type_hints(flow.fn)
    described = flow.parameters.properties
    for name, parameter in inspect.signature(flow.fn).parameters.items():
        flag = "--" + name.replace("_", "-")
        text = described.get(name, {}).get("description")
        if hints[name] is bool:
            parser.add_argument(flag, action="store_true", help=text)
            continue
        if typing.get_origin(hints[name]) is list:  # --health-against A B
            parser.add_argument(flag, nargs="+", default=parameter.default, help=text)
            continue
        kind, choices = _argument_type(hints[name])
        parser.add_argument(flag, type=kind, choices=choices, default=parameter.default, help=text)
    return parser
