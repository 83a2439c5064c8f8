"""Preflight for the EMR engine: the shared AWS checks, then the cluster's own: IAM roles, key pair, subnet, a reused
cluster's state. Every failure says what is missing and how to fix it; nothing is created here.
"""

from __future__ import annotations

from botocore.exceptions import ClientError
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from blocks.emr_cluster_config import BROAD_INSTANCE_PROFILE, DEDICATED_INSTANCE_PROFILE, EmrClusterConfig
from fruitjob.options import JobOptions
from tasks.aws.clients import AwsClients
from tasks.aws.model_preflight import check_reads
from tasks.aws.output_lease import held_by_another_run
from tasks.aws.preflight import check_account_and_data, error_code, permission_problem, refuse

REUSABLE_STATES = ("STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING")


def _check_iam(iam, config: EmrClusterConfig) -> list[str]:
    problems = []
    fix = "create the defaults with `aws emr create-default-roles` or set the name in the EmrClusterConfig block"
    for what, name, look_up in (
        ("IAM service role", config.service_role, lambda: iam.get_role(RoleName=config.service_role)),
        (
            "EC2 instance profile",
            config.instance_profile,
            lambda: iam.get_instance_profile(InstanceProfileName=config.instance_profile),
        ),
    ):
        try:
            look_up()
        except ClientError as exc:
            denied = permission_problem(exc, "iam", f"{what} {name}")
            if error_code(exc) != "NoSuchEntity" and denied is None:
                raise
            if denied:
                problems.append(denied)
            elif name == DEDICATED_INSTANCE_PROFILE:
                how = "create it as docs/emr.md says (Once per account), or set another in the EmrClusterConfig block"
                problems.append(f"{what} {name} does not exist: {how}")
            else:
                problems.append(f"{what} {name} does not exist: {fix}")
    return problems


def broad_instance_profile_warning(config: EmrClusterConfig) -> str | None:
    """A warning when the nodes would run with AWS's broad default profile (any step on them reaches every bucket).

    Example:
        >>> broad_instance_profile_warning(EmrClusterConfig()) is None
        True
    """
    if config.instance_profile != BROAD_INSTANCE_PROFILE:
        return None
    return (
        f"the cluster's instance profile is {BROAD_INSTANCE_PROFILE}, whose managed policy reaches every bucket "
        f"(and DynamoDB, SQS, ...) of the account: create the dedicated {DEDICATED_INSTANCE_PROFILE} "
        "(docs/emr.md, Once per account) and set it in the EmrClusterConfig block"
    )


def _check_network(ec2, config: EmrClusterConfig, region: str) -> list[str]:
    problems = []
    if config.key_pair_name:
        try:
            ec2.describe_key_pairs(KeyNames=[config.key_pair_name])
        except ClientError as exc:
            if error_code(exc) != "InvalidKeyPair.NotFound":
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
            if not error_code(exc).startswith("InvalidSubnet"):
                raise
            problems.append(f"subnet {config.subnet_id} does not exist in {region}: fix subnet_id in the block")
    return problems


def _check_cluster(emr, cluster_id: str) -> list[str]:
    try:
        state = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"]
    except ClientError as exc:
        return [f"cluster {cluster_id} cannot be described ({error_code(exc)}): check --cluster-id and the region"]
    if state not in REUSABLE_STATES:
        return [f"cluster {cluster_id} is {state}: steps can only run on {', '.join(REUSABLE_STATES)} clusters"]
    return []


@task(name="preflight", cache_policy=NO_CACHE)
def preflight(
    job: JobOptions, aws: AwsClients, bucket: str, config: EmrClusterConfig, cluster_id: str | None = None
) -> dict:
    """Check everything the run needs before anything is created; raise ``PreflightError`` listing each gap.

    Args:
        job: the run.
        aws: the clients, from the AwsCredentials block.
        bucket: the staging bucket (from the S3Bucket block) for the job files and logs.
        config: the cluster block; roles, key pair and subnet are checked only when a cluster is to be created.
        cluster_id: an existing cluster to reuse, checked to be alive instead.

    Returns:
        account, region, image count and bytes under the input prefix.
    """
    checked, problems = check_account_and_data(job, aws, bucket, get_run_logger())
    problems += check_reads(job, aws("s3"), get_run_logger()) + held_by_another_run(aws, job.output)
    if cluster_id:
        problems += _check_cluster(aws("emr"), cluster_id)
    else:
        problems += _check_iam(aws("iam"), config)
        if warning := broad_instance_profile_warning(config):
            get_run_logger().warning("%s", warning)
        problems += _check_network(aws("ec2"), config, aws.region)
    refuse(problems)
    return checked
