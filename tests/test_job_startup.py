"""The job's start-up work that only pays if Spark runs it in the right order (local Spark, the session fixture)."""

from __future__ import annotations

from fruitjob.featurizer import WARM_UP_GROUP, warm_up_workers
from fruitjob.listing import ImageFile
from fruitjob.reading import listing_frame


def test_the_warm_up_job_is_submitted_before_the_driver_goes_on(spark):
    # The featurize job comes next: Spark's FIFO scheduler runs the warm-up first only if it already has it. (Planned
    # and submitted from its thread, it used to reach Spark after the featurize job and then only delayed it.)
    tracker = spark.sparkContext.statusTracker()
    before = set(tracker.getJobIdsForGroup(WARM_UP_GROUP))
    thread = warm_up_workers(spark, "tflite")
    submitted = set(tracker.getJobIdsForGroup(WARM_UP_GROUP)) - before
    thread.join()
    assert submitted, "warm_up_workers returned before Spark had its job"
    assert all(tracker.getJobInfo(job).status == "SUCCEEDED" for job in submitted)


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
