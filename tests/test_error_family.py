"""One error family (issue 20, case 7): every error a user can fix derives from ``FruitflowError`` (the job's from
``JobError``), and the command line prints its message once, exit 1, with no traceback, whatever the class."""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil
from pathlib import Path

import pytest
from botocore.awsrequest import AWSResponse

from flows.cli_errors import EXPECTED_ERRORS, LOGGERS, ExpectedErrorsAtDebug, NotOnTheConsole, expected_classes
from tasks.errors import FruitflowError
from tests.emr_fixtures import _Raw
from tests.emr_flow import TEST_JOB

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("flows", "tasks", "blocks")


def _modules():
    for package in PACKAGES:
        for found in pkgutil.walk_packages([str(REPO / package)], f"{package}."):
            yield importlib.import_module(found.name)


def _error_classes() -> list[type[BaseException]]:
    """Every exception class defined in flows/, tasks/ and blocks/ (imported from their modules)."""
    return [
        value
        for module in _modules()
        for value in vars(module).values()
        if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == module.__name__
    ]


def _record(error: BaseException, logger: str = "prefect.task_runs") -> logging.LogRecord:
    return logging.LogRecord(logger, logging.ERROR, __file__, 1, "failed", None, (type(error), error, None))


def test_every_error_class_of_the_flow_side_is_a_fruitflow_error_and_quiet_on_the_cli():
    classes = _error_classes()
    assert len(classes) >= 14, classes  # the walk found the modules (a broken walk would pass vacuously)
    assert [cls for cls in classes if not issubclass(cls, FruitflowError)] == []
    for cls in classes:
        assert cls in expected_classes(), cls
        error = cls("what to fix")
        record = _record(error)
        assert ExpectedErrorsAtDebug().filter(record) and record.levelno == logging.DEBUG, cls
        assert not NotOnTheConsole().filter(record), cls
        # a flow's state message names the class: "Flow run encountered an exception: JobRunFailed: ..."
        named = logging.LogRecord("prefect.flow_runs", logging.ERROR, __file__, 1, "", None, None)
        named.msg = f"Finished in state Failed('Flow run encountered an exception: {cls.__name__}: what to fix')"
        assert ExpectedErrorsAtDebug().filter(named) and named.levelno == logging.DEBUG, cls
    surprise = _record(KeyError("a bug"))
    assert ExpectedErrorsAtDebug().filter(surprise) and surprise.levelno == logging.ERROR


def test_the_job_keeps_its_own_family():
    from fruitjob.errors import JobError

    assert JobError in EXPECTED_ERRORS and not issubclass(JobError, FruitflowError)


@pytest.fixture
def quieting_undone():
    """The command line's quieting filters (``quiet_expected_errors``) are taken off the loggers after the test."""
    loggers = [logging.getLogger(name) for name in (*LOGGERS, "", "prefect")]
    before = {logger.name: list(logger.filters) for logger in loggers}
    handlers = {id(h): list(h.filters) for logger in loggers for h in logger.handlers}
    yield
    for logger in loggers:
        logger.filters[:] = before[logger.name]
        for handler in logger.handlers:
            handler.filters[:] = handlers.get(id(handler), handler.filters)


@pytest.fixture
def cli(aws, capfd, quieting_undone):
    """``main(argv)`` of the command line in this process (the session's Prefect server): (exit code, what it
    printed on stdout and stderr, the console included)."""
    from flows.fruit_features import fruit_features
    from flows.fruit_features_cli import main

    def run(*argv: str) -> tuple[int, str]:
        capfd.readouterr()
        code = main(fruit_features, list(argv))
        out, err = capfd.readouterr()
        return code, out + err

    return run


def test_a_failed_serverless_job_run_is_one_line_on_the_cli(prefect_harness, quieting_undone, caplog):
    """``JobRunFailed`` was missing from the CLI's list: a flow raising it logged ERROR records with tracebacks."""
    from prefect import flow

    from flows.cli_errors import failure_message, quiet_expected_errors
    from tasks.aws.remote_wait import RemoteRunFailed

    said = "EMR Serverless job run 00f1 on 00a1 FAILED: Job failed, please check complete logs"

    @flow(name="fails-like-a-job-run")
    def fails_like_a_job_run():
        raise RemoteRunFailed(said)

    quiet_expected_errors()
    state = fails_like_a_job_run(return_state=True)
    assert failure_message(state) == f"RemoteRunFailed: {said}"
    assert said in state.message  # what the UI shows
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], errors


def _once_without_traceback(code: int, printed: str, message: str) -> None:
    assert code == 1, printed
    assert "Traceback" not in printed, printed
    assert "| ERROR" not in printed, printed
    assert printed.count(message) == 1, printed  # the CLI's own line (the state's line goes to the run logger)


def _job_args(aws, name: str) -> list[str]:
    args = ["--engine", "emr", "--images", aws.images, "--output", f"s3://{aws.bucket}/out/errors-{name}"]
    for key, value in TEST_JOB.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def test_emr_without_images_is_one_line(cli):
    code, printed = cli("--engine", "emr")
    _once_without_traceback(code, printed, "the EMR engine needs --images s3://bucket/prefix")
    assert "fruit-features failed: UsageError: " in printed


@pytest.mark.parametrize("block", ["--aws-credentials-block", "--cluster-block", "--s3-bucket-block"])
def test_a_missing_block_names_the_command_that_creates_it_also_in_a_dry_run(aws, cli, block, caplog):
    code, printed = cli(*_job_args(aws, "block"), block, "nobodys-block", "--dry-run")
    _once_without_traceback(code, printed, f"named 'nobodys-block' on this Prefect server ({block})")
    assert "`python -m blocks.create_blocks`" in printed
    assert "fruit-features failed: MissingBlock: " in printed
    # the flow's failure hook has nothing to end (nothing was created) and says so, without an error of its own
    hook_errors = [
        r.getMessage() for r in caplog.records if "error was encountered while running hook" in r.getMessage()
    ]
    assert hook_errors == []


def test_the_ui_state_message_is_the_same_line(aws):
    from flows.fruit_features import fruit_features

    state = fruit_features(engine="emr", images=None, return_state=True)
    assert state.is_failed()
    assert state.message.endswith(
        "UsageError: the EMR engine needs --images s3://bucket/prefix (upload with `aws s3 sync`)"
    ), state.message


def _query_error(code: str, status: int = 403):
    """A ``before-send`` answer in the query protocol (IAM, STS): AWS refusing the call with ``code``."""

    def answer(request, **_kwargs) -> AWSResponse:
        body = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>refused by the test ({code})"
            "</Message></Error><RequestId>1</RequestId></ErrorResponse>"
        ).encode()
        return AWSResponse(request.url, status, {"Content-Type": "text/xml"}, _Raw(body))

    return answer


def test_access_denied_on_get_role_is_a_listed_problem_naming_the_permission(aws, aws_calls, cli):
    before = aws.clusters()
    with aws_calls.on("before-send.iam.GetRole", _query_error("AccessDenied")):
        code, printed = cli(*_job_args(aws, "denied"), "--dry-run")
    _once_without_traceback(code, printed, "preflight failed, nothing was created")
    assert "may not iam:GetRole" in printed and "EMR_DefaultRole" in printed, printed
    assert "ClientError" not in printed
    assert aws.clusters() == before


@pytest.mark.parametrize("aws_code", ["ExpiredToken", "InvalidClientTokenId"])
def test_invalid_credentials_keep_the_aws_error_code(aws, aws_calls, cli, aws_code):
    with aws_calls.on("before-send.sts.GetCallerIdentity", _query_error(aws_code)):
        code, printed = cli(*_job_args(aws, "credentials"), "--dry-run")
    _once_without_traceback(code, printed, "the AWS credentials do not work")
    assert f"the AWS credentials do not work ({aws_code}" in printed, printed


def test_access_denied_on_the_serverless_execution_role_is_a_listed_problem(aws, aws_calls):
    from blocks.emr_serverless_config import EmrServerlessConfig
    from tasks.aws.preflight import PreflightError
    from tests.serverless_fixtures import create_role, serverless_flow

    create_role(aws, "FruitflowDeniedCheckRole")
    EmrServerlessConfig(execution_role_arn="FruitflowDeniedCheckRole", poll_seconds=1).save("sl-denied", overwrite=True)
    with aws_calls.on("before-send.iam.GetRole", _query_error("AccessDenied")), pytest.raises(PreflightError) as caught:
        serverless_flow(aws.images, f"s3://{aws.bucket}/out/sl-denied", serverless_block="sl-denied", dry_run=True)
    assert "execution role arn:aws:iam::123456789012:role/FruitflowDeniedCheckRole could not be checked" in str(
        caught.value
    )
    assert "may not iam:GetRole (AccessDenied)" in str(caught.value)
