"""The input and output a run really uses, written back into its parameters.

A run started without ``images`` or ``output`` (the UI's form left empty, a deployment's defaults) gets them from
its engine (the sample images, ``./output/run-...``, ``s3://bucket/fruitflow/run-...``). The server only knows the
parameters the run was started with, so the failure notice (automations.yaml: ``flow_run.parameters.job.images``) and
the UI's Parameters tab would show them empty: the flow writes the paths it chose into its own flow run.
"""

from __future__ import annotations

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.runtime import flow_run
from pydantic_core import to_jsonable_python

from flows.parameters import nested


def record_paths(images: str, output: str) -> None:
    """Set the ``job`` parameter's ``images`` and ``output`` in this flow run's parameters on the server (a no-op
    outside a flow run); parameters given flat (a deployment made before the models) are written in their shape."""
    if flow_run.id is None:
        return
    parameters = to_jsonable_python(nested(dict(flow_run.parameters or {})))
    parameters["job"] = {**(parameters.get("job") or {}), "images": images, "output": output}
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(flow_run.id, parameters=parameters)
    except Exception as exc:  # noqa: BLE001 - a notice with the given parameters is better than a failed run
        get_run_logger().warning("could not record the run's paths in its parameters (%s)", exc)
