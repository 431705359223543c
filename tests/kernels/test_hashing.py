"""The partition hash: a Python transcription of its documented definition, and pinned values."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jah.kernels.hashing import NULL_HASH, hash_columns, partitions_of

SETTINGS = settings(max_examples=100, deadline=None)
M = (1 << 64) - 1

# The definition from the module docstring, written out independently of the kernels.
GOLDEN = 0x9E3779B97F4A7C15
P1, P2, P4, P5 = 0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5
NULL_VALUE = 0x6A09E667F3BCC909


def mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
    return z ^ (z >> 31)


def rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & M


def bytes_value(b: bytes) -> int:
    acc = (P5 + len(b)) & M
    padded = b + b"\0" * (-len(b) % 8)
    for i in range(0, len(padded), 8):
        w = int.from_bytes(padded[i:i + 8], "little")
        acc = (rotl(acc ^ (rotl(w * P2 & M, 31) * P1 & M), 27) * P1 + P4) & M
    return acc


def value_of(v: object) -> int:
    if v is None:
        return NULL_VALUE
    if isinstance(v, str):
        return bytes_value(v.encode())
    if isinstance(v, bytes):
        return bytes_value(v)
    return int(v) & M  # bool and int


def reference_hash(row: tuple[object, ...]) -> int:
    h = 0
    for j, v in enumerate(row, start=1):
        h = mix64(h ^ ((value_of(v) + j * GOLDEN) & M))
    return h


INT_TYPES = [pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64()]


def int_range(t: pa.DataType) -> tuple[int, int]:
    bits = t.bit_width
    if pa.types.is_unsigned_integer(t):
        return 0, (1 << bits) - 1
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


@st.composite
def columns(draw: st.DrawFn, n: int) -> tuple[pa.Array | pa.ChunkedArray, list[object]]:
    """A column of ``n`` rows of a random hashable type, maybe sliced and chunked, and its values."""
    kind = draw(st.sampled_from(["int", "string", "large_string", "binary", "bool"]))
    front, back = draw(st.integers(0, 11)), draw(st.integers(0, 3))
    size = front + n + back
    if kind == "int":
        t = draw(st.sampled_from(INT_TYPES))
        lo, hi = int_range(t)
        values = draw(st.lists(st.none() | st.integers(lo, hi), min_size=size, max_size=size))
    elif kind in ("string", "large_string"):
        t = pa.string() if kind == "string" else pa.large_string()
        values = draw(st.lists(st.none() | st.text(max_size=40), min_size=size, max_size=size))
    elif kind == "binary":
        t = pa.binary()
        values = draw(st.lists(st.none() | st.binary(max_size=40), min_size=size, max_size=size))
    else:
        t = pa.bool_()
        values = draw(st.lists(st.none() | st.booleans(), min_size=size, max_size=size))
    array = pa.array(values, t).slice(front, n)
    expected = values[front:front + n]
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=3)))
    if cuts:
        bounds = [0, *cuts, n]
        return pa.chunked_array([array.slice(a, b - a) for a, b in zip(bounds, bounds[1:])], t), expected
    return array, expected


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[pa.Array | pa.ChunkedArray], list[tuple[object, ...]]]:
    n = draw(st.integers(0, 30))
    cols = [draw(columns(n)) for _ in range(draw(st.integers(1, 3)))]
    return [c for c, _ in cols], list(zip(*(values for _, values in cols))) if n else []


@SETTINGS
@given(tables())
def test_hash_matches_the_documented_definition(table) -> None:
    arrays, rows = table
    got = hash_columns(arrays)
    assert got.dtype == np.uint64
    assert [int(h) for h in got] == [reference_hash(row) for row in rows]


@SETTINGS
@given(st.lists(st.none() | st.integers(0, 127), max_size=40))
def test_equal_ints_hash_equal_whatever_their_width(values) -> None:
    hashes = [hash_columns([pa.array(values, t)]) for t in INT_TYPES]
    for h in hashes[1:]:
        np.testing.assert_array_equal(h, hashes[0])


@SETTINGS
@given(st.lists(st.none() | st.integers(0, 2**31 - 1), max_size=20))
def test_temporal_types_hash_as_their_stored_integer(values) -> None:
    expected = hash_columns([pa.array(values, pa.int64())])
    for t in (pa.timestamp("us"), pa.timestamp("s", tz="UTC"), pa.date32(), pa.date64(),
              pa.time32("ms"), pa.time64("ns"), pa.duration("ms")):
        np.testing.assert_array_equal(hash_columns([pa.array(values, t)]), expected)


def test_string_types_and_dictionaries_hash_their_bytes() -> None:
    values = ["", "a", None, "exactly8", "ünïcödé and more than sixteen bytes", "a"]
    expected = hash_columns([pa.array(values, pa.string())])
    for array in (pa.array(values, pa.large_string()), pa.array([None if v is None else v.encode() for v in values]),
                  pa.array(values).dictionary_encode(), pa.chunked_array([values[:2], values[2:]])):
        np.testing.assert_array_equal(hash_columns([array]), expected)


def test_pinned_values_never_change() -> None:
    """Data on disk is partitioned with these exact values: if this fails, revert the change."""
    assert [int(h) for h in hash_columns([pa.array([0, 1, -1, 2**40, None], pa.int64())])] == [
        0xE220A8397B1DCDAF,  # splitmix64's first output from state 0
        0x910A2DEC89025CC1, 0xE4D971771B652C20, 0x1FDD7128F310C389, 0x63CFC62A2B097592,
    ]
    strings = ["", "a", "hello world!", "Hallelujah, a stream-processing database", "C042", "u0012345", "ünïcödé"]
    assert [int(h) for h in hash_columns([pa.array(strings)])] == [
        0x444C2AC6264108D7, 0xE7C2F5FBC4487CED, 0x33DEA401C9402434, 0x85E2DF0037A1EDDB,
        0xE4C757816008BFD4, 0xD740F1A30A72579C, 0xB74ACA010F09E97F,
    ]
    mixed = hash_columns([pa.array([1, None, 7, 7]), pa.array(["", "a", "C042", "C042"]),
                          pa.array([True, False, True, None])])
    assert [int(h) for h in hash_columns([pa.array([1, None]), pa.array(["", "a"])])] == [
        0x6EC8DB8DB5B759B0, 0x8EB64BD6FA729896,
    ]
    assert [int(h) for h in mixed[2:]] == [0xE2874880B2AE04A9, 0xAD1CD8B00E8A0F66]
    assert int(NULL_HASH) == 0x63CFC62A2B097592
    assert partitions_of(hash_columns([pa.array([0, 1])])).tolist() == [0xE2, 0x91]


@SETTINGS
@given(st.lists(st.integers(0, M), max_size=50))
def test_partition_is_the_top_eight_bits(hashes) -> None:
    got = partitions_of(np.array(hashes, dtype=np.uint64))
    assert got.dtype == np.uint8
    assert got.tolist() == [h >> 56 for h in hashes]


def test_empty_columns_hash_to_nothing() -> None:
    for t in (pa.int64(), pa.string(), pa.large_binary(), pa.bool_(), pa.null()):
        assert hash_columns([pa.array([], t)]).shape == (0,)
    assert hash_columns([pa.chunked_array([], pa.int32()), pa.array([], pa.string())]).shape == (0,)


def test_a_null_column_hashes_like_nulls() -> None:
    np.testing.assert_array_equal(hash_columns([pa.nulls(3)]), hash_columns([pa.array([None] * 3, pa.int64())]))


def test_unsupported_types_and_shapes_are_refused() -> None:
    with pytest.raises(TypeError, match="double"):
        hash_columns([pa.array([1.5])])
    with pytest.raises(TypeError, match="list"):
        hash_columns([pa.array([[1]])])
    with pytest.raises(ValueError, match="at least one column"):
        hash_columns([])
    with pytest.raises(ValueError, match="rows"):
        hash_columns([pa.array([1, 2]), pa.array([1])])
