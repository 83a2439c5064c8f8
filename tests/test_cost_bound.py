"""An honest cost bound (issue 20, case 6): the "at most" of both engines covers everything the run's timeouts let
AWS bill, computed here from the defaults independently of tasks/*/pricing.py, with the expected cost beside it; a
missing price says which one is missing."""

from __future__ import annotations

import pytest

from blocks.emr_cluster_config import EmrClusterConfig
from blocks.emr_serverless_config import EmrServerlessConfig
from tasks.emr.pricing import estimate_run
from tasks.emr_serverless.pricing import estimate_job

STEP_TIMEOUT = 180  # --step-timeout-minutes' default


def test_the_emr_bound_covers_provisioning_step_log_wait_and_termination_at_their_timeouts():
    # The defaults: 1 master + 2 core m5.xlarge on demand, $0.192 EC2 + $0.048 EMR each per hour in us-east-1. The
    # cluster bills from RunJobFlow: up to 30 min to be ready (cluster_ready_timeout_minutes), the step for its
    # timeout, 6 min waiting for a failed step's log, up to 30 min waiting for TERMINATED.
    hourly = 3 * (0.192 + 0.048)
    billable_minutes = 30 + STEP_TIMEOUT + 6 + 30
    estimate = estimate_run(EmrClusterConfig(), 4_000, "us-east-1", STEP_TIMEOUT)
    assert estimate.upper_bound.hours * 60 >= billable_minutes
    assert estimate.upper_bound.usd >= round(hourly * billable_minutes / 60, 2)  # $2.95, where it said $2.16
    assert estimate.expected.usd < estimate.upper_bound.usd
    text = estimate.text
    assert f"expected ~11 min and ~${estimate.expected.usd:.2f}" in text, text
    assert f"at most ~${estimate.upper_bound.usd:.2f}" in text and "provisioning 30.5 + step 181" in text, text


def test_the_serverless_bound_covers_worker_start_the_execution_timeout_and_warm_capacity():
    # The defaults: a driver (2 vCPU, 8 GB) and 10 executors (4 vCPU, 14 GB) at x86 prices; every worker at work for
    # the whole execution timeout (the job is cancelled then) after the workers started (2 min in the block).
    vcpu_usd, gb_usd = 0.052624, 0.0057785
    widest = (2 + 10 * 4) * vcpu_usd + (8 + 10 * 14) * gb_usd  # per hour
    plain = estimate_job(EmrServerlessConfig(), 4_000, "us-east-1", STEP_TIMEOUT)
    assert plain.upper_bound.usd >= round(widest * (2 + STEP_TIMEOUT) / 60, 2)
    assert "worker start 2 min + execution timeout 180 min" in plain.text
    assert f"expected ~5 min and ~${plain.expected.usd:.2f}" in plain.text
    # Pre-initialized capacity (a driver and 2 executors) bills while the application is started, outside the job
    # run too: at least while a failed run waits for its log (3 min) and the application is stopped (up to 15 min).
    warm = estimate_job(EmrServerlessConfig(initial_executors=2), 4_000, "us-east-1", STEP_TIMEOUT)
    warm_hourly = (2 + 2 * 4) * vcpu_usd + (8 + 2 * 14) * gb_usd
    assert warm.upper_bound.usd - plain.upper_bound.usd >= round(warm_hourly * (3 + 15) / 60, 2) - 0.01
    assert "pre-initialized capacity, outside the job run" in warm.text


@pytest.mark.parametrize(
    ("config", "region", "named"),
    [
        (EmrClusterConfig(emr_hourly_usd={"m5.2xlarge": 0.096}), "us-east-1", "the EMR surcharge of m5.xlarge"),
        (EmrClusterConfig(ec2_hourly_usd={}), "us-east-1", "the EC2 price of m5.xlarge"),
        (EmrClusterConfig(), "ap-south-1", "a price factor for region ap-south-1"),
    ],
    ids=["emr-surcharge", "ec2-price", "region"],
)
def test_a_missing_emr_price_says_which(config, region, named):
    estimate = estimate_run(config, 4_000, region, STEP_TIMEOUT)
    assert estimate.usd is None and estimate.upper_bound.usd is None
    assert f"no price: the block's price table lacks {named}" in estimate.text, estimate.text
    if "region" not in named:
        assert "region" not in estimate.text.split("lacks")[1].split("; at most")[0], estimate.text


def test_a_missing_serverless_price_says_which():
    arm = estimate_job(EmrServerlessConfig(architecture="ARM64", usd_per_vcpu_hour={}), 4_000, "us-east-1", 60)
    assert "no price (the block's price table lacks the ARM64 price in usd_per_vcpu_hour)" in arm.text, arm.text
    mumbai = estimate_job(EmrServerlessConfig(), 4_000, "ap-south-1", 60)
    assert "lacks a price factor for region ap-south-1 (region_price_factors)" in mumbai.text
