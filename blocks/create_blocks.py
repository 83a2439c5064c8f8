"""Create (or update) the blocks the EMR engine loads, from environment variables.

    AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... AWS_DEFAULT_REGION=eu-west-1 FRUITFLOW_BUCKET=my-bucket \\
        python -m blocks.create_blocks

Read: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_PROFILE``,
``AWS_DEFAULT_REGION`` (or ``AWS_REGION``), ``AWS_ENDPOINT_URL`` (LocalStack, moto), ``FRUITFLOW_BUCKET``
(required), ``FRUITFLOW_BUCKET_FOLDER``, ``FRUITFLOW_KEY_PAIR``, ``FRUITFLOW_SUBNET``, ``FRUITFLOW_LOG_URI``; for EMR
Serverless ``FRUITFLOW_SERVERLESS_ROLE`` (the job's execution role: ARN or name), ``FRUITFLOW_SERVERLESS_APPLICATION``
(an application to reuse) and ``FRUITFLOW_SERVERLESS_LOG_URI``.
Unset keys leave boto3's own chain (profile, instance role, SSO) to find credentials at run time; the secret
is stored in the block as a secret, never printed.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping

from prefect_aws import AwsCredentials, S3Bucket
from prefect_aws.client_parameters import AwsClientParameters

from blocks.emr_cluster_config import EmrClusterConfig
from blocks.emr_serverless_config import EmrServerlessConfig


def build_blocks(env: Mapping[str, str]) -> tuple[AwsCredentials, S3Bucket, EmrClusterConfig]:
    """The three blocks described by ``env``; raises ``SystemExit`` naming what is missing."""
    bucket = env.get("FRUITFLOW_BUCKET")
    if not bucket:
        raise SystemExit("FRUITFLOW_BUCKET is not set: export FRUITFLOW_BUCKET=<your bucket name> and run again")
    client_parameters = AwsClientParameters(endpoint_url=env.get("AWS_ENDPOINT_URL") or None)
    credentials = AwsCredentials(
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
        aws_session_token=env.get("AWS_SESSION_TOKEN") or None,
        profile_name=env.get("AWS_PROFILE") or None,
        region_name=env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or "us-east-1",
        aws_client_parameters=client_parameters,
    )
    s3_bucket = S3Bucket(
        bucket_name=bucket, bucket_folder=env.get("FRUITFLOW_BUCKET_FOLDER", ""), credentials=credentials
    )
    cluster = EmrClusterConfig(
        key_pair_name=env.get("FRUITFLOW_KEY_PAIR") or None,
        subnet_id=env.get("FRUITFLOW_SUBNET") or None,
        log_uri=env.get("FRUITFLOW_LOG_URI") or None,
    )
    return credentials, s3_bucket, cluster


def build_serverless_block(env: Mapping[str, str]) -> EmrServerlessConfig:
    """The EmrServerlessConfig described by ``env`` (every unset key keeps the block's default)."""
    given = {
        "execution_role_arn": env.get("FRUITFLOW_SERVERLESS_ROLE"),
        "application_id": env.get("FRUITFLOW_SERVERLESS_APPLICATION"),
        "log_uri": env.get("FRUITFLOW_SERVERLESS_LOG_URI"),
    }
    return EmrServerlessConfig(**{field: value for field, value in given.items() if value})


def create_blocks(env: Mapping[str, str], name: str = "fruitflow") -> dict[str, str]:
    """Save the blocks under ``name`` (overwriting); returns what was saved, without secrets."""
    credentials, s3_bucket, cluster = build_blocks(env)
    serverless = build_serverless_block(env)
    credentials.save(name, overwrite=True)
    s3_bucket.save(name, overwrite=True)
    cluster.save(name, overwrite=True)
    serverless.save(name, overwrite=True)
    return {
        "aws-credentials": name,
        "s3-bucket": f"{name} (s3://{s3_bucket.bucket_name}/{s3_bucket.bucket_folder})",
        "emr-cluster-config": name,
        "emr-serverless-config": f"{name} (execution role {serverless.execution_role_arn})",
        "region": credentials.region_name or "",
        "endpoint": credentials.aws_client_parameters.endpoint_url or "AWS",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m blocks.create_blocks", description=__doc__.split("\n")[0])
    parser.add_argument("--name", default="fruitflow", help="name of the four blocks (default: fruitflow)")
    args = parser.parse_args(argv)
    for kind, value in create_blocks(os.environ, args.name).items():
        print(f"{kind}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
