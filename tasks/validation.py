"""Validate a run's output with pandas against independent facts: the same checks whatever engine wrote it.

What the job says (metrics.json) is checked against what it wrote (the rows, their run ids, their PCA model ids)
and against the input itself, listed again from the source (``tasks.input_listing``): every listed image is in
exactly one of ``features/`` and ``errors/``, under the label its path gives, and ``pca/`` holds exactly the
paths of ``features/``, all in the output's one PCA space (``tasks.output_checks``), and every record of that space
agrees with the others (``tasks.identity_checks``); ``health/`` names only images the outputs hold, and its counts
are the metrics' (``tasks.health_checks``). Pages are read with their checksums verified. Each check has a
test that corrupts an output.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pyarrow import fs as pafs

from fruitjob.metrics import RunMetrics
from fruitjob.rules import FEATURE_DIM
from tasks import output_checks as checks
from tasks.errors import FruitflowError
from tasks.health_checks import check_health
from tasks.identity_checks import check_identity
from tasks.input_drift import Drift
from tasks.uris import filesystem_path

ERROR_SAMPLES = 20  # shown in the summary
FAILED_IMAGES_LISTED = 200  # the failed-images table: the first ones by path (the total is said with them)


class OutputInvalid(FruitflowError, RuntimeError):
    """The output is incomplete or wrong; the message lists every problem found."""


@dataclass(frozen=True)
class ClassCounts:
    """Images of one label: featurized, and in errors/."""

    ok: int
    failed: int

    @property
    def total(self) -> int:
        return self.ok + self.failed


@dataclass(frozen=True)
class ErrorSample:
    """One row of errors/, for the summary and the failed-images table."""

    path: str
    error: str
    label: str = ""


@dataclass
class ValidationReport:
    """A valid output: its metrics, images per class, the first errors by path and how many there are."""

    output: str
    metrics: RunMetrics
    per_class: dict[str, ClassCounts] = field(default_factory=dict)
    error_samples: list[ErrorSample] = field(default_factory=list)  # sorted by path, FAILED_IMAGES_LISTED at most
    # files that came after the job's listing (the next --incremental run takes them) or went during the run
    drift: Drift = field(default_factory=Drift)
    errors_total: int = 0  # rows of errors/


def read_metrics(filesystem: pafs.FileSystem, output: str) -> RunMetrics:
    """The output's metrics.json; :class:`OutputInvalid` when it is missing or lacks what a finished run writes."""
    try:
        with filesystem.open_input_stream(f"{filesystem_path(output)}/metrics.json") as stream:
            return RunMetrics.from_dict(json.loads(stream.read()))
    except (FileNotFoundError, OSError) as exc:
        raise OutputInvalid(
            f"{output} holds no finished run: metrics.json is missing ({exc}); the job did not complete"
        ) from None
    except (ValueError, TypeError) as exc:
        raise OutputInvalid(f"{output}: metrics.json is not what the job writes ({exc})") from None


def verify_output(output: str, filesystem: pafs.FileSystem, images: str | None = None) -> ValidationReport:
    """Read everything the run wrote and check it against the input; raise :class:`OutputInvalid` if anything is off.

    ``images`` is the input the run was asked to read (default: the one its metrics name).
    """
    root = filesystem_path(output)
    metrics = read_metrics(filesystem, output)
    problems: list[str] = []
    try:
        features_table = checks.read_table(filesystem, f"{root}/features")
        errors = checks.read_table(filesystem, f"{root}/errors", ["path", "label", "error", "run_id"]).to_pandas()
        pca_table = checks.read_table(filesystem, f"{root}/pca")
    except checks.CorruptParquet as exc:  # nothing else can be trusted: the rows themselves are not what was written
        raise OutputInvalid(f"output {output} is invalid:\n- {exc}") from None
    features = features_table.select([c for c in ("path", "label", "run_id") if c in features_table.schema.names])
    features = features.to_pandas()
    pca = pca_table.select([c for c in ("path", "pca_model_id") if c in pca_table.schema.names]).to_pandas()

    checks.check_counts(metrics, features, errors, problems)
    checks.check_rows(features, errors, pca, problems)
    found, drift = checks.check_against_input(images or metrics.images, filesystem, metrics, features, errors)
    problems += found
    checks.check_space(filesystem, root, metrics, pca, problems)
    check_identity(filesystem, root, metrics, problems)
    if metrics.feature_dim != FEATURE_DIM:
        problems.append(f"feature_dim is {metrics.feature_dim}, expected {FEATURE_DIM}")
    checks.check_vectors("features/", features_table, "features", FEATURE_DIM, problems)
    checks.check_vectors("pca/", pca_table, "pca", metrics.pca_components, problems)
    checks.check_variance(metrics, problems)
    check_health(filesystem, output, metrics, features, problems)
    if problems:
        raise OutputInvalid(f"output {output} is invalid:\n- " + "\n- ".join(problems))
    first = errors.sort_values(["path", "label"]).head(FAILED_IMAGES_LISTED)
    samples = [ErrorSample(row.path, row.error, row.label) for row in first.itertuples()]
    return ValidationReport(output, metrics, _per_class(features, errors), samples, drift, errors_total=len(errors))


def record_arrivals(output: str, filesystem: pafs.FileSystem, report: ValidationReport) -> ValidationReport:
    """Write ``files_arrived_during_run`` into the output's metrics.json: only validation, which lists the input
    after the job, can count them. Everything else in metrics.json stays as the job wrote it."""
    metrics = report.metrics.replace(files_arrived_during_run=len(report.drift.arrived))
    if not report.drift.arrived or metrics.files_arrived_during_run == report.metrics.files_arrived_during_run:
        return report  # none arrived (the usual case): metrics.json stays exactly as the job wrote it
    root = filesystem_path(output)
    staged = f"{root}/metrics.json.next"
    with filesystem.open_output_stream(staged) as stream:
        stream.write(json.dumps(metrics.to_dict(), indent=2).encode())
    # Hadoop's local file system keeps a checksum beside the file and refuses a file that no longer matches it (the
    # next --incremental run would fail reading metrics.json): without one, it reads the file as it is.
    checksum = f"{root}/.metrics.json.crc"
    if filesystem.get_file_info(checksum).type != pafs.FileType.NotFound:
        filesystem.delete_file(checksum)
    filesystem.move(staged, f"{root}/metrics.json")  # a reader sees the old file or the new one, never half
    return dataclasses.replace(report, metrics=metrics)


@task(name="validate-output", cache_policy=NO_CACHE)
def validate_output(
    output: str, filesystem: pafs.FileSystem | None = None, images: str | None = None
) -> ValidationReport:
    """Check the output with pandas against the input listed again (every image accounted for, labels, counts,
    one PCA space, dimensions, finite values, variance); record in metrics.json how many files arrived after the
    job's listing."""
    filesystem = filesystem or pafs.LocalFileSystem()
    report = verify_output(output, filesystem, images)
    if report.drift.arrived:
        get_run_logger().info(
            "%d files arrived after the job listed the input: the next --incremental run takes them",
            len(report.drift.arrived),
        )
    return record_arrivals(output, filesystem, report)


def _per_class(features: pd.DataFrame, errors: pd.DataFrame) -> dict[str, ClassCounts]:
    rows = pd.concat(
        [features.assign(status="ok")[["label", "status"]], errors.assign(status="failed")[["label", "status"]]]
    )
    if rows.empty:
        return {}
    table = rows.value_counts().unstack(fill_value=0)
    return {
        label: ClassCounts(ok=int(row.get("ok", 0)), failed=int(row.get("failed", 0)))
        for label, row in table.sort_index().iterrows()
    }
