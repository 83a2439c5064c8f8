"""How a run's remote work is named: an EMR step and an EMR Serverless job run alike.

The name carries the full flow run id (teardown, hooks and the reaper find a run's work by it) and a token made from
the flow run id and the job's arguments (a resubmission after a lost reply finds the work it already started).
"""

from __future__ import annotations

import hashlib

RUN_PREFIX = "fruitflow extract-features"


def run_token(flow_run_id: str, job_args: list[str]) -> str:
    """Same flow run + same arguments -> same token: what makes a retried submit find its step or job run."""
    return hashlib.sha256("\0".join([flow_run_id, *job_args]).encode()).hexdigest()[:16]


def run_name(flow_run_id: str, token: str) -> str:
    """The name of the run's step or job run.

    Example:
        >>> run_name("0f1e", "ab12")
        'fruitflow extract-features 0f1e ab12'
    """
    return f"{RUN_PREFIX} {flow_run_id} {token}"


def named_flow_run(name: str | None) -> str:
    """The flow run id in a step's or job run's name, empty when fruitflow did not name it.

    Example:
        >>> named_flow_run("fruitflow extract-features 0f1e ab12"), named_flow_run("nightly ETL")
        ('0f1e', '')
    """
    prefix = f"{RUN_PREFIX} "
    return name.removeprefix(prefix).split(" ")[0] if (name or "").startswith(prefix) else ""


def is_run_name(name: str | None, flow_run_id: str) -> bool:
    """Whether a step or job run name is one of this flow run's."""
    return bool(flow_run_id) and named_flow_run(name) == flow_run_id
