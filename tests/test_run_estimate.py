"""The EMR run estimate a user can plan with: this input's expected duration and cost, region-aware, with the
step timeout's upper bound as a second figure, and compared with what the run took in the summary."""

from __future__ import annotations

import pytest

from blocks.emr_cluster_config import EmrClusterConfig
from tasks.emr.pricing import estimate_cost, estimate_run


def test_the_expected_run_is_provisioning_plus_images_over_the_measured_rate():
    config = EmrClusterConfig()  # 2 core m5.xlarge: 8 vCPUs x 50 images/s
    small, big = estimate_run(config, 4_000, "us-east-1", 180), estimate_run(config, 400_000, "us-east-1", 180)
    assert small.minutes == pytest.approx(8 + 3 + 4_000 / 400 / 60)
    assert big.minutes == pytest.approx(8 + 3 + 400_000 / 400 / 60)
    wider = estimate_run(EmrClusterConfig(core_instance_count=8), 400_000, "us-east-1", 180)
    assert wider.minutes < big.minutes and wider.usd > small.usd
    assert big.usd == pytest.approx(round(0.72 * big.minutes / 60, 2))
    # at most: provisioning, step, log wait and termination at their timeouts (tests/test_cost_bound.py)
    assert (
        big.upper_bound.usd == pytest.approx(0.72 * 248.5 / 60, abs=0.01) and "at most ~$2.98 for 249 min" in big.text
    )


def test_prices_follow_the_region_and_an_unknown_region_says_so():
    config = EmrClusterConfig()
    virginia, paris = estimate_run(config, 42_749, "us-east-1", 180), estimate_run(config, 42_749, "eu-west-3", 180)
    assert paris.usd > virginia.usd and paris.minutes == virginia.minutes
    assert estimate_cost(config, 1.0, "eu-west-3").usd_per_hour == pytest.approx(0.72 * 1.167, abs=1e-3)
    mumbai = estimate_run(config, 42_749, "ap-south-1", 180)
    assert mumbai.usd is None and mumbai.upper_bound.usd is None
    assert (
        "no price: the block's price table lacks a price factor for region ap-south-1" in mumbai.text
        and "expected ~" in mumbai.text
    )
    custom = EmrClusterConfig(region_price_factors={"ap-south-1": 1.05})
    assert estimate_run(custom, 42_749, "ap-south-1", 180).usd is not None


def test_a_type_without_a_vcpu_count_gets_no_duration_but_keeps_the_upper_bound():
    estimate = estimate_run(EmrClusterConfig(core_instance_type="x9.mega"), 1_000, "us-east-1", 60)
    assert estimate.minutes is None and "no duration estimate" in estimate.text and "step 61" in estimate.text


def test_the_summary_compares_the_estimate_with_what_the_run_took():
    from fruitjob.metrics import RunMetrics
    from tasks.contract import RunResult
    from tasks.summary import summary_markdown
    from tasks.validation import ValidationReport

    metrics = RunMetrics.from_dict(
        {
            "images": "s3://b/in",
            "output": "s3://b/out",
            "files_seen": 3,
            "files_skipped": 0,
            "images_total": 3,
            "images_ok": 3,
            "images_failed": 0,
            "feature_dim": 1280,
            "pca_components": 2,
            "explained_variance": [0.5, 0.2],
            "explained_variance_total": 0.7,
            "weights": "random",
            "weights_sha256": "ab" * 32,
            "alpha": 1.0,
            "featurizer": "tflite",
            "durations_s": {"featurize": 1.0},
        }
    )
    result = RunResult(engine="emr", output="s3://b/out", estimate=estimate_run(EmrClusterConfig(), 3, "eu-west-3", 60))
    result.cost_estimate, result.durations_s["run"] = estimate_cost(EmrClusterConfig(), 0.2, "eu-west-3"), 720.0
    markdown = summary_markdown(ValidationReport("s3://b/out", metrics), result)
    (row,) = [line for line in markdown.splitlines() if line.startswith("| estimated before the run |")]
    row = row.replace("<br>", " ")  # long cells are broken into lines to fit the UI's page
    assert "expected \\~11 min" in row and "it took 12.0 min" in row
