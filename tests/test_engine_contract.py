"""One contract for every engine of ``tasks.registry.ENGINES``: check -> estimate -> run -> cleanup, with typed
answers (a :class:`Preflight`, a cost or None, a :class:`RunOutcome`) and an output that validates.

The local engine runs the job with real Spark on the session's 25 small images; the AWS engines run it against the
moto server (tests/emr_fixtures.py: the fake cluster plays EMR's step; tests/serverless_fixtures.py: the job run
player plays EMR Serverless), the job itself run for real by the players. A new engine needs its case here.
"""

from __future__ import annotations

import logging
import uuid

import pytest
from prefect import flow

from fruitjob.options import JobOptions
from tasks.contract import Preflight, RunOutcome
from tasks.engine_settings import EmrServerlessSettings, EmrSettings, LocalSettings
from tasks.registry import ENGINES, engine_for
from tasks.validation import validate_output
from tests.conftest import NO_HEALTH_PARAMETER

pytestmark = pytest.mark.slow

TEST_JOB = {"weights": "random", "alpha": 0.35, "pca_components": 4, "batch_size": 8, **NO_HEALTH_PARAMETER}


def _local(request, tmp_path):
    return str(request.getfixturevalue("fruit_images")), str(tmp_path / "out"), LocalSettings()


def _emr(request, tmp_path):
    aws = request.getfixturevalue("aws")
    request.getfixturevalue("fake_cluster")
    return aws.images, f"s3://{aws.bucket}/out/contract-emr", EmrSettings(step_timeout_minutes=10)


def _emr_serverless(request, tmp_path):
    aws = request.getfixturevalue("aws")
    request.getfixturevalue("serverless")
    return aws.images, f"s3://{aws.bucket}/out/contract-sl", EmrServerlessSettings(step_timeout_minutes=10)


CASES = {"local": _local, "emr": _emr, "emr-serverless": _emr_serverless}


def test_every_registered_engine_has_a_case():
    assert set(CASES) == set(ENGINES)


@pytest.mark.parametrize("name", list(ENGINES))
def test_every_engine_keeps_the_contract(name, request, tmp_path, caplog):
    images, output, settings = CASES[name](request, tmp_path)
    engine = engine_for(settings)
    assert engine.name == name == settings.kind

    @flow(name=f"contract-{name}")
    def contract():
        job = JobOptions(images=images, output=output, **TEST_JOB)
        checked = engine.check(job)
        estimate = engine.estimate(job, checked)
        outcome = engine.run(job, checked)
        return checked, estimate, outcome, validate_output(job.output, engine.filesystem(), job.images)

    checked, estimate, outcome, report = contract()

    assert isinstance(checked, Preflight) and checked.images == 25 and checked.bytes > 0
    assert isinstance(outcome, RunOutcome) and outcome.details
    assert (report.metrics.images_ok, report.metrics.images_failed) == (24, 1)
    if name == "local":
        assert estimate is None and outcome.cost is None and outcome.ids == {}
    else:
        assert checked.account and checked.region and estimate.text
        assert outcome.cost is not None and outcome.ids and all(outcome.ids.values())
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="contract"):
        engine.cleanup(str(uuid.uuid4()), "Crashed", logging.getLogger("contract"))  # nothing of that run: no-op
    assert not [r for r in caplog.records if r.name == "contract" and r.levelno >= logging.ERROR]
