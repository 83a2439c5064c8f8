"""The real fruit-features flow on the EMR engine, with the test job options (random weights, alpha 0.35)."""

from __future__ import annotations

from flows.fruit_features import fruit_features

TEST_JOB = {"weights": "random", "alpha": 0.35, "pca_components": 4, "batch_size": 8, "step_timeout_minutes": 10}


def emr_test_flow(images: str, output: str, **parameters) -> dict:
    """Run the flow with ``engine="emr"``; returns the engine's result with the validation report inside."""
    report = fruit_features(images=images, output=output, engine="emr", **{**TEST_JOB, **parameters})
    if parameters.get("dry_run"):
        return report
    engine_result = report.pop("emr")
    return {**engine_result, "validation": report}
