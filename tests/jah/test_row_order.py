"""PREJOIN's numbered split and POSTJOIN's reassembly, against numpy: whatever the routes, the
parts' arrival order and the number of rows a JOIN makes of each row (0..n), the reassembled
batch is the stream's rows in order, each row's outputs in the order they were made."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jah.kernels.partition import order_by_number
from jah.postjoin import in_row_order
from jah.prejoin import split_numbered
from jah.row_order import ROW, carries_row_numbers, numbered, with_row_numbers


def made_by_a_join(part: pa.RecordBatch, copies: np.ndarray) -> pa.RecordBatch:
    """What a JOIN emits for a numbered part: `copies[id]` rows per row, in order, each with its
    match number, the row numbers kept last."""
    ids = part.column(0).to_numpy()
    each = copies[ids]
    taken = part.take(pa.array(np.repeat(np.arange(part.num_rows), each)))
    match = np.concatenate([np.arange(c) for c in each]) if each.size else np.empty(0, dtype=np.int64)
    return pa.RecordBatch.from_arrays([taken.column(0), pa.array(match, pa.int64()), taken.column(1)],
                                      schema=with_row_numbers(pa.schema([("id", pa.int64()), ("match", pa.int64())])))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 300), st.integers(1, 6), st.integers(0, 2**32 - 1), st.integers(0, 3))
def test_split_parts_come_back_in_row_order(n: int, routes: int, seed: int, most: int) -> None:
    rng = np.random.default_rng(seed)
    batch = pa.record_batch({"id": np.arange(n, dtype=np.int64)})
    route = rng.integers(0, routes, n)
    copies = rng.integers(0, most + 1, n)
    parts = split_numbered(batch, route, routes)
    assert [p.num_rows for p in parts] == np.bincount(route, minlength=routes).tolist()
    outputs = [made_by_a_join(p, copies) for p in parts]
    rng.shuffle(outputs)                                      # the JOINs answer in any order
    got = in_row_order(pa.concat_batches(outputs))
    assert got.schema.names == ["id", "match"]
    assert got.column("id").to_numpy().tolist() == np.repeat(np.arange(n), copies).tolist()
    assert got.column("match").to_numpy().tolist() == [m for c in copies for m in range(c)]


def test_one_part_is_numbered_and_unnumbered_without_a_copy() -> None:
    batch = pa.record_batch({"id": np.arange(100_000, dtype=np.int64)})
    with_numbers = numbered(batch)
    assert carries_row_numbers(with_numbers.schema)
    assert with_numbers.column(1).to_numpy().tolist() == list(range(100_000))
    back = in_row_order(with_numbers, several=False)
    assert back.column(0).buffers()[1].address == batch.column(0).buffers()[1].address
    assert back.schema == batch.schema


def test_a_users_field_named_like_the_numbers_is_kept() -> None:
    """The numbers are the last column whatever a field of the stream is called."""
    batch = pa.record_batch({ROW: pa.array(["x", "y", "z"]), "id": np.arange(3, dtype=np.int64)})
    parts = split_numbered(batch, np.array([1, 0, 1]), 2)
    got = in_row_order(pa.concat_batches([parts[1], parts[0]]))
    assert got.equals(batch)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 70_000), max_size=300))
def test_order_by_number_is_a_stable_sort(numbers: list[int]) -> None:
    given_numbers = np.array(numbers, dtype=np.int32)
    got = order_by_number(given_numbers)
    assert got.dtype == np.int32
    assert got.tolist() == np.argsort(given_numbers, kind="stable").tolist()


def test_order_by_number_refuses_a_negative_number() -> None:
    with pytest.raises(ValueError, match="row 2 has number -5"):
        order_by_number(np.array([0, 1, -5], dtype=np.int32))
    with pytest.raises(TypeError, match="int32"):
        order_by_number(np.array([0, 1], dtype=np.int64))
