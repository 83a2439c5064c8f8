"""The tags on everything fruitflow creates in AWS (clusters, and EMR Serverless applications): how it finds its own."""

from __future__ import annotations

TAG_FLOW_RUN = "fruitflow:flow-run-id"
TAG_CREATED_BY = "fruitflow:created-by"
CREATED_BY = "fruitflow"
TAG_KEEP = "fruitflow:keep-cluster"  # set on --keep-cluster runs: the reaper leaves them alone until their max age
# The longest this run may legitimately hold what it created (provisioning + step timeout + teardown), in hours:
# the reaper never ends anything younger than this, whatever its own --max-age-hours.
TAG_MAX_AGE = "fruitflow:max-age-hours"
# Everything fruitflow creates is also named so: listings (which carry names, not tags) are narrowed to these before
# anything is described, and the policy refuses to describe one without our tag (a look-alike name): see
# :func:`named_as_ours`.
NAME_PREFIX = "fruitflow"
# What AWS answers a call the policy refuses.
ACCESS_DENIED = ("AccessDenied", "AccessDeniedException")


def run_tags(flow_run_id: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Our two tags (and the user's own ``extra``) for what this flow run creates."""
    return {**(extra or {}), TAG_FLOW_RUN: flow_run_id, TAG_CREATED_BY: CREATED_BY}


def is_ours(tags: dict[str, str], flow_run_id: str | None = None) -> bool:
    """Created by fruitflow (for this flow run, when one is given)."""
    return tags.get(TAG_CREATED_BY) == CREATED_BY and (flow_run_id is None or tags.get(TAG_FLOW_RUN) == flow_run_id)


def our_name(name: str) -> str:
    """``name``, starting with :data:`NAME_PREFIX` (added when it does not already).

    Example:
        >>> our_name("fruitflow nightly"), our_name("nightly")
        ('fruitflow nightly', 'fruitflow nightly')
    """
    return name if named_as_ours(name) else f"{NAME_PREFIX} {name}"


def named_as_ours(name: str | None) -> bool:
    """Named as fruitflow names what it creates: worth describing to read its tags; anything else is never read."""
    return (name or "").startswith(NAME_PREFIX)
