"""The EMR engine fails in preflight, before anything is created, with a message that says how to fix it."""

from __future__ import annotations

import pytest
from prefect_aws import S3Bucket

from blocks.emr_cluster_config import EmrClusterConfig
from flows.fruit_features import fruit_features
from tasks.aws.preflight import PreflightError
from tests.emr_fixtures import POLL_SECONDS
from tests.emr_flow import TEST_JOB, emr_test_flow


@pytest.fixture
def no_cluster_created(aws):
    """Asserts, after the test, that moto holds exactly the clusters it held before."""
    before = aws.clusters()
    yield
    assert aws.clusters() == before, "preflight must not create a cluster"


def _fails_in_preflight(**parameters) -> str:
    with pytest.raises(PreflightError) as caught:
        emr_test_flow(**parameters)
    return str(caught.value)


def test_missing_service_role(aws, no_cluster_created):
    EmrClusterConfig(service_role="NoSuchEmrRole", poll_seconds=POLL_SECONDS).save("missing-role", overwrite=True)
    message = _fails_in_preflight(images=aws.images, output=f"s3://{aws.bucket}/out/role", cluster_block="missing-role")
    assert "NoSuchEmrRole does not exist" in message
    assert "aws emr create-default-roles" in message


def test_missing_key_pair(aws, no_cluster_created):
    EmrClusterConfig(key_pair_name="nobodys-key", poll_seconds=POLL_SECONDS).save("missing-key", overwrite=True)
    message = _fails_in_preflight(images=aws.images, output=f"s3://{aws.bucket}/out/key", cluster_block="missing-key")
    assert "key pair nobodys-key does not exist in us-east-1" in message
    assert "aws ec2 create-key-pair --key-name nobodys-key" in message


def test_empty_input_prefix(aws, no_cluster_created):
    aws.client("s3").put_object(Bucket=aws.bucket, Key="empty/README.txt", Body=b"no images here")
    message = _fails_in_preflight(images=f"s3://{aws.bucket}/empty", output=f"s3://{aws.bucket}/out/empty")
    assert f"no images (.jpg, .jpeg, .png) under s3://{aws.bucket}/empty (1 other files)" in message
    assert "aws s3 sync" in message


def test_unreachable_bucket(aws, no_cluster_created):
    S3Bucket.load("fruitflow").model_copy(update={"bucket_name": "no-such-fruitflow-bucket"}).save(
        "unreachable", overwrite=True
    )
    message = _fails_in_preflight(images=aws.images, output=f"s3://{aws.bucket}/out/b", s3_bucket_block="unreachable")
    assert "bucket no-such-fruitflow-bucket does not exist" in message
    assert "aws s3 mb s3://no-such-fruitflow-bucket" in message


def test_local_images_path_is_refused_with_the_sync_command(aws, tmp_path, no_cluster_created):
    message = _fails_in_preflight(images=str(tmp_path), output=f"s3://{aws.bucket}/out/local")
    assert f"aws s3 sync '{tmp_path}' s3://" in message


def test_finished_output_is_refused_without_overwrite(aws, no_cluster_created):
    aws.client("s3").put_object(Bucket=aws.bucket, Key="out/done/metrics.json", Body=b"{}")
    message = _fails_in_preflight(images=aws.images, output=f"s3://{aws.bucket}/out/done")
    assert "already holds a finished run" in message and "--overwrite" in message


def test_unfinished_output_is_refused_without_incremental_or_overwrite(aws, no_cluster_created):
    aws.client("s3").put_object(Bucket=aws.bucket, Key="out/half/features/part-0.parquet", Body=b"PAR1")
    message = _fails_in_preflight(images=aws.images, output=f"s3://{aws.bucket}/out/half")
    assert "holds an unfinished run (features, but no metrics.json)" in message and "--incremental" in message


def test_every_problem_is_listed_at_once(aws, no_cluster_created):
    EmrClusterConfig(service_role="NoRole", instance_profile="NoProfile", key_pair_name="nokey").save(
        "all-wrong", overwrite=True
    )
    message = _fails_in_preflight(images=aws.images, output=f"s3://{aws.bucket}/out/all", cluster_block="all-wrong")
    assert all(name in message for name in ("NoRole", "NoProfile", "nokey"))


def _keys(aws) -> set[str]:
    pages = aws.client("s3").get_paginator("list_objects_v2").paginate(Bucket=aws.bucket)
    return {obj["Key"] for page in pages for obj in page.get("Contents", [])}


def test_dry_run_creates_nothing_and_estimates_cost(aws, no_cluster_created):
    keys = _keys(aws)
    result = emr_test_flow(images=aws.images, output=f"s3://{aws.bucket}/out/dry", dry_run=True)
    assert result.dry_run and result.engine == "emr"
    assert "cluster_id" not in result.ids and result.details == [] and result.validation is None
    assert result.checked.images == 25  # 6 classes x 4 + one broken.jpg
    estimate = result.cost_estimate
    assert estimate.usd_per_hour == pytest.approx(0.72) and "estimate" in estimate.label
    # at most: provisioning, the step timeout (TEST_JOB: 10 min), the log wait and termination, a poll each
    assert estimate.usd == pytest.approx(0.72 * (30 + 10 + 6 + 30 + 4 * POLL_SECONDS / 60) / 60, abs=0.01)
    assert _keys(aws) == keys, "a dry run uploads nothing"


def test_default_output_under_the_images_folder_is_refused(aws, no_cluster_created):
    """Images in the S3Bucket block's folder itself: the EMR default output (<folder>/fruitflow-output/run-...) would
    land inside the input."""
    S3Bucket.load("fruitflow").save("images-in-folder", overwrite=True)  # bucket folder "fruitflow"
    with pytest.raises(PreflightError) as caught:
        fruit_features(
            images=f"s3://{aws.bucket}/fruitflow", engine="emr", s3_bucket_block="images-in-folder", **TEST_JOB
        )
    message = str(caught.value)
    assert f"s3://{aws.bucket}/fruitflow/fruitflow-output/run-" in message and "the default output" in message
    assert "choose an output outside the input folder or prefix" in message


def test_output_inside_the_images_prefix_is_refused(aws, no_cluster_created):
    message = _fails_in_preflight(images=aws.images, output=f"{aws.images}/features-run")
    assert "lies inside --images" in message and "outside the input folder or prefix" in message
