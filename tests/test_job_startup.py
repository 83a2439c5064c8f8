"""The job's start-up work that only pays if Spark runs it in the right order (local Spark, the session fixture)."""

from __future__ import annotations

import time

from fruitjob.featurizer import WARM_UP_GROUP, warm_up_workers
from fruitjob.listing import ImageFile
from fruitjob.reading import listing_frame


def _job_ids(tracker, group: str, deadline: float) -> set:
    # Spark's status store learns of a job from its listener bus, a little after the job was submitted
    while not (ids := set(tracker.getJobIdsForGroup(group))) and time.monotonic() < deadline:
        time.sleep(0.05)
    return ids


def test_the_warm_up_job_is_submitted_before_the_driver_goes_on(spark):
    # The featurize job comes next: Spark's FIFO scheduler runs the warm-up first only if it has it first. (Planned
    # and submitted from its thread, it used to reach Spark after the featurize job and then only delayed it.)
    sc = spark.sparkContext
    earlier = set(sc.statusTracker().getJobIdsForGroup(WARM_UP_GROUP))  # the session's other runs warmed up too
    thread = warm_up_workers(spark, "tflite")
    sc.setJobGroup("fruitflow-test-next-job", "the job the driver submits next")
    try:
        spark.range(3).count()
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
    thread.join()
    deadline = time.monotonic() + 60
    while not (warm_up := set(sc.statusTracker().getJobIdsForGroup(WARM_UP_GROUP)) - earlier) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)  # the listener bus records the job a moment after it is submitted
    next_job = _job_ids(sc.statusTracker(), "fruitflow-test-next-job", deadline)
    assert warm_up and next_job
    assert max(warm_up) < min(next_job), "Spark got the warm-up job after the driver's next one"  # ids go up in order


def test_the_listing_is_spread_over_the_partitions_without_a_python_worker(spark):
    images = [ImageFile("file:/in/f %d/%d.jpg" % (i % 3, i), "f %d" % (i % 3), 10 + i, i) for i in range(8)]
    images.append(ImageFile("file:/in/f 0/dangling.jpg", "f 0", None))  # no size, no mtime: nulls survive
    spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")  # as fruitjob.tuning.configure sets it
    frame = listing_frame(spark, images, 4)
    assert frame.rdd.getNumPartitions() == 4
    assert sorted(tuple(row) for row in frame.collect()) == sorted(
        (i.path, i.label, i.size, i.modified, i.etag) for i in images
    )
    # no Python worker turns them into Spark rows: it would be one of a second daemon, in every task reading them
    lineage = frame._jdf.queryExecution().toRdd().toDebugString()
    assert "PythonRDD" not in lineage, lineage
