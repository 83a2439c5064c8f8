"""The real fruit-features flow on the EMR engine, with the test job options (random weights, alpha 0.35)."""

from __future__ import annotations

from flows.fruit_features import fruit_features
from tasks.contract import RunResult
from tests.conftest import NO_HEALTH_PARAMETER

# health off but in the happy path (tests/conftest.py NO_HEALTH says why)
TEST_JOB = {"weights": "random", "alpha": 0.35, "pca_components": 4, "batch_size": 8, "step_timeout_minutes": 10}
TEST_JOB |= NO_HEALTH_PARAMETER


def emr_test_flow(images: str, output: str, **parameters) -> RunResult:
    """Run the flow with ``engine="emr"`` and the test job options; returns its :class:`RunResult`."""
    return fruit_features(images=images, output=output, engine="emr", **{**TEST_JOB, **parameters})
