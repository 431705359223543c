"""Load every kernel before a zygote forks its workers.

Numba compiles (or loads from ``NUMBA_CACHE_DIR``) a kernel on its first call, once per type
signature. A worker forked after ``warm_up()`` inherits them all and starts in milliseconds
(LIMITS.md fact 5); with an empty cache the first ``warm_up()`` builds the cache for the machine.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from jah.kernels.hashing import hash_columns, partitions_of
from jah.kernels.partition import split_by_partition, take_partitions
from jah.kernels.probe import HashIndex

__all__ = ["warm_up"]


def warm_up() -> None:
    """Call every kernel once on tiny inputs of each supported type (each kernel signature).

    Blocking: about 0.3 s when ``NUMBA_CACHE_DIR`` holds them (15 compiled signatures to load),
    5 to 10 s to compile them into it the first time after a kernel's source changed.
    """
    i32 = pa.array([1, None, 3], pa.int32())
    i64 = pa.array([1, 2, None], pa.int64())
    s32 = pa.array(["a", None, "a longer string"], pa.string())
    s64 = pa.array(["a", "b", None], pa.large_string())
    nulls = pa.nulls(3)
    # Ints of every width reach the kernels as int32 or int64, strings with int32 or int64
    # offsets, so these cover every signature; the second column exercises the combining path.
    for column in (i32, i64, s32, s64, nulls):
        hashes = hash_columns([column, column])
    parts = partitions_of(hashes)
    split_by_partition(parts)
    split_by_partition(parts.astype(np.int64), 256)
    batch = pa.record_batch({"k": i64})
    for partitions in (parts, parts.astype(np.int64)):
        take_partitions(batch, partitions)
        take_partitions(batch, partitions, np.arange(256) % 2)
    # One int key column reaches the kernels as int32 or int64 words; anything else as hashes.
    for builds, probes in (((i32, i64), (i32, i64)), ((s32, s64), (s32, s64))):
        for column in builds:
            index = HashIndex.build([column])
            for probe in probes:
                index.probe([probe], "inner")
                index.probe([probe], "left")
    dup = HashIndex.build([pa.array([1, 1, 2]), pa.array(["x", "x", "y"])])
    dup.probe([pa.array([1, 2], pa.int8()), pa.array(["x", "z"])], "inner")
    dup.probe([pa.array([1, 2], pa.int8()), pa.array(["x", "z"])], "left")
