"""EMR Serverless preflight against moto: the execution role (missing, untrusting, without S3 access), the release
label, a reused application and the capacity, each problem with its fix, all listed at once, nothing created; and the
dry run's estimate for this input."""

from __future__ import annotations

import pytest
from prefect.exceptions import ParameterTypeError

from blocks.emr_serverless_config import EmrServerlessConfig
from tasks.aws.preflight import PreflightError
from tests.emr_fixtures import POLL_SECONDS
from tests.serverless_fixtures import TRUST, create_role, serverless_flow


def _created(aws) -> tuple[set[str], int]:
    """Every application moto knows, and the number of staged objects (what a failed preflight must not add)."""
    client = aws.client("emr-serverless")
    applications = {app["id"] for app in client.list_applications()["applications"]}
    staged = aws.client("s3").list_objects_v2(Bucket=aws.bucket, Prefix="fruitflow/fruitflow-runs/").get("KeyCount", 0)
    return applications, staged


def _refused(aws, block: str, **config) -> str:
    EmrServerlessConfig(poll_seconds=POLL_SECONDS, **config).save(block, overwrite=True)
    before = _created(aws)
    with pytest.raises(PreflightError) as caught:
        serverless_flow(aws.images, f"s3://{aws.bucket}/out/sl-{block}", serverless_block=block)
    assert _created(aws) == before, "nothing is created or staged when preflight fails"
    return str(caught.value)


def test_a_missing_execution_role_is_named_with_its_fix(aws, serverless):
    message = _refused(aws, "sl-no-role", execution_role_arn="arn:aws:iam::123456789012:role/NotThere")
    assert "execution role arn:aws:iam::123456789012:role/NotThere does not exist" in message
    assert "execution_role_arn in the EmrServerlessConfig block" in message


def test_a_role_that_does_not_trust_emr_serverless_is_refused(aws, serverless):
    ec2_trust = {**TRUST, "Statement": [{**TRUST["Statement"][0], "Principal": {"Service": "ec2.amazonaws.com"}}]}
    create_role(aws, "TrustsOnlyEc2", trust=ec2_trust)
    message = _refused(aws, "sl-untrusting", execution_role_arn="TrustsOnlyEc2")
    assert "execution role TrustsOnlyEc2 does not trust emr-serverless.amazonaws.com" in message
    assert "aws iam update-assume-role-policy --role-name TrustsOnlyEc2" in message
    assert "may not" not in message, "its S3 permissions are fine (read from its policies: moto has no simulator)"


def test_every_problem_is_listed_at_once(aws, serverless):
    create_role(aws, "NoS3Access", s3=False)
    message = _refused(aws, "sl-many", execution_role_arn="NoS3Access", release_label="emr-7.99.0", max_vcpus=8)
    lines = [line for line in message.splitlines() if line.startswith("- ")]
    assert any("release label emr-7.99.0 is not known to EMR in us-east-1" in line for line in lines), lines
    assert any("need 42 vCPUs, more than max_vcpus 8" in line for line in lines), lines
    assert any(f"may not s3:GetObject on arn:aws:s3:::{aws.bucket}/images/" in line for line in lines), lines
    assert any(f"may not s3:PutObject on arn:aws:s3:::{aws.bucket}/out/sl-sl-many/" in line for line in lines), lines
    assert any("may not s3:ListBucket" in line for line in lines), lines


def test_an_older_release_line_and_a_terminated_application_are_refused(aws, serverless):
    client = aws.client("emr-serverless")
    gone = client.create_application(name="gone", releaseLabel="emr-7.13.0", type="SPARK")["applicationId"]
    client.stop_application(applicationId=gone)
    client.delete_application(applicationId=gone)
    message = _refused(aws, "sl-old", release_label="emr-6.15.0", application_id=gone)
    assert "release_label emr-6.15.0 is not EMR 7.x" in message
    assert f"application {gone} is TERMINATED: clear application_id" in message


def test_cluster_id_is_for_the_cluster_engine(aws, serverless):
    with pytest.raises(ParameterTypeError, match="--cluster-id is for --engine emr, not --engine emr-serverless"):
        serverless_flow(aws.images, f"s3://{aws.bucket}/out/sl-cluster-id", cluster_id="j-1", dry_run=True)


def test_the_dry_run_checks_and_estimates_and_creates_nothing(aws, serverless):
    before = _created(aws)
    result = serverless_flow(aws.images, f"s3://{aws.bucket}/out/sl-dry", dry_run=True)
    assert _created(aws) == before
    assert result.dry_run and result.validation is None
    assert result.checked.images == 25
    assert result.checked.execution_role_arn == "arn:aws:iam::123456789012:role/EMRServerlessS3RuntimeRole"
    assert result.estimate.images == 25 and result.estimate.usd is not None
    assert "expected ~5 min" in result.estimate.text and "at most ~$" in result.estimate.text
    assert result.cost_estimate is result.estimate.upper_bound
