"""The join index: every probe compared with a plain-Python dictionary join."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jah.kernels.probe as probe_module
from jah.kernels.hashing import hash_columns
from jah.kernels.probe import HashIndex

SETTINGS = settings(max_examples=80, deadline=None)

Rows = list[tuple[object, ...]]


def reference_join(build: Rows, probe: Rows, how: str) -> list[tuple[int, int]]:
    index: dict[tuple[object, ...], list[int]] = {}
    for i, key in enumerate(build):
        if None not in key:
            index.setdefault(key, []).append(i)
    pairs = []
    for j, key in enumerate(probe):
        matches = [] if None in key else index.get(key, [])
        pairs += [(j, i) for i in matches]
        if how == "left" and not matches:
            pairs.append((j, -1))
    return pairs


SIGNED = [pa.int8(), pa.int16(), pa.int32(), pa.int64()]
STRINGS = ["", "a", "b", "exactly8", "sixteen bytes ok", "seventeen bytes!!", "ünïcödé", "a" * 40]


@st.composite
def arrow_column(draw: st.DrawFn, values: list[object], t: pa.DataType) -> pa.Array | pa.ChunkedArray:
    """``values`` as an Arrow column of type ``t``, maybe a slice of a longer array, maybe chunked."""
    front, back = draw(st.integers(0, 9)), draw(st.integers(0, 2))
    filler: list[object] = [None] * front if draw(st.booleans()) else [values[0] if values else None] * front
    array = pa.array(filler + values + [None] * back, t).slice(front, len(values))
    cuts = sorted(draw(st.lists(st.integers(0, len(values)), max_size=2)))
    if cuts:
        bounds = [0, *cuts, len(values)]
        return pa.chunked_array([array.slice(a, b - a) for a, b in zip(bounds, bounds[1:])], t)
    return array


@st.composite
def join_cases(draw: st.DrawFn) -> tuple[list, list, Rows, Rows]:
    """Build and probe key columns over small domains (so keys repeat and match), and their rows."""
    kinds = draw(st.lists(st.sampled_from(["int", "uint", "bigint", "string"]), min_size=1, max_size=3))
    n_build, n_probe = draw(st.integers(0, 40)), draw(st.integers(0, 40))
    build_cols, probe_cols, build_vals, probe_vals = [], [], [], []
    for kind in kinds:
        if kind == "int":
            values = st.none() | st.integers(-3, 3)
            types = st.sampled_from(SIGNED)
        elif kind == "uint":
            values = st.none() | st.integers(0, 5)
            types = st.sampled_from([pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64(), pa.int64()])
        elif kind == "bigint":
            values = st.none() | st.sampled_from([0, 2**40, -(2**62), 2**63 - 1])
            types = st.just(pa.int64())
        else:
            values = st.none() | st.sampled_from(STRINGS)
            types = st.sampled_from([pa.string(), pa.large_string()])
        b = draw(st.lists(values, min_size=n_build, max_size=n_build))
        p = draw(st.lists(values, min_size=n_probe, max_size=n_probe))
        build_cols.append(draw(arrow_column(b, draw(types))))
        probe_cols.append(draw(arrow_column(p, draw(types))))
        build_vals.append(b)
        probe_vals.append(p)
    build_rows = list(zip(*build_vals)) if n_build else []
    probe_rows = list(zip(*probe_vals)) if n_probe else []
    return build_cols, probe_cols, build_rows, probe_rows


def pairs_of(result: tuple[np.ndarray, np.ndarray]) -> list[tuple[int, int]]:
    probe_idx, build_idx = result
    assert probe_idx.dtype == np.int64 and build_idx.dtype == np.int64
    return list(zip(probe_idx.tolist(), build_idx.tolist()))


@SETTINGS
@given(join_cases(), st.sampled_from(["inner", "left"]))
def test_probe_returns_every_matching_pair_in_order(case, how) -> None:
    build_cols, probe_cols, build_rows, probe_rows = case
    index = HashIndex.build(build_cols)
    assert index.num_rows == len(build_rows)
    assert pairs_of(index.probe(probe_cols, how)) == reference_join(build_rows, probe_rows, how)


def constant_hash(columns) -> np.ndarray:
    return np.full(len(columns[0]), 0x1234, dtype=np.uint64)


def few_hashes(columns) -> np.ndarray:
    return hash_columns(columns) & np.uint64(3)


@SETTINGS
@given(join_cases(), st.sampled_from(["inner", "left"]), st.sampled_from([constant_hash, few_hashes]))
def test_keys_are_compared_by_value_not_by_hash(case, how, fake_hash: Callable) -> None:
    """With every key hashing alike, only the value comparison can tell keys apart.

    (A single integer key column compares the keys themselves and needs no hash to be confirmed.)
    """
    build_cols, probe_cols, build_rows, probe_rows = case
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(probe_module, "hash_columns", fake_hash)
        index = HashIndex.build(build_cols)
        assert pairs_of(index.probe(probe_cols, how)) == reference_join(build_rows, probe_rows, how)


def test_int32_probe_keys_match_int64_build_keys() -> None:
    index = HashIndex.build([pa.array([10, 20, 30, 20], pa.int64())])
    assert pairs_of(index.probe([pa.array([20, 40, 10], pa.int32())])) == [(0, 1), (0, 3), (2, 0)]
    assert pairs_of(index.probe([pa.array([20, 40], pa.uint8())], "left")) == [(0, 1), (0, 3), (1, -1)]


def test_dictionary_and_binary_keys_match_plain_strings() -> None:
    index = HashIndex.build([pa.array(["x", "yy", "x", None]).dictionary_encode()])
    assert pairs_of(index.probe([pa.array(["yy", "x"], pa.large_string())])) == [(0, 1), (1, 0), (1, 2)]
    assert pairs_of(index.probe([pa.array([b"x"], pa.binary())])) == [(0, 0), (0, 2)]


def test_many_duplicates_return_every_pair() -> None:
    index = HashIndex.build([pa.array([7] * 300 + [8])])
    probe_idx, build_idx = index.probe([pa.array([7] * 200 + [9])], "left")
    assert probe_idx.size == 200 * 300 + 1
    assert build_idx[:300].tolist() == list(range(300))
    assert (probe_idx[-1], build_idx[-1]) == (200, -1)


def test_null_keys_never_match() -> None:
    index = HashIndex.build([pa.array([None, 1], pa.int64()), pa.array(["a", None])])
    assert pairs_of(index.probe([pa.array([None, 1]), pa.array(["a", None])], "left")) == [(0, -1), (1, -1)]
    all_null = HashIndex.build([pa.nulls(3)])
    assert pairs_of(all_null.probe([pa.array([1, None])], "left")) == [(0, -1), (1, -1)]
    assert pairs_of(HashIndex.build([pa.array([1])]).probe([pa.nulls(2)])) == []


def test_empty_index_and_empty_probe() -> None:
    empty = HashIndex.build([pa.array([], pa.string())])
    assert empty.num_rows == 0
    assert pairs_of(empty.probe([pa.array(["a"])], "left")) == [(0, -1)]
    assert pairs_of(HashIndex.build([pa.array(["a"])]).probe([pa.array([], pa.string())], "left")) == []


def test_temporal_keys_match_only_the_same_unit() -> None:
    ts = pa.array([1_000, 2_000], pa.timestamp("us"))
    index = HashIndex.build([ts])
    assert pairs_of(index.probe([pa.array([2_000], pa.timestamp("us", tz="UTC"))])) == [(0, 1)]
    with pytest.raises(TypeError, match="timestamp"):
        index.probe([pa.array([2], pa.timestamp("ms"))])


def test_probe_refuses_keys_of_another_kind_or_number() -> None:
    index = HashIndex.build([pa.array([1]), pa.array(["a"])])
    with pytest.raises(TypeError, match="cannot match"):
        index.probe([pa.array(["a"]), pa.array([1])])
    with pytest.raises(TypeError, match="cannot match"):
        index.probe([pa.array([1])])
    with pytest.raises(ValueError, match="how"):
        index.probe([pa.array([1]), pa.array(["a"])], how="outer")
    with pytest.raises(TypeError, match="double"):
        HashIndex.build([pa.array([1.5])])


WARM_CHECK = """
import numpy as np, pyarrow as pa
from numba.core.registry import CPUDispatcher
from jah.kernels import hashing, partition, probe
from jah.kernels.warm import warm_up

warm_up()
kernels = {f"{m.__name__}.{name}": k for m in (hashing, partition, probe) for name, k in vars(m).items()
           if isinstance(k, CPUDispatcher) and k.targetoptions.get("inline") != "always"}
before = {name: set(k.signatures) for name, k in kernels.items()}

ints = [pa.array([1, None, 3], t) for t in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                                            "uint64")]
others = [pa.array([True, None, False]), pa.array([1, None, 3], pa.timestamp("us")),
          pa.array([1, None, 3], pa.date32()), pa.nulls(3), pa.array(["a", "bb", None]).dictionary_encode()]
strings = [pa.array(["a", None, "a longer string"], t) for t in ("string", "large_string", "binary", "large_binary")]
for column in ints + others + strings:
    for columns in ([column], [column, column], [pa.chunked_array([column[:1], column[1:]])]):
        hashing.partitions_of(hashing.hash_columns(columns))
batch = pa.record_batch({"k": ints[3]})
for dtype in (np.uint8, np.int64, np.int32, np.uint16):
    parts = np.array([0, 5, 5], dtype=dtype)
    partition.split_by_partition(parts, 8)
    partition.take_partitions(batch, parts)
    partition.take_partitions(batch, parts, np.arange(8) % 3)
single = [[c] for c in ints + others[:3]] + [[c] for c in strings]
pairs = [[ints[3], strings[0]], [ints[2], strings[1]]]
for keys in single + pairs:
    for index in (probe.HashIndex.build(keys), probe.HashIndex.build([pa.concat_arrays([k, k]) for k in keys])):
        for p in single + pairs:
            if probe._normalize(p).kinds == index._keys.kinds:
                index.probe(p, "inner")
                index.probe(p, "left")
after = {name: set(k.signatures) for name, k in kernels.items()}
new = {name: after[name] - before[name] for name in kernels if after[name] - before[name]}
assert not new, f"warm_up() misses these kernel signatures: {new}"
print("ok", sum(map(len, before.values())))
"""


def test_warm_up_loads_every_kernel_signature_the_api_can_reach() -> None:
    """A worker forked after warm_up() must never compile: every type the API takes is covered."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", WARM_CHECK], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok")
