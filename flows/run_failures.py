"""A run that fails for a reason the user can fix says it in one line, in the words of where it was started.

The flow's expected errors (:data:`flows.cli_errors.EXPECTED_ERRORS`: a missing block, a missing input folder, a
refused rerun, the Spark job's own error...) carry a message that says what to do. Left to Prefect, a UI run shows it
as ``Flow run encountered an exception: ...`` after two tracebacks of Prefect's frames (the task's, then the flow's).
:func:`fails_with_reason` makes the flow end Failed with the reason itself as the state message, and
:class:`ReasonWithoutTraceback` keeps the run log to the lines that say it.

A run started from a deployment (the UI, the API, an automation, the weekly flow) has parameters, not options: its
reason names ``the parameter `weights``` where the command line's says ``--weights`` (:func:`ui_wording`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
from collections.abc import Callable
from typing import Any

from prefect import get_run_logger
from prefect.states import Failed

from flows.cli_errors import EXPECTED_ERRORS, LOGGERS, is_expected
from tasks.validation import ValidationReport

# "pass --weights PATH", "or pass --aws-credentials-block with the name of an existing one", "rerun with --overwrite"
_OPTION = re.compile(r"(?<![\w`-])--([a-z][a-z0-9]*(?:-[a-z0-9]+)*)(?: ([A-Z][A-Z_]+)\b)?")
_PASS = re.compile(r"\b(?:pass|give) the parameter")
_WITH_THE_NAME = re.compile(r"(the parameter `\w+`) with the name")
# What Prefect's engine logs when a deployment's run process ends on a failed state, traceback and all.
_ENGINE_EXITED = "Engine execution exited with unexpected exception"


def ui_wording(message: str) -> str:
    """``message`` with its command-line options named as the flow's parameters.

    Example:
        >>> ui_wording("put the file into ~/.keras/models/ or pass --weights PATH.")
        'put the file into ~/.keras/models/ or set the parameter `weights` (a PATH).'
    """

    def parameter(found: re.Match) -> str:
        name = found.group(1).replace("-", "_")
        return f"the parameter `{name}`" + (f" (a {found.group(2)})" if found.group(2) else "")

    worded = _OPTION.sub(parameter, message)
    worded = _PASS.sub("set the parameter", worded)
    return _WITH_THE_NAME.sub(r"\1 to the name", worded)


def started_from_a_deployment() -> bool:
    """True for a run of a deployment (UI, API, automation, schedule); False for ``python -m flows.fruit_features``."""
    from prefect.runtime import deployment

    return deployment.id is not None


def worded_report(report: ValidationReport) -> ValidationReport:
    """The run's report as its summary should word it: in a run started from a deployment, the job's PCA note
    names the parameter (``pca_components``) where the job says ``--pca-components``."""
    note = report.metrics.pca_note
    if not note or not started_from_a_deployment():
        return report
    return dataclasses.replace(report, metrics=dataclasses.replace(report.metrics, pca_note=ui_wording(note)))


def one_line_reason(error: BaseException, ui: bool = False) -> str:
    """``InputError: input folder /data/x does not exist``: the error's class and message on one line."""
    message = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return f"{type(error).__name__}: {ui_wording(message) if ui else message}"


class ReasonWithoutTraceback(logging.Filter):
    """On the run loggers: an expected error is logged without its traceback (Prefect's frames, not the reason);
    in a run started from a deployment its message names parameters instead of command-line options."""

    def __init__(self, ui: bool = False):
        super().__init__()
        self.ui = ui

    def filter(self, record: logging.LogRecord) -> bool:
        if not is_expected(record):
            return True
        if record.exc_info and isinstance(record.exc_info[1], EXPECTED_ERRORS):
            if record.getMessage().startswith(_ENGINE_EXITED):
                return False  # after the run's end: the state message and the error line said it already
            record.exc_info, record.exc_text = None, None
        if self.ui:
            record.msg, record.args = ui_wording(record.getMessage()), None
        return True


def keep_reasons_short(ui: bool | None) -> None:
    """Put :class:`ReasonWithoutTraceback` on the run loggers for a run (``ui``: its wording), or take it off (None)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, ReasonWithoutTraceback)]:
            logger.removeFilter(old)
        if ui is not None:
            logger.addFilter(ReasonWithoutTraceback(ui))


def fails_with_reason(function: Callable[..., Any]) -> Callable[..., Any]:
    """A flow function that ends Failed with the one-line reason as its state message on an expected error.

    The error stays the state's result (the command line prints its own wording from it); any other error is
    Prefect's to report, traceback and all.
    """

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> Any:
        ui = started_from_a_deployment()
        keep_reasons_short(ui)
        try:
            return function(*args, **kwargs)
        except EXPECTED_ERRORS as error:
            reason = one_line_reason(error, ui)
            get_run_logger().error("%s", reason)
            return Failed(message=reason, data=error)
        finally:
            # A deployment's run has its process to itself, and Prefect's engine logs the failed run's error once
            # more after this function returns ("Engine execution exited ..."): the filter stays there. A run in
            # this process (the command line, tests) leaves the loggers as it found them.
            if not ui:
                keep_reasons_short(None)

    return run


class WordedForTheUi(logging.LoggerAdapter):
    """A logger whose messages name parameters instead of command-line options (:func:`ui_wording`)."""

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            self.logger.log(level, ui_wording(str(msg) % args if args else str(msg)), **kwargs)


def worded_for(flow_run: Any, logger: Any) -> Any:
    """``logger`` as it should speak about ``flow_run``: in UI words when a deployment started the run."""
    return WordedForTheUi(logger, {}) if getattr(flow_run, "deployment_id", None) else logger
