"""The flow's parameters, made from the run's declarations (:class:`JobOptions` + :class:`EngineSettings`).

No parameter is written twice: :func:`declared_parameters` gives a function the signature, type hints and
``Args:`` docstring Prefect reads (the UI's form, the deployment's schema), and the command line is made from
the same flow (``flows/command_line.py``).
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from typing import Any, Literal

from fruitjob.options import JobOptions
from tasks.contract import EngineSettings

DECLARATIONS = (JobOptions, EngineSettings)
# Empty in the flow, filled by the engine (sample images, a default output): None is their flow default.
FILLED_BY_ENGINE = ("images", "output")


def default_of(item: dataclasses.Field) -> Any:
    """A field's default; a fresh one for a list field (``health_against``: ``default_factory``)."""
    if item.default is dataclasses.MISSING and item.default_factory is not dataclasses.MISSING:
        return item.default_factory()
    return item.default


def _hint(cls: type, item: dataclasses.Field) -> Any:
    hint = typing.get_type_hints(cls)[item.name]
    if item.metadata.get("choices"):
        return Literal[item.metadata["choices"]]
    if item.default is None and type(None) not in typing.get_args(hint):
        return hint | None
    return hint


def _parameters() -> list[tuple[dataclasses.Field, Any]]:
    return [
        (item, _hint(cls, item))
        for cls in DECLARATIONS
        for item in dataclasses.fields(cls)
        if item.metadata.get("flow", True)  # not what an engine stages itself (JobOptions.tflite_model)
    ]


def declared_parameters(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Give ``fn(**parameters)`` one keyword parameter per declared field, with its default, type and description."""
    parameters = [
        inspect.Parameter(item.name, inspect.Parameter.KEYWORD_ONLY, default=default_of(item), annotation=hint)
        for item, hint in _parameters()
    ]
    returns = inspect.signature(fn).return_annotation
    fn.__signature__ = inspect.Signature(parameters, return_annotation=returns)
    fn.__annotations__ = {item.name: hint for item, hint in _parameters()} | {"return": returns}
    args = "\n".join(f"    {item.name}: {item.metadata['flow_help']}" for item, _ in _parameters())
    fn.__doc__ = f"{inspect.cleandoc(fn.__doc__ or '')}\n\nArgs:\n{args}\n"
    return fn


def split(parameters: dict[str, Any]) -> tuple[dict[str, Any], EngineSettings]:
    """The job's fields (images/output may still be None) and the engine settings, from the flow's parameters."""
    names = {item.name for item in dataclasses.fields(JobOptions)}
    job = {name: value for name, value in parameters.items() if name in names}
    settings = EngineSettings(**{name: value for name, value in parameters.items() if name not in names})
    return job, settings


def engine_settings(flow_run: Any) -> EngineSettings:
    """A flow run's engine settings: its parameters over the declared defaults (a deployment stores only changes)."""
    names = {item.name for item in dataclasses.fields(EngineSettings)}
    return EngineSettings(**{name: value for name, value in (flow_run.parameters or {}).items() if name in names})
