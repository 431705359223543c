"""Splitting a batch by partition: a stable counting sort, then one ``take``.

PREJOIN and ENRICHMENT route each of 256 partitions (``hashing.partitions_of``) to the JOIN that
holds it. A counting sort is linear and keeps the original row order inside each partition, which
is what per-key order across the pipeline relies on; ``argsort`` is slower and needs ``kind="stable"``.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
from numba import njit, types

__all__ = ["order_by_number", "split_by_partition", "take_partitions"]


@njit(cache=True, nogil=True)
def _counting_sort(parts: np.ndarray, n: int, order: np.ndarray, offsets: np.ndarray) -> int:
    """Fill ``order`` and ``offsets``; return the first row whose partition is outside 0..n-1, or -1."""
    for i in range(parts.size):
        p = np.int64(parts[i])
        if p < 0 or p >= n:
            return i
        offsets[p + 1] += 1
    for p in range(n):
        offsets[p + 1] += offsets[p]
    cursor = offsets[:-1].copy()
    for i in range(parts.size):
        p = np.int64(parts[i])
        order[cursor[p]] = i
        cursor[p] += 1
    return -1


def split_by_partition(partitions: np.ndarray, n: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Group row indices by partition, keeping their order within each partition.

    Returns ``(order, offsets)``, both int64: the rows of partition ``p`` are
    ``order[offsets[p]:offsets[p + 1]]``, in increasing order; ``offsets`` has ``n + 1`` entries.
    ``partitions`` holds integers in ``0..n-1`` (uint8 from ``partitions_of``, or any integer
    dtype); raises ValueError naming the first row that is out of range.
    """
    parts = np.asarray(partitions)
    if parts.ndim != 1 or not np.issubdtype(parts.dtype, np.integer):
        raise TypeError(f"partitions must be a 1-d integer array, got {parts.dtype} of shape {parts.shape}")
    if parts.dtype != np.uint8 and parts.dtype != np.int64:
        parts = parts.astype(np.int64)  # two kernel signatures, not one per integer dtype
    parts = np.ascontiguousarray(parts)
    order = np.empty(parts.size, dtype=np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    bad = _counting_sort(parts, n, order, offsets)
    if bad >= 0:
        raise ValueError(f"row {bad} has partition {parts[bad]}, outside 0..{n - 1}")
    return order, offsets


_NUMBERS = types.Array(types.int32, 1, "C", readonly=True)      # as Arrow's buffers come


@njit(types.int32[::1](_NUMBERS, types.int64), cache=True, nogil=True)   # compiled at import: no worker waits
def _order_by_number(numbers: np.ndarray, n: int) -> np.ndarray:
    starts = np.zeros(n + 1, dtype=np.int32)
    for i in range(numbers.size):
        starts[numbers[i] + 1] += 1
    for p in range(n):
        starts[p + 1] += starts[p]
    order = np.empty(numbers.size, dtype=np.int32)
    for i in range(numbers.size):
        r = numbers[i]
        order[starts[r]] = i
        starts[r] += 1
    return order


def order_by_number(numbers: np.ndarray) -> np.ndarray:
    """The row indices (int32) that put ``numbers`` (int32, from 0) in increasing order, rows of
    equal numbers in their order: a counting sort over 0..max, int32 throughout, which in a busy
    process costs a sixth of ``split_by_partition``'s int64 one for 64 k numbers of 64 k values.
    Raises ValueError for a number below 0 (it would write outside the counts)."""
    if numbers.ndim != 1 or numbers.dtype != np.int32:
        raise TypeError(f"numbers must be a 1-d int32 array, got {numbers.dtype} of shape {numbers.shape}")
    if numbers.size == 0:
        return np.empty(0, dtype=np.int32)
    low, high = int(numbers.min()), int(numbers.max())
    if low < 0:
        raise ValueError(f"row {int(np.argmin(numbers))} has number {low}, below 0")
    return _order_by_number(np.ascontiguousarray(numbers), high + 1)


@njit(cache=True, nogil=True)
def _groups_of(parts: np.ndarray, wanted: np.ndarray, dropped: int, out: np.ndarray) -> int:
    """``out[i] = wanted[parts[i]]``, negative groups mapped to ``dropped``; returns a bad row or -1."""
    for i in range(parts.size):
        p = np.int64(parts[i])
        if p < 0 or p >= wanted.size:
            return i
        g = wanted[p]
        out[i] = dropped if g < 0 else g
    return -1


def take_partitions(
    batch: pa.RecordBatch, partitions: np.ndarray, wanted: np.ndarray | None = None
) -> dict[int, pa.RecordBatch]:
    """The rows of ``batch`` split by partition, or by group of partitions: ``{key: sub-batch}``.

    Without ``wanted`` the keys are partition numbers; with ``wanted`` (an integer array indexed
    by partition, e.g. of 256 JOIN numbers) row ``i`` goes to group ``wanted[partitions[i]]``,
    and rows whose group is negative are left out. Only non-empty keys appear. Rows keep their
    order within a key.

    The whole batch is reordered by one ``take`` and each sub-batch is a zero-copy slice of it
    (they share its buffers); when every row goes to one key, that key gets ``batch`` itself.
    """
    parts = np.asarray(partitions)
    if parts.shape != (batch.num_rows,):
        raise ValueError(f"{parts.size} partitions for a batch of {batch.num_rows} rows")
    if not np.issubdtype(parts.dtype, np.integer):
        raise TypeError(f"partitions must be integers, got {parts.dtype}")
    if parts.dtype != np.uint8 and parts.dtype != np.int64:
        parts = parts.astype(np.int64)
    if batch.num_rows == 0:
        return {}
    if wanted is None:
        keys = parts
        n = 256 if parts.dtype == np.uint8 else int(parts.max()) + 1
    else:
        wanted = np.ascontiguousarray(wanted, dtype=np.int64)
        n = max(int(wanted.max(initial=-1)) + 1, 0)
        keys = np.empty(parts.size, dtype=np.int64)
        bad = _groups_of(np.ascontiguousarray(parts), wanted, n, keys)
        if bad >= 0:
            raise ValueError(
                f"row {bad} has partition {parts[bad]}, which wanted (of {wanted.size}) does not map")
    order, offsets = split_by_partition(keys, n + 1 if wanted is not None else n)
    counts = np.diff(offsets[: n + 1])
    present = np.flatnonzero(counts)
    if present.size == 1 and counts[present[0]] == batch.num_rows:
        return {int(present[0]): batch}
    kept = int(offsets[n])  # rows of the `dropped` bucket (index n) come last and are not taken
    taken = batch.take(pa.array(order[:kept]))
    return {int(k): taken.slice(int(offsets[k]), int(counts[k])) for k in present}
