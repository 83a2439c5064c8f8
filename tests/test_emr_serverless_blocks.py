"""EMR Serverless pieces that need no AWS: the block, the requests made from it, waiters, prices, role checks."""

from __future__ import annotations

import pytest

from blocks.create_blocks import build_serverless_block
from blocks.emr_serverless_config import EmrServerlessConfig
from tasks.aws.remote import run_max_age_hours
from tasks.aws.tags import TAG_CREATED_BY, TAG_FLOW_RUN, TAG_MAX_AGE
from tasks.emr_serverless.application import application_request
from tasks.emr_serverless.job_run import environment_confs, spark_confs, spark_submit_parameters
from tasks.emr_serverless.pricing import billed_cost, estimate_job
from tasks.emr_serverless.role_check import allowed_by, trusts_service
from tasks.emr_serverless.waiters import WAITERS, waiter
from tests.serverless_fixtures import TRUST

# Prefect's BlockStandardTestSuite runs on this block with the others: tests/test_block_standards.py.


def test_every_field_is_described_and_the_defaults_are_the_cluster_engines_line():
    config = EmrServerlessConfig()
    assert all(field.description for field in EmrServerlessConfig.model_fields.values())
    assert config.release_label == "emr-7.13.0" and config.application_id is None and config.initial_executors == 0
    assert config.driver_cores + config.max_executors * config.executor_cores <= config.max_vcpus


def test_a_created_application_is_tagged_auto_stops_and_has_no_initial_capacity_by_default():
    config = EmrServerlessConfig(tags={"team": "fruit"}, auto_stop_idle_minutes=20)
    request = application_request(config, name="fruitflow run", flow_run_id="f-1", max_age_hours=3.75)
    assert request["tags"] == {"team": "fruit", TAG_FLOW_RUN: "f-1", TAG_CREATED_BY: "fruitflow", TAG_MAX_AGE: "3.75"}
    assert request["autoStopConfiguration"] == {"enabled": True, "idleTimeoutMinutes": 20}
    assert "initialCapacity" not in request and request["architecture"] == "X86_64"
    assert (
        request["clientToken"]
        == application_request(config, name="x", flow_run_id="f-1", max_age_hours=1)["clientToken"]
    ), "same flow run, same token: a resent CreateApplication makes no second application"
    warm = application_request(EmrServerlessConfig(initial_executors=2), name="x", flow_run_id="f", max_age_hours=1)
    assert warm["initialCapacity"]["Executor"] == {
        "workerCount": 2,
        "workerConfiguration": {"cpu": "4 vCPU", "memory": "15 GB"},
    }
    assert run_max_age_hours(EmrServerlessConfig().application_ready_timeout_minutes, 180) == pytest.approx(
        (15 + 180 + 30) / 60
    )


def test_the_shipped_environment_is_one_more_set_of_confs():
    confs = spark_confs(EmrServerlessConfig(), py_files_uri="s3://b/j.zip")
    plain = spark_submit_parameters(confs)
    assert plain.startswith("--conf spark.submit.pyFiles=s3://b/j.zip --conf spark.driver.cores=2")
    assert "FRUITFLOW_" not in plain  # the run's context goes in the job's options, not the driver's environment
    shipped = spark_submit_parameters(confs | environment_confs("s3://b/env.tar.gz"))
    assert shipped == plain + (
        " --conf spark.archives=s3://b/env.tar.gz#environment"
        " --conf spark.emr-serverless.driverEnv.PYTHONPATH=./environment"
        " --conf spark.executorEnv.PYTHONPATH=./environment"
    )
    venv = environment_confs("s3://b/venv.tar.gz", layout="venv")
    assert venv["spark.executorEnv.PYSPARK_PYTHON"] == "./environment/bin/python"
    with pytest.raises(ValueError, match="spaces"):
        spark_submit_parameters({"spark.app.name": "two words"})


def test_every_waiter_loads_and_names_an_operation_of_the_api():
    import boto3

    client = boto3.client("emr-serverless", region_name="us-east-1")
    for name in WAITERS:
        made = waiter(name, client)
        assert made.config.operation in client.meta.service_model.operation_names, name


def test_the_cost_is_the_billed_resources_times_the_price_table():
    job_run = {"billedResourceUtilization": {"vCPUHour": 2.0, "memoryGBHour": 8.0, "storageGBHour": 10.0}}
    cost = billed_cost(EmrServerlessConfig(), job_run, "us-east-1")
    assert cost.usd == pytest.approx(round(2 * 0.052624 + 8 * 0.0057785 + 10 * 0.000111, 2))
    assert "2 vCPU-h, 8 GB-h memory, 10 GB-h storage" in cost.text and "not a bill" in cost.text
    arm = billed_cost(EmrServerlessConfig(architecture="ARM64"), job_run, "eu-west-3")
    assert arm.usd == pytest.approx(round((2 * 0.042094 + 8 * 0.004628 + 10 * 0.000111) * 1.167, 2))
    assert billed_cost(EmrServerlessConfig(), job_run, "ap-south-1").usd is None


def test_the_dry_run_estimate_scales_with_the_input_not_the_executors():
    config = EmrServerlessConfig()
    small, big = estimate_job(config, 42_749, "us-east-1", 180), estimate_job(config, 1_000_000, "us-east-1", 180)
    assert small.minutes == pytest.approx(2 + 3 + 42_749 / 2_000 / 60)
    assert (small.usd, big.usd) == (0.04, 0.5)  # docs/emr.md quotes these
    wider = estimate_job(EmrServerlessConfig(max_executors=40, max_vcpus=200), 1_000_000, "us-east-1", 180)
    assert wider.minutes < big.minutes and wider.expected.vcpu_hours == pytest.approx(big.expected.vcpu_hours, 0.1)
    # at most: the widest job for the worker start and the execution timeout (tests/test_cost_bound.py)
    assert big.upper_bound.vcpu_hours == pytest.approx(42 * 182 / 60) and "execution timeout 180 min" in big.text


def test_the_role_checks_read_trust_and_permission_documents():
    assert trusts_service(TRUST) and not trusts_service({"Statement": []})
    ec2 = {
        "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "ec2.amazonaws.com"}}]
    }
    assert not trusts_service(ec2)
    statements = [
        {"Effect": "Allow", "Action": "s3:Get*", "Resource": "arn:aws:s3:::b/*"},
        {"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": "arn:aws:s3:::b/out/*"},
        {"Effect": "Deny", "Action": "s3:*", "Resource": "arn:aws:s3:::b/secret/*"},
    ]
    assert allowed_by(statements, "s3:GetObject", "arn:aws:s3:::b/images/a.jpg")
    assert allowed_by(statements, "S3:getobject", "arn:aws:s3:::b/images/a.jpg"), "actions ignore case"
    assert not allowed_by(statements, "s3:GetObject", "arn:aws:s3:::b/secret/a"), "a Deny wins"
    assert not allowed_by(statements, "s3:PutObject", "arn:aws:s3:::b/images/a.jpg")
    assert not allowed_by(statements, "s3:GetObject", "arn:aws:s3:::B/images/a.jpg"), "resources keep their case"


def test_create_blocks_reads_the_serverless_settings():
    made = build_serverless_block({"FRUITFLOW_SERVERLESS_ROLE": "arn:aws:iam::1:role/R"})
    assert made.execution_role_arn == "arn:aws:iam::1:role/R" and made.application_id is None
    assert build_serverless_block({}).execution_role_arn == "EMRServerlessS3RuntimeRole"
