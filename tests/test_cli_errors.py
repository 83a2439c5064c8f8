"""On the command line an expected error is its message once, with its fixes, exit 1: no traceback, no ERROR lines
(the temporary server's offline telemetry included)."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from flows.cli_errors import EXPECTED_ERRORS, ExpectedErrorsAtDebug, NotOnTheConsole

REPO = Path(__file__).resolve().parent.parent


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("PREFECT_")}
    return subprocess.run(
        [sys.executable, "-m", "flows.fruit_features", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda images, output, tmp: ["--images", str(tmp / "missing"), "--output", str(tmp / "o")], "does not exist"),
        (
            lambda images, output, tmp: ["--images", str(images), "--output", str(output)],
            "already holds a finished run",
        ),
    ],
    ids=["missing-input", "refused-rerun"],
)
def test_expected_errors_print_their_message_once_without_traceback(
    fruit_images, job_output, tmp_path, make_args, message
):
    done = _cli(*make_args(fruit_images, job_output, tmp_path), "--weights", "random")
    printed = done.stdout + done.stderr
    assert done.returncode == 1, printed
    assert "Traceback" not in printed
    assert "| ERROR" not in printed, printed  # neither the task's nor the flow's nor the server's telemetry
    assert printed.count(message) == 2, printed  # the final state line, and the CLI's own line
    assert "fruit-features failed: InputError: " in printed


def _record(error: BaseException) -> logging.LogRecord:
    return logging.LogRecord(
        "prefect.task_runs", logging.ERROR, __file__, 1, "failed", None, (type(error), error, None)
    )


def test_every_expected_error_class_goes_to_debug_and_off_the_console():
    for cls in EXPECTED_ERRORS:
        record = _record(cls.__new__(cls))
        assert ExpectedErrorsAtDebug().filter(record) and record.levelno == logging.DEBUG, cls
        assert not NotOnTheConsole().filter(record), cls
    surprise = _record(KeyError("a bug"))
    assert ExpectedErrorsAtDebug().filter(surprise) and surprise.levelno == logging.ERROR
    assert NotOnTheConsole().filter(surprise)
