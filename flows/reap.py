"""``reap-clusters``: terminate EMR clusters fruitflow created whose flow died without cleaning up; delete its EMR
Serverless applications and cancel its job runs likewise (found by the same tags).

Run on a schedule (deployment ``reap-clusters/reap-every-30-min`` in prefect.yaml; ``reap-clusters/scheduled``, its
former name, is the same deployment without a schedule), or by hand::

    python -m flows.reap --max-age-hours 6 --dry-run

On a server without the AwsCredentials block, a scheduled run pauses its own schedule and says once why (resume it
after ``python -m blocks.create_blocks``), instead of an idle run in the Runs list every 30 minutes.
"""

from __future__ import annotations

import sys

from prefect import flow, get_run_logger

from flows.command_line import parser_for
from tasks.aws.clients import AwsClients
from tasks.emr.cluster import terminate_cluster
from tasks.emr.reaper import StaleCluster, find_stale_clusters
from tasks.emr_serverless.reaper import StaleServerless, find_stale_serverless, reap_serverless
from tasks.errors import CREATE_BLOCKS, MissingBlock
from tasks.own_schedule import pause_own_schedule

REAPER_DEPLOYMENT = "reap-clusters/reap-every-30-min"  # prefect.yaml (formerly reap-clusters/scheduled)


@flow(name="reap-clusters")
def reap_clusters(
    aws_credentials_block: str = "fruitflow",
    max_age_hours: float = 6.0,
    dry_run: bool = False,
    poll_seconds: float = 30,
) -> list[StaleCluster | StaleServerless]:
    """Terminate clusters tagged ``fruitflow:created-by`` that are too old or whose flow run is no longer running;
    delete such EMR Serverless applications, and cancel such job runs on applications fruitflow did not create.

    Args:
        aws_credentials_block: AwsCredentials block to reach EMR with.
        max_age_hours: Clusters (applications, job runs) older than this are ended whatever their run's state; their
            own limit (tag ``fruitflow:max-age-hours``: start-up + the run's timeout + teardown) is never undercut.
        dry_run: Only list what would be ended.
        poll_seconds: Delay between checks while waiting for a cluster to terminate (an application to stop).

    Example:
        >>> reap_clusters(max_age_hours=6, dry_run=True)  # doctest: +SKIP
    """
    logger = get_run_logger()
    try:
        aws = AwsClients.from_block(aws_credentials_block)
    except MissingBlock:
        # A local-only setup has no AWS blocks, hence no clusters of ours: nothing to do, and not a failure. A run
        # the schedule started pauses that schedule, so the Runs list does not fill with idle runs every 30 minutes.
        logger.info("no AwsCredentials block %r on this server: no EMR clusters to reap", aws_credentials_block)
        if not dry_run and (paused := pause_own_schedule()):
            logger.warning(
                "paused this deployment's schedule (%s): without AWS blocks there is never anything to reap. After "
                "`%s`, resume it: prefect deployment schedule ls / resume '%s'",
                ", ".join(paused),
                CREATE_BLOCKS,
                REAPER_DEPLOYMENT,
            )
        return []
    stale = find_stale_clusters(aws, max_age_hours)
    for cluster in stale:
        doing = "would terminate" if dry_run else "terminating"
        logger.warning("%s cluster %s: %s", doing, cluster.cluster_id, cluster.reason)
        if not dry_run:
            terminate_cluster(aws, cluster.cluster_id, poll_seconds)
    logger.info("%d stale cluster(s)%s", len(stale), " (dry run: none terminated)" if dry_run else " terminated")
    serverless = find_stale_serverless(aws, max_age_hours)
    for entry in serverless:
        doing = "would end" if dry_run else "ending"
        logger.warning("%s EMR Serverless %s %s: %s", doing, entry.kind, entry.resource_id, entry.reason)
        if not dry_run:
            reap_serverless(aws, entry, poll_seconds)
    return [*stale, *serverless]


def main(argv: list[str] | None = None) -> int:
    parser = parser_for(reap_clusters, prog="python -m flows.reap")
    for entry in reap_clusters(**vars(parser.parse_args(argv))):
        name = entry.cluster_id if isinstance(entry, StaleCluster) else f"{entry.kind} {entry.resource_id}"
        print(f"{name}: {entry.reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
