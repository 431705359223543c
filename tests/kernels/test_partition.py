"""Splitting rows by partition: a stable grouping, compared with a plain-Python one."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jah.kernels.partition import split_by_partition, take_partitions

SETTINGS = settings(max_examples=100, deadline=None)


def reference_groups(partitions: list[int], n: int) -> list[list[int]]:
    groups: list[list[int]] = [[] for _ in range(n)]
    for row, p in enumerate(partitions):
        groups[p].append(row)
    return groups


@SETTINGS
@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.just(n), st.lists(st.integers(0, n - 1), max_size=200))),
       st.sampled_from([np.uint8, np.int64, np.int32, np.uint16]))
def test_split_groups_rows_by_partition_keeping_their_order(case, dtype) -> None:
    n, partitions = case
    if np.iinfo(dtype).max < n - 1:
        partitions = [p % 256 for p in partitions]
        n = min(n, 256)
    order, offsets = split_by_partition(np.array(partitions, dtype=dtype), n)
    assert order.dtype == np.int64 and offsets.dtype == np.int64
    assert offsets.shape == (n + 1,)
    assert [order[offsets[p]:offsets[p + 1]].tolist() for p in range(n)] == reference_groups(partitions, n)


def test_split_defaults_to_256_partitions() -> None:
    order, offsets = split_by_partition(np.array([255, 0, 255, 7], dtype=np.uint8))
    assert offsets.size == 257
    assert order.tolist() == [1, 3, 0, 2]


def test_split_refuses_partitions_out_of_range() -> None:
    with pytest.raises(ValueError, match="row 2 has partition 4"):
        split_by_partition(np.array([0, 1, 4]), 4)
    with pytest.raises(ValueError, match="row 0 has partition -1"):
        split_by_partition(np.array([-1]), 4)
    with pytest.raises(TypeError):
        split_by_partition(np.array([0.5]), 4)


def batch_of(n: int) -> pa.RecordBatch:
    return pa.record_batch({"row": pa.array(range(n), pa.int64()),
                            "s": pa.array([None if i % 5 == 0 else f"v{i}" for i in range(n)])})


@SETTINGS
@given(st.lists(st.integers(0, 255), max_size=120))
def test_take_partitions_gives_each_partition_its_rows_in_order(partitions) -> None:
    batch = batch_of(len(partitions))
    got = take_partitions(batch, np.array(partitions, dtype=np.uint8))
    expected = {p: rows for p, rows in enumerate(reference_groups(partitions, 256)) if rows}
    assert {p: b.column("row").to_pylist() for p, b in got.items()} == expected
    for p, sub in got.items():
        assert sub.schema == batch.schema
        assert sub.column("s").to_pylist() == [batch.column("s")[r].as_py() for r in expected[p]]


@SETTINGS
@given(st.lists(st.integers(0, 255), max_size=120), st.lists(st.integers(-1, 3), min_size=256, max_size=256))
def test_take_partitions_groups_partitions_and_leaves_out_negative_groups(partitions, wanted) -> None:
    batch = batch_of(len(partitions))
    got = take_partitions(batch, np.array(partitions, dtype=np.uint8), np.array(wanted))
    expected: dict[int, list[int]] = {}
    for row, p in enumerate(partitions):
        if wanted[p] >= 0:
            expected.setdefault(wanted[p], []).append(row)
    assert {g: b.column("row").to_pylist() for g, b in got.items()} == expected


def test_take_partitions_passes_a_single_partition_batch_through() -> None:
    batch = batch_of(5)
    assert take_partitions(batch, np.full(5, 9, dtype=np.uint8))[9] is batch
    assert take_partitions(batch_of(0), np.empty(0, dtype=np.uint8)) == {}


def test_take_partitions_checks_its_inputs() -> None:
    with pytest.raises(ValueError, match="3 partitions for a batch of 5 rows"):
        take_partitions(batch_of(5), np.zeros(3, dtype=np.uint8))
    with pytest.raises(ValueError, match="row 0 has partition 9"):
        take_partitions(batch_of(1), np.array([9], dtype=np.uint8), np.zeros(4))
