"""Progress: the job's status-tracker lines and how the flow reads them."""

from __future__ import annotations

import logging

from fruitjob.progress import ProgressReporter
from tasks.progress import parse_progress


def test_reporter_logs_task_progress_only_when_it_moves(spark, caplog):
    reporter = ProgressReporter(spark.sparkContext, interval=0.05, stages=[("featurize", 90.0), ("pca", 99.0)])
    with caplog.at_level(logging.INFO, logger="fruitflow.job.progress"):
        reporter.start()
        try:
            spark.sparkContext.parallelize(range(8), 8).map(lambda x: __import__("time").sleep(0.3) or x).collect()
            reporter.poll()
            reporter.poll()  # nothing moved: no second line
        finally:
            reporter.stop()
        reporter.stage_done("featurize")
        reporter.finish()
    lines = [record.getMessage() for record in caplog.records]
    assert lines == sorted(set(lines), key=lines.index), "a line repeated"
    percents = [parse_progress(line)[0] for line in lines]
    assert percents == sorted(percents) and percents[-1] == 100.0
    assert any("featurize, " in line and "/8 tasks" in line for line in lines)
    assert "progress: 90% featurize done" in lines


def test_parse_progress_reads_job_lines_and_ignores_others():
    assert parse_progress("progress: 42% featurize, 3/8 tasks") == (42.0, "featurize, 3/8 tasks")
    assert parse_progress("progress: 100% done") == (100.0, "done")
    assert parse_progress("listed 36 images and 0 other files") is None
