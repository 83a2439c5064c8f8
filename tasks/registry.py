"""The engines, by the name ``--engine`` takes: the one place the flow learns which engines exist."""

from __future__ import annotations

from tasks.contract import Engine
from tasks.emr.engine import EmrEngine
from tasks.emr_serverless.engine import EmrServerlessEngine
from tasks.engine_settings import ENGINE_NAMES, EngineSettings
from tasks.local.engine import LocalEngine

ENGINES: dict[str, type] = {engine.name: engine for engine in (LocalEngine, EmrEngine, EmrServerlessEngine)}
assert tuple(ENGINES) == ENGINE_NAMES, "tasks.contract.ENGINE_NAMES lists the engines of this registry"


def engine_for(settings: EngineSettings) -> Engine:
    """The engine whose settings these are (``settings.kind``), set up with them."""
    return ENGINES[settings.kind](settings)
