"""The arithmetic of the paired bench (bench/paired_stats.py): busy cores from /proc/stat, paired ratios, targets."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parent.parent / "bench" / "paired_stats.py"
_SPEC = importlib.util.spec_from_file_location("paired_stats", _PATH)
paired_stats = importlib.util.module_from_spec(_SPEC)
sys.modules.setdefault("paired_stats", paired_stats)  # its dataclass looks its module up there
_SPEC.loader.exec_module(paired_stats)

# user nice system idle iowait irq softirq steal guest guest_nice
STAT_BEFORE = "cpu  100 0 50 800 10 0 5 0 0 0\ncpu0 50 0 25 400 5 0 2 0 0 0\nintr 1 2 3\n"
STAT_AFTER = "cpu  190 0 60 805 10 0 10 5 0 0\ncpu0 95 0 30 402 5 0 5 3 0 0\nintr 1 2 3\n"


def test_busy_cores_count_user_system_and_interrupts_not_idle_iowait_or_steal():
    before, after = paired_stats.parse_proc_stat(STAT_BEFORE), paired_stats.parse_proc_stat(STAT_AFTER)
    assert before == (155, 965)
    # 105 busy jiffies (user, system, softirq) of 115 (5 idle, 5 steal): 2 cores x 105 / 115
    assert paired_stats.busy_cores(before, after, 2) == pytest.approx(2 * 105 / 115)
    assert paired_stats.busy_cores(before, before, 2) == 0.0


def test_the_share_of_samples_with_both_cores_busy():
    threshold = paired_stats.BUSY_FRACTION * 2
    assert paired_stats.share_at_least([2.0, 1.8, 1.79, 0.5], threshold) == 0.5
    assert paired_stats.share_at_least([], threshold) is None


def test_paired_ratios_and_their_median_skip_missing_figures():
    values = paired_stats.ratios([2.0, 3.0, None], [1.0, 0.0, 4.0])
    assert values == [2.0, None, None]
    assert paired_stats.median([1.0, None, 3.0, 2.0]) == 2.0
    assert paired_stats.median([None]) is None


def test_targets_say_met_or_not_met_on_the_right_side_of_the_bound():
    targets = {t.figure: t for t in paired_stats.TARGETS}
    assert targets["wall ours/daft"].verdict(1.3) == "met"
    assert targets["wall ours/daft"].verdict(1.84) == "not met"
    assert targets["featurize int8/float"].verdict(1.6) == "not met"
    assert targets["README demo s"].verdict(None) == "not measured"


def test_every_row_of_the_bench_is_named_in_the_report_and_the_jit_and_cds_rows_drop_only_their_option(monkeypatch):
    monkeypatch.syspath_prepend(str(_PATH.parent))
    import paired
    import paired_report

    assert set(paired.ROWS) == set(paired_report.RATIO_OF_ROW)
    options = "-XX:TieredStopAtLevel=1 -XX:SharedArchiveFile=/a.jsa"
    command = ["spark-submit", "--master", "local[2,2]", "--driver-java-options", options, "--conf", "a=b", "job.py"]
    no_c1 = paired.without_java_option(command, "-XX:TieredStopAtLevel")
    assert no_c1 == [*command[:4], "-XX:SharedArchiveFile=/a.jsa", *command[5:]]
    no_archive = paired.without_java_option(command, "-XX:SharedArchiveFile")
    assert no_archive == [*command[:4], "-XX:TieredStopAtLevel=1", *command[5:]]
    assert paired.without_java_option(no_c1, "-XX:SharedArchiveFile") == [*command[:3], *command[5:]]
