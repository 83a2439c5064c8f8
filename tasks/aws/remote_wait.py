"""One wait for every AWS engine's remote run (an EMR step, an EMR Serverless job run), driven by waiter data.

A backend describes its run as a :class:`RunWatch`: the describe call and its request, the state's path in the
reply, and which states mean started, succeeded and failed; how to read a failure's reason and where its log is;
how to cancel it. :func:`watch_run` polls it with botocore waiters made from that data (one attempt at a time, the
state logged as it changes: ``tasks/aws/waiting.py``) and returns the final reply, or raises :class:`WaitTimedOut`
(cancelled after the run's deadline) or :class:`RemoteRunFailed` (the reason, the log's URI and its tail).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jmespath
from botocore import xform_name
from botocore.exceptions import ClientError, WaiterError
from botocore.waiter import Waiter
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.aws.clients import AwsClients
from tasks.aws.run_logs import read_log_tail
from tasks.aws.waiting import state_waiter, wait
from tasks.errors import FruitflowError, aws_error_code
from tasks.progress import JobProgress


class RemoteRunFailed(FruitflowError, RuntimeError):
    """The remote run (EMR step, EMR Serverless job run) did not succeed: the service's reason and its log's tail."""

    def __init__(self, message: str, *, reason: str = "", log_uri: str | None = None, log_tail: str = ""):
        super().__init__(message)
        self.reason = reason
        self.log_uri = log_uri
        self.log_tail = log_tail


class WaitTimedOut(RemoteRunFailed):
    """The remote run was still going at its deadline (``--step-timeout-minutes``); it was cancelled."""


@dataclass(frozen=True)
class RunWatch:
    """What :func:`watch_run` needs to know about one remote run, as data.

    Args:
        what: the run as messages name it ("EMR step s-1 on j-1").
        client: the boto3 client the describe call is made on.
        operation: the describe operation, as the service's API names it ("DescribeStep").
        request: its parameters (``{"ClusterId": ..., "StepId": ...}``).
        state_path: where the state is in the reply (JMESPath: "Step.Status.State").
        running: the states of a run out of the queue and not yet ended; succeeded, failed: the end states.
        reason: the failure's reason, from the last reply.
        log_uri: where the failed run's log is (None: nowhere known), from the last reply.
        cancel: cancels the run (after its deadline).
        log_wait_minutes: how long a failure waits for the service to upload its log.
    """

    what: str
    client: Any
    operation: str
    request: dict[str, str]
    state_path: str
    running: tuple[str, ...]
    succeeded: tuple[str, ...]
    failed: tuple[str, ...]
    reason: Callable[[dict], str]
    log_uri: Callable[[dict], str | None]
    cancel: Callable[[], None]
    log_wait_minutes: float = 3.0

    def state(self, response: dict) -> str:
        return jmespath.search(self.state_path, response)

    def describe(self) -> dict:
        return getattr(self.client, xform_name(self.operation))(**self.request)

    def waiter(self, name: str, success: tuple[str, ...], failure: tuple[str, ...] = ()) -> Waiter:
        """A botocore waiter on :attr:`operation` that ends on ``success`` (or fails on ``failure``) states."""
        return state_waiter(self.client, name, self.operation, self.state_path, success, failure)


@task(name="wait-for-remote-run", cache_policy=NO_CACHE)
def watch_run(aws: AwsClients, watch: RunWatch, *, timeout_minutes: float, poll_seconds: float) -> dict:
    """Wait for the run to succeed and return the describe call's last reply.

    Raises:
        WaitTimedOut: still queued or running after ``timeout_minutes``: cancelled first (idle auto-termination
            never fires while a step runs; the caller's teardown waits for the end).
        RemoteRunFailed: it ended in a failed state: the service's reason, the log's URI and its last lines.
    """
    logger = get_run_logger()
    progress = JobProgress(watch.what)
    started = time.monotonic()
    try:
        out_of_queue = (*watch.running, *watch.succeeded, *watch.failed)
        wait(
            watch.waiter("Started", out_of_queue),
            what=f"{watch.what} started",
            state=watch.state,
            delay=poll_seconds,
            timeout_minutes=timeout_minutes,
            **watch.request,
        )
        progress.update(50.0, "RUNNING")  # the service tells no more than its state
        left = max(timeout_minutes - (time.monotonic() - started) / 60, poll_seconds / 60)
        wait(
            watch.waiter("Done", watch.succeeded, watch.failed),
            what=f"{watch.what} done",
            state=watch.state,
            delay=poll_seconds,
            timeout_minutes=left,
            **watch.request,
        )
    except WaiterError:
        pass  # judged by the run's state below: failed, or still going past the deadline
    response = watch.describe()
    state = watch.state(response)
    if state in watch.succeeded:
        progress.update(100.0, state)
        logger.info("%s: %s", watch.what, state)
        return response
    ended = state in watch.failed
    progress.update(progress.percent, f"{state} (failed)" if ended else f"{state} (timed out)")
    if not ended:
        reason = f"still {state} after {timeout_minutes:g} minutes; cancelled (--step-timeout-minutes)"
        try:
            watch.cancel()
        except ClientError as exc:  # the teardown that follows ends the run anyway
            reason += f", but AWS refused the cancel ({aws_error_code(exc)})"
        logger.error("%s %s", watch.what, reason)
        raise WaitTimedOut(f"{watch.what} {reason}", reason=reason)
    reason = f"{state}: {watch.reason(response)}"
    log_uri = watch.log_uri(response)
    tail = read_log_tail(aws, log_uri, poll_seconds, watch.log_wait_minutes) if log_uri else "(no log URI)"
    logger.error("%s %s; log %s; stderr tail:\n%s", watch.what, reason, log_uri, tail)
    raise RemoteRunFailed(
        f"{watch.what} {reason}\nlog: {log_uri}\nstderr (last lines):\n{tail}",
        reason=reason,
        log_uri=log_uri,
        log_tail=tail,
    )
