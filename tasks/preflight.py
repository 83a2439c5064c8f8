"""Preflight for the EMR engine: everything that can be checked before a cluster costs money.

Credentials (STS), buckets, the input prefix, the output prefix, the IAM roles, the key pair, the subnet, and a
reused cluster's state. Every failure says what is missing and how to fix it; nothing is created here.
"""

from __future__ import annotations

import os

from botocore.exceptions import BotoCoreError, ClientError
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect_aws import AwsCredentials

from blocks.emr_cluster import EmrClusterConfig
from fruitjob import rules
from tasks.aws_clients import S3UriError, check_s3_uri, client, region_of, split_s3_uri
from tasks.job_spec import JobSpec

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
REUSABLE_STATES = ("STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING")


class PreflightError(RuntimeError):
    """Something the run needs is missing; the message lists each problem and how to fix it."""


def check_uris(spec: JobSpec) -> None:
    """The EMR engine reads and writes S3 only: refuse local paths with the command that uploads them."""
    if not spec.images.startswith("s3://"):
        raise PreflightError(
            f"--images {spec.images} is not an s3:// prefix; the EMR cluster cannot read this machine's files. "
            f"Upload them first, e.g. `aws s3 sync '{spec.images}' s3://<bucket>/images/`, and pass that prefix."
        )
    if not spec.output.startswith("s3://"):
        raise PreflightError(f"--output {spec.output} must be an s3:// prefix with the EMR engine")
    named = spec.weights in ("imagenet", "random") or spec.weights.startswith("s3://")
    if not named and not os.path.isfile(spec.weights):
        raise PreflightError(f"--weights {spec.weights} is neither imagenet, random, an s3:// URI nor a local file")
    if spec.pca_model and not spec.pca_model.startswith("s3://"):
        raise PreflightError(f"--pca-model {spec.pca_model} must be on S3 with the EMR engine (aws s3 sync it)")
    # Before any use: these go into the step's arguments and into S3 calls as they are.
    named = {"--images": spec.images, "--output": spec.output, "--pca-model": spec.pca_model}
    if spec.weights.startswith("s3://"):
        named["--weights"] = spec.weights
    problems = []
    for option, uri in named.items():
        try:
            if uri:
                check_s3_uri(uri, option)
        except S3UriError as exc:
            problems.append(str(exc))
    if not problems and output_inside_input(spec.output, spec.images):
        problems.append(output_inside_input_problem(spec))
    if problems:
        raise PreflightError("preflight failed, nothing was created:\n- " + "\n- ".join(problems))


def _as_prefix(uri: str) -> tuple[str, str]:
    """(bucket, key prefix ending in '/'): ``s3://b/images`` and ``s3://b/images/`` name the same folder."""
    bucket, key = split_s3_uri(uri)
    key = key.strip("/")
    return bucket, f"{key}/" if key else ""


def output_inside_input(output: str, images: str) -> bool:
    """Whether ``output`` is ``images`` or lies under it (bucket and key prefix, compared folder by folder).

    Example:
        >>> output_inside_input("s3://b/images/out", "s3://b/images/"), output_inside_input("s3://b/images2", "s3://b/images")
        (True, False)
    """
    out_bucket, out_key = _as_prefix(output)
    in_bucket, in_key = _as_prefix(images)
    return out_bucket == in_bucket and out_key.startswith(in_key)


def output_inside_input_problem(spec: JobSpec) -> str:
    """The message for an output under the input: the next run would read the output's files as images."""
    default = "/fruitflow-output/run-" in spec.output
    which = "the default output (under the bucket folder of the S3Bucket block) " if default else ""
    return (
        f"--output {spec.output}: {which}lies inside --images {spec.images}; the job would write into the folder it "
        "reads, and the next run would take the output's files for images. Choose an --output outside the input "
        f"prefix, e.g. s3://{split_s3_uri(spec.images)[0]}/runs/<name>"
        + (", or keep the images in a sub-folder of the bucket folder (e.g. .../images/)" if default else "")
    )


def _error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _check_bucket(s3, bucket: str, region: str) -> str | None:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = _error_code(exc)
        if code in ("404", "NoSuchBucket", "NotFound"):
            return f"bucket {bucket} does not exist: create it with `aws s3 mb s3://{bucket} --region {region}`"
        return f"bucket {bucket} is not reachable ({code or exc}): check its name and that these credentials may use it"
    except BotoCoreError as exc:
        return f"bucket {bucket} is not reachable ({type(exc).__name__}): check the endpoint and network"
    return None


def count_images(s3, uri: str) -> tuple[int, int, int]:
    """(images, their total bytes, all files) under an s3:// prefix."""
    bucket, prefix = split_s3_uri(uri.rstrip("/") + "/")
    images = size = files = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            files += 1
            if item["Key"].lower().endswith(IMAGE_SUFFIXES):
                images += 1
                size += item["Size"]
    return images, size, files


def present_parts(s3, output: str) -> list[str]:
    """Which of a run's parts (features/, errors/, pca/, pca_model/, metrics.json) are under the output prefix."""
    bucket, prefix = split_s3_uri(output.rstrip("/") + "/")
    found = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        found.update(item["Prefix"][len(prefix) :].rstrip("/") for item in page.get("CommonPrefixes", []))
        found.update(item["Key"][len(prefix) :] for item in page.get("Contents", []))
    return [name for name in rules.OUTPUT_PARTS if name in found]


def _check_iam(iam, config: EmrClusterConfig) -> list[str]:
    problems = []
    fix = "create the defaults with `aws emr create-default-roles` or set the name in the EmrClusterConfig block"
    try:
        iam.get_role(RoleName=config.service_role)
    except ClientError as exc:
        if _error_code(exc) != "NoSuchEntity":
            raise
        problems.append(f"IAM service role {config.service_role} does not exist: {fix}")
    try:
        iam.get_instance_profile(InstanceProfileName=config.instance_profile)
    except ClientError as exc:
        if _error_code(exc) != "NoSuchEntity":
            raise
        problems.append(f"EC2 instance profile {config.instance_profile} does not exist: {fix}")
    return problems


def _check_network(ec2, config: EmrClusterConfig, region: str) -> list[str]:
    problems = []
    if config.key_pair_name:
        try:
            ec2.describe_key_pairs(KeyNames=[config.key_pair_name])
        except ClientError as exc:
            if _error_code(exc) != "InvalidKeyPair.NotFound":
                raise
            problems.append(
                f"key pair {config.key_pair_name} does not exist in {region}: create it with "
                f"`aws ec2 create-key-pair --key-name {config.key_pair_name} --region {region}` "
                "or clear key_pair_name in the EmrClusterConfig block"
            )
    if config.subnet_id:
        try:
            ec2.describe_subnets(SubnetIds=[config.subnet_id])
        except ClientError as exc:
            if not _error_code(exc).startswith("InvalidSubnet"):
                raise
            problems.append(f"subnet {config.subnet_id} does not exist in {region}: fix subnet_id in the block")
    return problems


def _check_cluster(emr, cluster_id: str) -> list[str]:
    try:
        state = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"]
    except ClientError as exc:
        return [f"cluster {cluster_id} cannot be described ({_error_code(exc)}): check --cluster-id and the region"]
    if state not in REUSABLE_STATES:
        return [f"cluster {cluster_id} is {state}: steps can only run on {', '.join(REUSABLE_STATES)} clusters"]
    return []


@task(name="preflight", cache_policy=NO_CACHE)
def preflight(
    spec: JobSpec,
    credentials: AwsCredentials,
    bucket: str,
    config: EmrClusterConfig,
    cluster_id: str | None = None,
) -> dict:
    """Check everything the run needs before anything is created; raise :class:`PreflightError` listing each gap.

    Args:
        spec: the run.
        credentials: the AwsCredentials block every client comes from.
        bucket: the staging bucket (from the S3Bucket block) for the job files and logs.
        config: the cluster block; roles, key pair and subnet are checked only when a cluster is to be created.
        cluster_id: an existing cluster to reuse, checked to be alive instead.

    Returns:
        account, region, image count and bytes under the input prefix.
    """
    logger = get_run_logger()
    check_uris(spec)
    region = region_of(credentials)
    try:
        identity = client(credentials, "sts").get_caller_identity()
    except (ClientError, BotoCoreError) as exc:
        raise PreflightError(
            f"the AWS credentials do not work ({type(exc).__name__}): fix the AwsCredentials block "
            "(or re-create it with `python -m blocks.create_blocks`)"
        ) from None
    logger.info("AWS account %s, region %s", identity["Account"], region)

    s3 = client(credentials, "s3")
    buckets = dict.fromkeys([bucket, split_s3_uri(spec.images)[0], split_s3_uri(spec.output)[0]])
    problems = [p for name in buckets if (p := _check_bucket(s3, name, region))]
    if problems:
        raise PreflightError("preflight failed, nothing was created:\n- " + "\n- ".join(problems))

    images, size, files = count_images(s3, spec.images)
    logger.info("input %s: %d images (%.1f MB), %d files in all", spec.images, images, size / 1e6, files)
    if images == 0:
        problems.append(
            f"no images (.jpg, .jpeg, .png) under {spec.images} ({files} files): upload them with "
            f"`aws s3 sync <local folder> {spec.images.rstrip('/')}/` or fix --images"
        )
    refusal = rules.output_refusal(spec.output, present_parts(s3, spec.output), spec.overwrite, spec.incremental)
    if refusal:
        problems.append(refusal)
    if cluster_id:
        problems += _check_cluster(client(credentials, "emr"), cluster_id)
    else:
        problems += _check_iam(client(credentials, "iam"), config)
        problems += _check_network(client(credentials, "ec2"), config, region)
    if problems:
        raise PreflightError("preflight failed, nothing was created:\n- " + "\n- ".join(problems))
    return {"account": identity["Account"], "region": region, "images": images, "bytes": size, "files": files}
