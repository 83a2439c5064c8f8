"""``reap-clusters``: terminate EMR clusters fruitflow created whose flow died without cleaning up.

Run on a schedule (deployment ``reap-clusters/scheduled`` in prefect.yaml), or by hand::

    python -m flows.reap --max-age-hours 6 --dry-run
"""

from __future__ import annotations

import argparse
import sys

from prefect import flow, get_run_logger
from prefect_aws import AwsCredentials

from tasks.emr_cluster import terminate_cluster
from tasks.stale_clusters import find_stale_clusters


@flow(name="reap-clusters")
def reap_clusters(
    aws_credentials_block: str = "fruitflow", max_age_hours: float = 6.0, dry_run: bool = False, poll_seconds: int = 30
) -> list[dict]:
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
        credentials = AwsCredentials.load(aws_credentials_block)
    except ValueError as exc:
        if "Unable to find block document" not in str(exc):
            raise
        # A local-only setup has no AWS blocks, hence no clusters of ours: nothing to do, and not a failure.
        logger.info("no AwsCredentials block %r on this server: no EMR clusters to reap", aws_credentials_block)
        return []
    stale = find_stale_clusters(credentials, max_age_hours)
    for cluster in stale:
        logger.warning("%s cluster %s: %s", "would terminate" if dry_run else "terminating", cluster["cluster_id"],
                       cluster["reason"])  # fmt: skip
        if not dry_run:
            terminate_cluster(credentials, cluster["cluster_id"], poll_seconds)
    logger.info("%d stale cluster(s)%s", len(stale), " (dry run: none terminated)" if dry_run else " terminated")
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.reap", description=reap_clusters.description)
    parser.add_argument("--aws-credentials-block", default="fruitflow")
    parser.add_argument("--max-age-hours", type=float, default=6.0)
    parser.add_argument("--dry-run", action="store_true")
    for cluster in reap_clusters(**vars(parser.parse_args(argv))):
        print(f"{cluster['cluster_id']}: {cluster['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
