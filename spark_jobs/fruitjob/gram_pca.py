"""PCA at BLAS speed, still distributed: one pass of blocked Gram matrices, an eigendecomposition on the driver.

Spark ML's PCA reads the data three times (the scaler's mean, the covariance's mean, the Gramian) and adds each row
to the covariance on its own (level-2 BLAS). Here every partition reads its Arrow batches once, stacks the rows in
float64 blocks and adds ``block.T @ block`` (level-3 BLAS, numpy's ``syrk``); the partitions' moments are merged with
``treeAggregate`` (Chan et al.'s pairwise update, so that no ``X^T X - n mean mean^T`` cancellation happens), and the
``dim x dim`` covariance is decomposed with ``numpy.linalg.eigh`` on the driver. Projections are Arrow batches too:
``(x - mean) @ components`` per batch, as Spark ML's centring scaler + ``PCAModel`` compute them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache, reduce
from typing import Callable, Iterable, Iterator, List, Optional, Tuple

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame

from fruitjob.blas import blas_threads
from fruitjob.tuning import spark_setting

# Rows per float64 block (2,048 x 1,280 x 8 B = 21 MB): large enough for BLAS to run at full speed, small enough
# to keep a Python worker's memory flat whatever the Arrow batch size the session uses.
BLOCK_ROWS = 2048
# Clusters with at most this many task slots send every partition's moments straight to the driver (6.6 MB each).
DRIVER_MERGE_SLOTS = 16
_MOMENTS_SCHEMA = "n long, mean binary, scatter binary"


@lru_cache(maxsize=4)
def _upper(dim: int) -> Tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(dim)


@dataclass(frozen=True)
class Moments:
    """Count, mean and scatter matrix (sum of ``(x - mean)(x - mean)^T``) of a set of rows.

    The scatter matrix is symmetric: only its upper triangle travels (row by row, 6.6 MB for 1280 features).
    """

    n: int
    mean: np.ndarray
    scatter: np.ndarray  # the upper triangle, as np.triu_indices orders it

    def covariance(self) -> np.ndarray:
        """The sample covariance (divided by n - 1, as Spark ML and numpy do), as a full matrix."""
        rows, columns = _upper(self.mean.size)
        full = np.empty((self.mean.size, self.mean.size))
        full[rows, columns] = self.scatter
        full[columns, rows] = self.scatter
        return full / max(self.n - 1, 1)


@dataclass(frozen=True)
class Axes:
    """The top principal axes: ``components`` (dim x k, one axis per column) and their share of the variance."""

    mean: np.ndarray
    std: np.ndarray
    components: np.ndarray
    explained_variance: np.ndarray


def merge(a: Optional[Moments], b: Optional[Moments]) -> Optional[Moments]:
    """The moments of the union of two disjoint sets of rows (Chan, Golub and LeVeque's pairwise update)."""
    if a is None or a.n == 0:
        return b
    if b is None or b.n == 0:
        return a
    n = a.n + b.n
    delta = b.mean - a.mean
    rows, columns = _upper(delta.size)
    scatter = a.scatter + b.scatter
    scatter += delta[rows] * delta[columns] * (a.n * b.n / float(n))
    return Moments(n=n, mean=a.mean + delta * (b.n / float(n)), scatter=scatter)


def block_moments(blocks: Iterable[np.ndarray]) -> Optional[Moments]:
    """Moments of float64 row blocks, accumulated around the first block's mean so that centring loses nothing."""
    shift = total = gram = None
    n = 0
    for block in blocks:
        if shift is None:
            shift = block.mean(axis=0)
            total = np.zeros_like(shift)
            gram = np.zeros((shift.size, shift.size))
        block = block - shift
        total += block.sum(axis=0)
        gram += block.T @ block  # numpy hands a.T @ a to BLAS syrk: level 3, half the flops of a general product
        n += block.shape[0]
    if shift is None:
        return None
    offset = total / n
    gram -= np.outer(total, offset)
    return Moments(n=n, mean=shift + offset, scatter=gram[_upper(shift.size)])


def rows_of(column: pa.Array, dim: int) -> np.ndarray:
    """An Arrow list<float> column as a (rows, dim) float32 array, without a copy where Arrow allows it."""
    values = column.flatten().to_numpy(zero_copy_only=False)
    if values.size != len(column) * dim:
        raise ValueError("expected %d rows of %d values, got %d values in all" % (len(column), dim, values.size))
    return values.reshape(len(column), dim)


def _blocks(batches: Iterable[pa.RecordBatch], dim: int) -> Iterator[np.ndarray]:
    """The first column of every batch, regrouped into float64 blocks of BLOCK_ROWS rows (the last one shorter)."""
    pending: List[np.ndarray] = []
    held = 0
    for batch in batches:
        rows = rows_of(batch.column(0), dim)
        while rows.shape[0]:
            take = rows[: BLOCK_ROWS - held]
            rows = rows[take.shape[0] :]
            pending.append(take)
            held += take.shape[0]
            if held == BLOCK_ROWS:
                yield np.concatenate(pending).astype(np.float64)
                pending, held = [], 0
    if held:
        yield np.concatenate(pending).astype(np.float64)


def _moments_udf(dim: int) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    def partition_moments(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        with blas_threads(1):  # a task has one core
            found = block_moments(_blocks(batches, dim))
        if found is not None:  # an empty partition yields no row
            yield pa.RecordBatch.from_arrays(
                [
                    pa.array([found.n], pa.int64()),
                    pa.array([found.mean.tobytes()]),
                    pa.array([found.scatter.tobytes()]),
                ],
                names=["n", "mean", "scatter"],
            )

    return partition_moments


def _decoder(dim: int) -> Callable[[object], Moments]:
    def decode(row) -> Moments:
        mean = np.frombuffer(row["mean"], dtype=np.float64)
        scatter = np.frombuffer(row["scatter"], dtype=np.float64)
        return Moments(n=int(row["n"]), mean=mean, scatter=scatter)

    return decode


def _per_core(frame: DataFrame) -> DataFrame:
    """At most one partition per task slot (``coalesce``: no shuffle; no change where there are fewer already).

    The featurize stage sizes partitions for images (2,000 each); for vectors more tasks than cores only add
    per-task costs (a Python worker round trip, a file, and here a 6.6 MB triangle each).
    """
    return frame.coalesce(frame.sparkSession.sparkContext.defaultParallelism)


def moments(features: DataFrame, column: str, dim: int) -> Moments:
    """One pass over ``column`` (array<float> of ``dim``): its count, mean and scatter matrix.

    Up to DRIVER_MERGE_SLOTS partitions (one per task slot), the driver merges their moments as it collects them (no
    second Python stage: ~1 s less on a cold JVM); on larger clusters ``treeAggregate`` merges them on the executors
    first, so that the driver receives a few triangles, not one per core.
    """
    per_partition = _per_core(features.select(column)).mapInArrow(_moments_udf(dim), _MOMENTS_SCHEMA)
    decode = _decoder(dim)
    with spark_setting(features.sparkSession, "spark.sql.execution.arrow.maxRecordsPerBatch", str(BLOCK_ROWS)):
        if features.sparkSession.sparkContext.defaultParallelism <= DRIVER_MERGE_SLOTS:
            found = reduce(merge, [decode(row) for row in per_partition.collect()], None)
        else:
            found = per_partition.rdd.map(decode).treeAggregate(None, merge, merge, depth=2)
    return found if found is not None else Moments(n=0, mean=np.zeros(dim), scatter=np.zeros(len(_upper(dim)[0])))


def principal_axes(found: Moments, k: int) -> Axes:
    """The top ``k`` eigenvectors of the covariance, each signed so that its largest entry (in size) is positive.

    The explained variance of an axis is its eigenvalue over the covariance's trace (Spark ML's, and numpy SVD's
    s**2 / sum(s**2) on centred data).
    """
    covariance = found.covariance()
    with blas_threads(1):  # 0.3 s for 1280 x 1280; more threads only add the risk of oversubscription
        values, vectors = np.linalg.eigh(covariance)  # ascending
    order = np.argsort(values)[::-1][:k]
    components = vectors[:, order]
    signs = np.sign(components[np.argmax(np.abs(components), axis=0), np.arange(components.shape[1])])
    components = components * np.where(signs == 0, 1.0, signs)
    trace = float(np.trace(covariance))
    ratios = np.clip(values[order], 0.0, None) / trace if trace > 0 else np.zeros(len(order))
    std = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    return Axes(mean=found.mean, std=std, components=np.ascontiguousarray(components), explained_variance=ratios)


def _projection_udf(
    mean: np.ndarray, components: np.ndarray, keys: Tuple[str, ...], out: str
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    dim, k = components.shape

    def project_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            rows = rows_of(batch.column(len(keys)), dim)
            with blas_threads(1):
                values = ((rows.astype(np.float64) - mean) @ components).astype(np.float32)
            offsets = pa.array(np.arange(0, (len(rows) + 1) * k, k, dtype=np.int32))
            projected = pa.ListArray.from_arrays(offsets, pa.array(values.ravel()))
            yield pa.RecordBatch.from_arrays([batch.column(i) for i in range(len(keys))] + [projected], [*keys, out])

    return project_batches


def project_arrow(
    features: DataFrame, mean: np.ndarray, components: np.ndarray, column: str, keys: Tuple[str, ...], out: str
) -> DataFrame:
    """``keys`` (string columns) + ``out``: ``(column - mean) @ components`` as array<float>, one BLAS call a batch."""
    schema = ", ".join(["`%s` string" % key for key in keys] + ["`%s` array<float>" % out])
    udf = _projection_udf(np.asarray(mean, np.float64), np.asarray(components, np.float64), tuple(keys), out)
    return _per_core(features.select(*keys, column)).mapInArrow(udf, schema)
