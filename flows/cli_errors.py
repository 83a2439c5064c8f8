"""Expected errors on the command line: the message once, with its fixes, and no traceback.

The flow raises its own errors on purpose (a missing input, a preflight that failed, a refused rerun, a failed
step): their message says what to do. Prefect logs each of them with a traceback from the task, then from the
flow; in a terminal that buries the message. :func:`quiet_expected_errors` moves those records to debug level
for this process (the Prefect UI's state message and any other error stay as they are), and the CLI prints the
message itself.
"""

from __future__ import annotations

import logging

from fruitjob.errors import JobError
from tasks.errors import FruitflowError

# Every error a user can fix derives from one of these (the flow's family and the Spark job's); each message says
# what to do. No list of classes to keep up to date: a new subclass is expected by being one.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (FruitflowError, JobError)
LOGGERS = ("prefect.task_runs", "prefect.flow_runs", "prefect.flows", "prefect.tasks")


def is_expected(record: logging.LogRecord) -> bool:
    """A log record about one of our expected errors: by its exception, or naming one in a state message."""
    error = record.exc_info[1] if record.exc_info else None
    if error is not None:
        return isinstance(error, EXPECTED_ERRORS)
    return record.levelno >= logging.ERROR and any(name in record.getMessage() for name in _expected_names())


def expected_classes() -> list[type[BaseException]]:
    """Every class of :data:`EXPECTED_ERRORS` and their subclasses imported so far (an error raised is imported)."""
    found: list[type[BaseException]] = []
    pending = list(EXPECTED_ERRORS)
    while pending:
        cls = pending.pop()
        if cls not in found:
            found.append(cls)
            pending += cls.__subclasses__()
    return found


def _expected_names() -> tuple[str, ...]:
    """How a state message names an expected error: ``InputError: ...`` or ``InputError(...)``."""
    return tuple(f"{cls.__name__}{mark}" for cls in expected_classes() for mark in (":", "("))


class ExpectedErrorsAtDebug(logging.Filter):
    """On a run logger: logs an expected error (and its traceback) at debug level instead of error."""

    def filter(self, record: logging.LogRecord) -> bool:
        if is_expected(record):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            record.fruitflow_expected = True
        return True


class NotOnTheConsole(logging.Filter):
    """On a console handler: leaves out the records :class:`ExpectedErrorsAtDebug` moved to debug."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "fruitflow_expected", False)


def quiet_expected_errors() -> None:
    """For this process: expected errors go to the run loggers at debug level and not to the console."""
    from prefect.logging.configuration import setup_logging
    from prefect.logging.handlers import PrefectConsoleHandler

    setup_logging()  # idempotent: the handlers must exist to be given the filter
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, ExpectedErrorsAtDebug) for f in logger.filters):
            logger.addFilter(ExpectedErrorsAtDebug())
    for logger in (logging.getLogger(), logging.getLogger("prefect")):
        for handler in logger.handlers:
            if isinstance(handler, PrefectConsoleHandler) and not any(
                isinstance(f, NotOnTheConsole) for f in handler.filters
            ):
                handler.addFilter(NotOnTheConsole())


def failure_message(state) -> str:
    """What the CLI prints for a failed run: the error's own message (with its fixes), else the state message."""
    try:
        error = state.result(raise_on_failure=False)
    except Exception as exc:  # noqa: BLE001 - a result that cannot be read: fall back to the state message
        error = exc
    if isinstance(error, BaseException):
        return f"{type(error).__name__}: {error}"
    return state.message or "the run failed"
