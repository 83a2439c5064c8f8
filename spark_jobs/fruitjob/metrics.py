"""metrics.json, defined once: what the job writes (:class:`RunMetrics`), read back the same way by the flow.

The job builds a :class:`RunMetrics` and writes ``to_dict()``; validation and reporting read ``RunMetrics.from_dict``
and use attributes, never string keys. The keys are the public interface (../shared/INTERFACE.md): a field's name
is its key. Keys this version does not know (a newer job's) are kept in ``extra`` and written back unchanged.
Pure Python 3.9: it runs on the cluster.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import platform
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional


@dataclass(frozen=True)
class FolderSkipped:
    """A folder under the input that was not listed (a link loop, no permission), and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class ClassQuality:
    """How well one class is told apart: its accuracy in both spaces, and the class it is most often taken for."""

    label: str
    accuracy_features: Optional[float]
    accuracy_pca: Optional[float]
    most_confused_with: Optional[str]
    images: int = 0


@dataclass(frozen=True)
class FeatureQuality:
    """Do the features separate the classes? Leave-one-out nearest-class-centroid accuracy (fruitjob.quality)."""

    method: str
    sample_size: int
    accuracy_features: float
    accuracy_pca: float
    per_class: List[ClassQuality] = field(default_factory=list)
    images_total: Optional[int] = None


@dataclass(frozen=True)
class PreviousRun:
    """The run this output held before this one (from the output's own metrics.json): the run an --incremental run
    added to, or the one --overwrite replaced."""

    started_at: Optional[str] = None
    finished_at: Optional[str] = None
    images: Optional[str] = None
    run_id: Optional[str] = None
    flow_run_id: Optional[str] = None
    features_total: Optional[int] = None
    replaced: bool = False  # --overwrite: its rows are gone


@dataclass(frozen=True)
class ClassHealth:
    """One class's share of the health findings: pairs touching the class, its flagged images."""

    label: str
    duplicates: int = 0
    conflicts: int = 0
    leaks: int = 0
    outliers: int = 0
    suspected_mislabels: int = 0


@dataclass(frozen=True)
class HealthCounts:
    """What the health stage found (fruitjob/health.py; the rows are under health/)."""

    enabled: bool
    method: str
    near_duplicate_threshold: float
    exact_duplicate_pairs: int = 0
    near_duplicate_pairs: int = 0
    label_conflicts: int = 0
    leaks: int = 0
    outliers: int = 0
    suspected_mislabels: int = 0
    compared_with: List[str] = field(default_factory=list)
    seconds: float = 0.0
    pairs_cut_off: int = 0  # pairs above the threshold left out by the cap of pairs per image (rules.py)
    images_with_near_pair: int = 0  # this output's images in some near-duplicate pair (not an exact one)
    per_class: List[ClassHealth] = field(default_factory=list)


@dataclass(frozen=True)
class RunMetrics:
    images: str
    output: str
    files_seen: int
    files_skipped: int
    images_total: int
    images_ok: int
    images_failed: int
    feature_dim: int
    pca_components: int
    explained_variance: List[float]
    explained_variance_total: float
    weights: str
    weights_sha256: str
    alpha: float
    featurizer: str
    durations_s: Dict[str, float]
    run_id: Optional[str] = None
    started_at: Optional[str] = None
    finished_at: Optional[str] = None
    engine: str = "local"
    cluster_id: Optional[str] = None
    step_id: Optional[str] = None
    folders_skipped: List[FolderSkipped] = field(default_factory=list)
    features_total: Optional[int] = None
    errors_total: Optional[int] = None
    images_already_done: int = 0
    images_changed: int = 0
    # --incremental: rows dropped because their file is no longer in the input (a moved photo counts here under its
    # old path, and as new under its new one), in all and per label
    images_removed: int = 0
    images_removed_per_class: Dict[str, int] = field(default_factory=dict)
    # when the job began listing the input (UTC, ISO 8601): a file changed later may be missing from the listing
    listed_at: Optional[str] = None
    # image files validation found in the input but not in the job's listing, because they arrived after it (the
    # flow records it after validation; the next --incremental run takes them)
    files_arrived_during_run: Optional[int] = None
    flow_run_id: Optional[str] = None
    pca_components_asked: Optional[int] = None
    pca_note: Optional[str] = None
    pca_model: Optional[str] = None
    pca_model_id: Optional[str] = None
    pca_refit: Optional[bool] = None
    calibration: Optional[Dict[str, Any]] = None
    batch_size: Optional[int] = None
    partitions: Optional[int] = None
    reader: Optional[str] = None
    versions: Dict[str, Optional[str]] = field(default_factory=dict)
    tensorflow_version: Optional[str] = None
    spark_version: Optional[str] = None
    images_per_s: Optional[float] = None
    feature_quality: Optional[FeatureQuality] = None
    previous_run: Optional[PreviousRun] = None
    health: Optional[HealthCounts] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> RunMetrics:
        """Parse metrics.json; raises ``ValueError`` naming the keys a finished run must have and this one lacks."""
        known = {item.name for item in dataclasses.fields(cls)} - {"extra"}
        values = {key: value for key, value in data.items() if key in known}
        required = [item.name for item in dataclasses.fields(cls) if _required(item)]
        missing = [name for name in required if name not in values]
        if missing:
            raise ValueError("metrics.json lacks %s" % ", ".join(missing))
        values["folders_skipped"] = [FolderSkipped(**f) for f in values.get("folders_skipped") or []]
        if values.get("feature_quality"):
            quality = dict(values["feature_quality"])
            quality["per_class"] = [ClassQuality(**row) for row in quality.get("per_class") or []]
            values["feature_quality"] = FeatureQuality(**quality)
        if values.get("previous_run"):
            values["previous_run"] = PreviousRun(**values["previous_run"])
        if values.get("health"):
            health = dict(values["health"])
            health["per_class"] = [ClassHealth(**row) for row in health.get("per_class") or []]
            values["health"] = HealthCounts(**health)
        return cls(**values, extra={key: value for key, value in data.items() if key not in known})

    def to_dict(self) -> Dict[str, Any]:
        data = dataclasses.asdict(self)
        extra = data.pop("extra")
        data.update(extra)
        return data

    def replace(self, **changes: Any) -> RunMetrics:
        return dataclasses.replace(self, **changes)


def _required(item: dataclasses.Field) -> bool:
    return item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING  # type: ignore[misc]


# The distributions TensorFlow may come from (the CPU build is what pyproject.toml installs on Linux x86-64), and
# those of the TFLite interpreter the workers run (fruitjob/litert.py).
TENSORFLOW_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-intel", "tensorflow-macos", "tf-nightly")
LITERT_DISTRIBUTIONS = ("ai-edge-litert", "tflite-runtime")


def _installed(package: str) -> Optional[str]:
    """A package's version: from the module when it is imported, else from its metadata (nothing is imported)."""
    module = sys.modules.get(package)
    if module is not None and getattr(module, "__version__", None):
        return module.__version__
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def first_installed(distributions: Iterable[str]) -> Optional[str]:
    """The version of the first of ``distributions`` installed (by its metadata: nothing is imported), or None."""
    for name in distributions:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def versions(spark_version: str) -> Dict[str, Optional[str]]:
    """The versions that made these features; TensorFlow only by its metadata (it may not be imported at all)."""
    return {
        "python": platform.python_version(),
        "spark": spark_version,
        "tensorflow": first_installed(TENSORFLOW_DISTRIBUTIONS),
        "litert": first_installed(LITERT_DISTRIBUTIONS),
        "numpy": _installed("numpy"),
        "pillow": _installed("PIL") or _installed("pillow"),
    }
