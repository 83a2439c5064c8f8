"""A small IAM policy evaluator for the tests: identity policy (and permissions boundary) against one request.

It follows IAM's evaluation logic for what fruitflow's policies use: an explicit Deny wins; otherwise a request is
allowed when an Allow statement matches it, in the policy and, when given, in the boundary too. Conditions: every
operator of a statement must hold, every key of an operator must hold, any of a key's values may match;
``StringEquals``, ``StringNotEquals``, ``StringLike``, ``StringNotLike``, ``Null``, with the ``ForAnyValue:`` and
``ForAllValues:`` set prefixes and the ``IfExists`` suffix. A key absent from the request makes a positive operator
false and a negated one true (IAM's rule); ``IfExists`` makes it true.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable


def listed(value) -> list:
    return [value] if isinstance(value, str) else list(value)


def request_context(request_tags: dict | None = None, resource_tags: dict | None = None, **keys) -> dict:
    """The condition keys of a request: ``aws:RequestTag/*`` and ``aws:TagKeys`` from the tags it sends,
    ``aws:ResourceTag/*`` from the tags its resource already carries, and any other key given (``iam:PassedToService``
    written ``iam_PassedToService``)."""
    context: dict[str, object] = {f"aws:RequestTag/{k}": v for k, v in (request_tags or {}).items()}
    if request_tags:
        context["aws:TagKeys"] = list(request_tags)
    context.update({f"aws:ResourceTag/{k}": v for k, v in (resource_tags or {}).items()})
    context.update({name.replace("_", ":", 1): value for name, value in keys.items()})
    return context


def _like(value: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(value, pattern)


def _single(operator: str, actual: str, expected: list[str]) -> bool:
    if operator in ("StringEquals", "StringNotEquals"):
        hit = actual in expected
    elif operator in ("StringLike", "StringNotLike"):
        hit = any(_like(actual, pattern) for pattern in expected)
    else:
        raise ValueError(f"condition operator {operator} is not known to the test evaluator")
    return not hit if "Not" in operator else hit


def _key_holds(operator: str, actual, expected: list[str]) -> bool:
    if operator == "Null":
        return (actual is None) == (expected[0] == "true")
    qualifier, _, operator = operator.rpartition(":")
    if_exists = operator.endswith("IfExists")
    operator = operator.removesuffix("IfExists")
    if qualifier == "ForAnyValue":
        return any(_single(operator, value, expected) for value in listed(actual or []))
    if qualifier == "ForAllValues":
        return all(_single(operator, value, expected) for value in listed(actual or []))
    if actual is None:
        return if_exists or "Not" in operator
    return _single(operator, actual, expected)


def conditions_hold(conditions: dict, context: dict) -> bool:
    return all(
        _key_holds(operator, context.get(key), listed(values))
        for operator, keys in conditions.items()
        for key, values in keys.items()
    )


def _matches(statement: dict, action: str, resource: str, context: dict) -> bool:
    if not any(_like(action, pattern) for pattern in listed(statement.get("Action", []))):
        return False
    if "NotResource" in statement:
        if any(_like(resource, pattern) for pattern in listed(statement["NotResource"])):
            return False
    elif not any(_like(resource, pattern) for pattern in listed(statement["Resource"])):
        return False
    return conditions_hold(statement.get("Condition", {}), context)


def decision(statements: Iterable[dict], action: str, resource: str, context: dict) -> str:
    """ "Deny" (an explicit deny matches), "Allow" (an allow matches) or "ImplicitDeny"."""
    matching = [s["Effect"] for s in statements if _matches(s, action, resource, context)]
    return "Deny" if "Deny" in matching else "Allow" if "Allow" in matching else "ImplicitDeny"


def allows(policy: list[dict], action: str, resource: str, context: dict, boundary: list[dict] | None = None) -> bool:
    """IAM's answer for an identity with ``policy`` (and the permissions ``boundary``, when given)."""
    if decision(policy, action, resource, context) != "Allow":
        return False
    return boundary is None or decision(boundary, action, resource, context) == "Allow"
