"""The EMR cluster: build the request from the block, provision (idempotently), find ours, terminate and wait."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from botocore.exceptions import ClientError, WaiterError
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from blocks.emr_cluster_config import EmrClusterConfig
from tasks.aws.clients import AwsClients
from tasks.aws.preflight import error_code
from tasks.aws.tags import ACCESS_DENIED, TAG_KEEP, TAG_MAX_AGE, is_ours, named_as_ours, our_name, run_tags
from tasks.aws.waiting import state_waiter, wait
from tasks.errors import FruitflowError

# terminate() waits this long for TERMINATED; the instances bill until EMR has ended them.
TERMINATE_WAIT_MINUTES = 30
TERMINATED_STATES = ("TERMINATING", "TERMINATED", "TERMINATED_WITH_ERRORS")
# EMRFS (s3:// from the job) writes every object with SSE-S3, whatever the bucket's default encryption.
EMRFS_ENCRYPTION = {"Classification": "emrfs-site", "Properties": {"fs.s3.enableServerSideEncryption": "true"}}
ACTIVE_STATES = ["STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING"]


class ClusterError(FruitflowError, RuntimeError):
    """The cluster did not become ready, or did not terminate; the message carries EMR's reason."""


def cluster_state(response: dict) -> str:
    """The state a DescribeCluster response shows, for the wait's log lines."""
    return response["Cluster"]["Status"]["State"]


def cluster_request(
    config: EmrClusterConfig,
    *,
    name: str,
    log_uri: str,
    flow_run_id: str,
    keep: bool = False,
    max_age_hours: float | None = None,
) -> dict:
    """The ``run_job_flow`` arguments for the block's shape, with our tags and the idle auto-termination policy.

    ``max_age_hours`` (see :func:`tasks.aws.remote.run_max_age_hours`) is tagged so that the reaper leaves the cluster
    alone that long.

    No security group and no SSH rule is ever part of it: EMR's managed groups (and block public access) apply. No
    bootstrap action either: the job's packages travel with the step (``tasks/aws/environment.py``), so nodes reach
    nothing but S3 and a subnet without internet access (an S3 gateway endpoint, no NAT) runs the job.
    """

    def group(role: str, kind: str, count: int) -> dict:
        return {
            "Name": role.lower(),
            "InstanceRole": role,
            "Market": config.market,
            "InstanceType": kind,
            "InstanceCount": count,
        }

    instances: dict = {
        "InstanceGroups": [
            group("MASTER", config.master_instance_type, config.master_instance_count),
            group("CORE", config.core_instance_type, config.core_instance_count),
        ],
        # Steps are added after the cluster is up; the idle policy below ends it if nobody terminates it.
        "KeepJobFlowAliveWhenNoSteps": True,
        "TerminationProtected": False,
    }
    if config.key_pair_name:
        instances["Ec2KeyName"] = config.key_pair_name
    if config.subnet_id:
        instances["Ec2SubnetId"] = config.subnet_id
    tags = run_tags(flow_run_id, config.tags)
    if keep:
        tags[TAG_KEEP] = "true"
    if max_age_hours is not None:
        tags[TAG_MAX_AGE] = f"{max_age_hours:g}"
    configurations = []
    if config.spark_configuration:
        configurations.append({"Classification": "spark-defaults", "Properties": dict(config.spark_configuration)})
    configurations.append(EMRFS_ENCRYPTION)
    return {
        "Name": our_name(name),
        "ReleaseLabel": config.release_label,
        "LogUri": log_uri,
        "Applications": [{"Name": "Spark"}],
        "Instances": instances,
        "Configurations": configurations,
        "ServiceRole": config.service_role,
        "JobFlowRole": config.instance_profile,
        "VisibleToAllUsers": True,
        "AutoTerminationPolicy": {"IdleTimeout": config.idle_timeout_minutes * 60},
        "Tags": [{"Key": key, "Value": value} for key, value in tags.items()],
    }


def our_clusters(emr, states: list[str] | None = None) -> Iterator[tuple[dict, dict[str, str]]]:
    """(cluster, its tags) for every cluster fruitflow created, in ``states`` (default: active).

    ListClusters gives names, not tags: only a cluster named as ours is described (once, here: the run's teardown and
    the reaper both list), so another team's cluster and its configurations are never read. The policy allows
    DescribeCluster only on clusters with our tag: a refused describe (a look-alike name) means "not ours".
    """
    for page in emr.get_paginator("list_clusters").paginate(ClusterStates=states or ACTIVE_STATES):
        for summary in page["Clusters"]:
            if not named_as_ours(summary.get("Name")):
                continue
            try:
                cluster = emr.describe_cluster(ClusterId=summary["Id"])["Cluster"]
            except ClientError as exc:
                if error_code(exc) not in ACCESS_DENIED:
                    raise
                continue
            tags = {tag["Key"]: tag["Value"] for tag in cluster.get("Tags", [])}
            if is_ours(tags):
                yield cluster, tags


def find_run_clusters(emr, flow_run_id: str, states: list[str] | None = None) -> list[str]:
    """Ids of clusters fruitflow created for this flow run (by tag), in ``states`` (default: active)."""
    return [cluster["Id"] for cluster, tags in our_clusters(emr, states) if is_ours(tags, flow_run_id)]


def _state_reason(emr, cluster_id: str) -> str:
    status = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]
    reason = status.get("StateChangeReason", {})
    return f"{status['State']}: {reason.get('Code', '')} {reason.get('Message') or ''}".strip()


def not_ready(emr, cluster_id: str) -> ClusterError:
    """Why the cluster is not ready; one still starting or bootstrapping is terminated first (never left running)."""
    cluster = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
    status = cluster["Status"]
    reason = status.get("StateChangeReason", {})
    what = f"{status['State']}: {reason.get('Code', '')} {reason.get('Message') or ''}".replace("  ", " ").strip()
    if status["State"] not in TERMINATED_STATES:
        emr.terminate_job_flows(JobFlowIds=[cluster_id])
        what += "; terminated it"
    logs = f"{cluster['LogUri'].rstrip('/')}/{cluster_id}/node/" if cluster.get("LogUri") else "the cluster's logs"
    return ClusterError(f"cluster {cluster_id} did not become ready: {what}; the nodes' logs are under {logs}")


def terminate(
    aws: AwsClients, cluster_id: str, poll_seconds: float = 30, timeout_minutes: int = TERMINATE_WAIT_MINUTES
) -> None:
    """Terminate a cluster and wait until EMR says TERMINATED or TERMINATED_WITH_ERRORS (plain function: hooks call
    it outside tasks)."""
    emr = aws("emr")
    emr.terminate_job_flows(JobFlowIds=[cluster_id])
    try:
        wait(
            # boto3's cluster_terminated waiter fails on TERMINATED_WITH_ERRORS; for a teardown that is terminated too.
            state_waiter(emr, "ClusterTerminated", "DescribeCluster", "Cluster.Status.State", TERMINATED_STATES[1:]),
            what=f"cluster {cluster_id} terminated",
            state=cluster_state,
            delay=poll_seconds,
            timeout_minutes=timeout_minutes,
            ClusterId=cluster_id,
        )
    except WaiterError as exc:
        raise ClusterError(f"cluster {cluster_id} did not terminate: {_state_reason(emr, cluster_id)}") from exc


@task(name="terminate-cluster", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10)
def terminate_cluster(aws: AwsClients, cluster_id: str, poll_seconds: float = 30) -> str:
    """Terminate a cluster and wait until it is TERMINATED (the reaper's task); safe to retry."""
    logger = get_run_logger()
    logger.info("terminating cluster %s", cluster_id)
    terminate(aws, cluster_id, poll_seconds)
    logger.info("cluster %s is terminated", cluster_id)
    return cluster_id


def cluster_hours(aws: AwsClients, cluster_id: str) -> float:
    """Hours from the cluster's creation to its end (or now, while it still runs)."""
    timeline = aws("emr").describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["Timeline"]
    start = timeline.get("CreationDateTime")
    if start is None:
        return 0.0
    end = timeline.get("EndDateTime") or datetime.now(UTC)
    return max((end - start).total_seconds(), 0.0) / 3600
