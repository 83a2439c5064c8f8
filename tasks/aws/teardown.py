"""Ending what a remote run started, on every path and for every AWS engine (tasks/aws/remote.py).

Everything here may run while an error is on its way out (the lifecycle's ``finally``, a flow hook): a teardown
failure is logged with what to do by hand and never replaces the run's own error; on a run that succeeded it fails
the run, which must not say "done" while what it created still bills.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.aws.backend import Place, RemoteBackend
from tasks.aws.clients import run_logger
from tasks.errors import MissingBlock


def quietly(
    what: str,
    action: Callable[[], Any],
    failure: BaseException | None,
    logger: Any = None,
    *,
    never_raise: bool = False,
) -> None:
    """Run a teardown ``action``. With no ``failure`` on its way out, an error here raises (a run that succeeded must
    not say so while what it created still bills); with one (or ``never_raise``: a hook, a look-up whose net is the
    reaper), it is logged with what to do by hand instead, and the run's own error goes on."""
    if failure is None and not never_raise:
        action()
        return
    try:
        action()
    except Exception as exc:  # noqa: BLE001 - the run's own error matters more; the idle stop and the reaper remain
        (logger or run_logger()).error("could not %s (%s); do it by hand (docs/emr.md)", what, exc)


@task(name="tear-down", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10)
def tear_down(engine: RemoteBackend, place_id: str) -> str:
    """End a place the run created (terminate the cluster, stop and delete the application); safe to retry."""
    engine.end_place(place_id, get_run_logger())
    return place_id


def release(engine: RemoteBackend, place: Place, flow_run_id: str, failure: BaseException | None) -> None:
    """End a place the run created (and any other its tags say this run made); on a place left running, cancel a
    failing run's own work."""
    if place.ended_with_the_run:
        if place.id:
            quietly(f"end {engine.words.place} {place.id}", lambda: tear_down(engine, place.id), failure)
        # Then any other place its tags say this run made (a create request resent after a lost reply).
        others: list[str] = []
        quietly(
            f"look for other {engine.words.place}s of this run",
            lambda: others.extend(engine.find_run_places(flow_run_id)),
            failure,
            never_raise=True,  # never fails a run: the reaper is the net
        )
        for place_id in dict.fromkeys(others):
            if place_id != place.id:
                run_logger().warning("%s %s also carries this run's tags: ending it too", engine.words.place, place_id)
                quietly(f"end {engine.words.place} {place_id}", lambda p=place_id: tear_down(engine, p), failure)
    elif failure is not None and place.id:
        quietly(
            f"cancel this run's {engine.words.run} on {engine.words.place} {place.id}",
            lambda: cancel_run_work(engine, place.id, flow_run_id),
            failure,
        )
    if place.kept and place.id:
        engine.note_kept(place.id)


def cancel_run_work(
    engine: RemoteBackend, place_id: str, flow_run_id: str, state_name: str = "", logger: Any = None
) -> None:
    """Cancel this flow run's live work on a place left running; says what it cancelled."""
    cancelled = engine.cancel_run_work(place_id, flow_run_id)
    if cancelled:
        run = f"flow run {state_name}: " if state_name else ""
        (logger or run_logger()).warning(
            "%scancelled %s(s) %s on %s %s, which is left running",
            run,
            engine.words.run,
            cancelled,
            engine.words.place,
            place_id,
        )


def end_what_the_run_left(engine: RemoteBackend, flow_run_id: str, state_name: str, logger: Any) -> None:
    """For the flow hooks (cancelled, crashed, failed): end the places created for the run (by its tags) unless
    kept; on a kept or reused place (never ended) cancel the run's live work. Never raises."""
    try:
        _ = engine.aws  # the credentials block, read once here
    except MissingBlock as exc:  # no credentials, nothing this run could have created (the reaper remains)
        logger.info("nothing to end: %s", exc)
        return
    try:
        reused, keep = engine.reused_id, engine.keeps
    except MissingBlock:  # the config block is gone: end what the tags say is ours
        reused, keep = None, False
    ours: list[str] = []
    quietly(
        f"list this run's {engine.words.place}s",
        lambda: ours.extend(engine.find_run_places(flow_run_id)),
        None,
        logger,
        never_raise=True,
    )
    left_running = [reused] if reused else []
    if keep:
        left_running, ours = left_running + ours, []
    for place_id in dict.fromkeys(left_running):
        quietly(
            f"cancel this run's {engine.words.run} on {engine.words.place} {place_id}",
            lambda p=place_id: cancel_run_work(engine, p, flow_run_id, state_name, logger),
            None,
            logger,
            never_raise=True,
        )
    for place_id in ours:
        logger.warning("flow run %s: ending %s %s", state_name, engine.words.place, place_id)
        quietly(
            f"end {engine.words.place} {place_id}",
            lambda p=place_id: engine.end_place(p, logger),
            None,
            logger,
            never_raise=True,
        )
