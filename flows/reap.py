"""``reap-clusters``: terminate EMR clusters fruitflow created whose flow died without cleaning up.

Run on a schedule (deployment ``reap-clusters/scheduled`` in prefect.yaml), or by hand::

    python -m flows.reap --max-age-hours 6 --dry-run
"""

from __future__ import annotations

import sys

from prefect import flow, get_run_logger

from flows.command_line import parser_for
from tasks.aws.clients import AwsClients
from tasks.emr.cluster import terminate_cluster
from tasks.emr.reaper import StaleCluster, find_stale_clusters


@flow(name="reap-clusters")
def reap_clusters(
    aws_credentials_block: str = "fruitflow", max_age_hours: float = 6.0, dry_run: bool = False, poll_seconds: int = 30
) -> list[StaleCluster]:
    """Terminate clusters tagged ``fruitflow:created-by`` that are too old or whose flow run is no longer running.

    Args:
        aws_credentials_block: AwsCredentials block to reach EMR with.
        max_age_hours: Clusters older than this are terminated whatever their run's state; a cluster's own limit
            (tag ``fruitflow:max-age-hours``: provisioning + its run's step timeout + teardown) is never undercut.
        dry_run: Only list what would be terminated.
        poll_seconds: Delay between checks while waiting for a cluster to terminate.

    Example:
        >>> reap_clusters(max_age_hours=6, dry_run=True)  # doctest: +SKIP
    """
    logger = get_run_logger()
    try:
        aws = AwsClients.from_block(aws_credentials_block)
    except ValueError as exc:
        if "Unable to find block document" not in str(exc):
            raise
        # A local-only setup has no AWS blocks, hence no clusters of ours: nothing to do, and not a failure.
        logger.info("no AwsCredentials block %r on this server: no EMR clusters to reap", aws_credentials_block)
        return []
    stale = find_stale_clusters(aws, max_age_hours)
    for cluster in stale:
        doing = "would terminate" if dry_run else "terminating"
        logger.warning("%s cluster %s: %s", doing, cluster.cluster_id, cluster.reason)
        if not dry_run:
            terminate_cluster(aws, cluster.cluster_id, poll_seconds)
    logger.info("%d stale cluster(s)%s", len(stale), " (dry run: none terminated)" if dry_run else " terminated")
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = parser_for(reap_clusters, prog="python -m flows.reap")
    for cluster in reap_clusters(**vars(parser.parse_args(argv))):
        print(f"{cluster.cluster_id}: {cluster.reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
