"""Waits on AWS that talk: a botocore waiter polled one attempt at a time, the state logged as it goes.

As Airflow's amazon provider does: ``WaiterConfig={"MaxAttempts": 1}`` per poll, so that between polls the state is
logged when it changes and at least every ``report_every_s`` seconds, with the time waited so far. A waiter's
failure state ends the wait at once (``WaiterError``); so does the timeout (``WaiterError`` "Max attempts
exceeded", as botocore says it), so callers judge both the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import WaiterError
from botocore.waiter import Waiter, WaiterModel, create_waiter_with_client

from tasks.aws.clients import run_logger

REPORT_EVERY_S = 180.0


def _elapsed(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def wait(
    waiter: Any,
    *,
    what: str,
    state: Callable[[dict], str],
    delay: float,
    timeout_minutes: float,
    report_every_s: float = REPORT_EVERY_S,
    **request: Any,
) -> float:
    """Wait until ``waiter`` succeeds; returns the seconds waited.

    Args:
        waiter: a botocore waiter (``client.get_waiter(...)`` or a custom one).
        what: what is awaited, for the log ("cluster j-1 ready").
        state: the state shown in the log, from the last DescribeX response.
        delay: seconds between polls.
        timeout_minutes: give up after this long (``WaiterError``, "Max attempts exceeded").
        report_every_s: log the state at least this often while it does not change.
        request: the waiter's request parameters (``ClusterId=...``).
    """
    logger = run_logger()
    started = time.monotonic()
    shown, shown_at = None, started
    while True:
        try:
            waiter.wait(**request, WaiterConfig={"Delay": 1, "MaxAttempts": 1})
            waited = time.monotonic() - started
            logger.info("%s: done after %s", what, _elapsed(waited))
            return waited
        except WaiterError as exc:
            if "Max attempts exceeded" not in str(exc):  # a failure state, or an error the waiter does not retry
                raise
            now = time.monotonic()
            current = _state_of(state, exc.last_response)
            if current != shown or now - shown_at >= report_every_s:
                logger.info("%s: %s, waiting for %s", what, current, _elapsed(now - started))
                shown, shown_at = current, now
            if now - started + delay > timeout_minutes * 60:
                raise WaiterError(
                    name=waiter.name,
                    reason=f"Max attempts exceeded: still {current} after {_elapsed(now - started)}",
                    last_response=exc.last_response,
                ) from None
            time.sleep(delay)


def _state_of(state: Callable[[dict], str], response: dict | None) -> str:
    try:
        return state(response or {})
    except (KeyError, TypeError, IndexError):
        error = (response or {}).get("Error", {})
        return error.get("Code") or "unknown"


def state_waiter(
    client: Any, name: str, operation: str, path: str, success: tuple[str, ...], failure: tuple[str, ...] = ()
) -> Waiter:
    """A botocore waiter made from data, for what botocore has none of (or one that misses a state).

    Args:
        client: the boto3 client ``operation`` is called on.
        name: the waiter's name, for errors ("ClusterTerminated").
        operation: the describe call as the API names it ("DescribeCluster").
        path: where the state is in its reply (JMESPath: "Cluster.Status.State").
        success: the states that end the wait; failure: those that fail it at once.
    """

    def acceptors(kind: str, states: tuple[str, ...]) -> list[dict]:
        return [{"state": kind, "matcher": "path", "argument": path, "expected": state} for state in states]

    model = {
        "operation": operation,
        "delay": 15,  # polled one attempt at a time by wait(): its own delay applies
        "maxAttempts": 60,
        "acceptors": acceptors("success", success) + acceptors("failure", failure),
    }
    return create_waiter_with_client(name, WaiterModel({"version": 2, "waiters": {name: model}}), client)
