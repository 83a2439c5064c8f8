"""Preflight before anything is created (issue 20, case 8): a bucket in another region than the credentials is a
clear warning with what it costs, and an EMR Serverless ``--step-timeout-minutes`` outside what StartJobRun accepts
is refused in preflight, not after the application was created."""

from __future__ import annotations

import logging

import boto3
import pytest

from blocks.emr_serverless_config import EmrServerlessConfig
from tasks.aws.preflight import PreflightError
from tests.emr_flow import emr_test_flow
from tests.serverless_fixtures import create_role, serverless_flow

OTHER_REGION = "eu-west-1"


@pytest.fixture(scope="module")
def images_in_another_region(aws) -> str:
    """Two of the test images copied into a bucket in eu-west-1."""
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=OTHER_REGION)
    s3 = session.client("s3", endpoint_url=aws.endpoint)
    bucket = "fruitflow-test-eu"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": OTHER_REGION})
    source = aws.client("s3")
    keys = [o["Key"] for o in source.list_objects_v2(Bucket=aws.bucket, Prefix="images/")["Contents"]][:2]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=source.get_object(Bucket=aws.bucket, Key=key)["Body"].read())
    return f"s3://{bucket}/images"


def test_a_bucket_in_another_region_is_a_warning_with_its_cost(aws, images_in_another_region, caplog):
    before = aws.clusters()
    with caplog.at_level(logging.WARNING):
        result = emr_test_flow(images=images_in_another_region, output=f"s3://{aws.bucket}/out/eu", dry_run=True)
    assert result.dry_run and result.checked.images == 2 and aws.clusters() == before
    warnings = [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "crosses regions" in r.getMessage()
    ]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    assert "fruitflow-test-eu is in eu-west-1, the run in us-east-1" in warnings[0]
    assert "GB across regions (~$" in warnings[0] and "region of the AwsCredentials block" in warnings[0]
    assert f"{aws.bucket} is in" not in warnings[0], "the buckets in the run's region are not named"


@pytest.fixture(scope="module")
def timeout_block(aws) -> str:
    """An EmrServerlessConfig block with its own execution role (no job run player: nothing may start here)."""
    create_role(aws, "FruitflowTimeoutCheckRole")
    EmrServerlessConfig(execution_role_arn="FruitflowTimeoutCheckRole", poll_seconds=1).save(
        "sl-timeout", overwrite=True
    )
    return "sl-timeout"


def _applications(aws) -> set[str]:
    return {app["id"] for app in aws.client("emr-serverless").list_applications()["applications"]}


@pytest.mark.parametrize("minutes", [-1, 0, 10081])
def test_a_serverless_timeout_outside_what_aws_accepts_is_refused_before_the_application(aws, timeout_block, minutes):
    before = _applications(aws)
    with pytest.raises(PreflightError) as caught:
        serverless_flow(
            aws.images,
            f"s3://{aws.bucket}/out/sl-timeout",
            serverless_block=timeout_block,
            step_timeout_minutes=minutes,
        )
    assert f"--step-timeout-minutes {minutes} is not a valid EMR Serverless executionTimeoutMinutes" in str(
        caught.value
    )
    assert "1 to 10080 minutes" in str(caught.value)
    assert _applications(aws) == before, "preflight refuses before CreateApplication"
