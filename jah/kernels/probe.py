"""The dataset side of a join: an open-addressing hash table over key columns, probed per batch.

A JOIN builds one ``HashIndex`` over the dataset partitions it holds and probes it with every
stream batch; the matching dataset rows are then gathered with one ``take``. ``pc.index_in``
rebuilds its set on every call and returns one match only; this table is built once, keeps
duplicate keys (every match is returned, in dataset order) and probes at a few ns per row
(LIMITS.md fact 4).

Layout: ``slots`` is a (capacity, 2) int64 array of (word, first build row) pairs, capacity a
power of two at least twice the number of non-null build rows, linear probing from
``hash & (capacity - 1)`` (the low bits: a JOIN's partitions share their top bits). The hash is
the partition hash (``hashing.hash_columns``), so equal ints of any width meet. The word is the key
itself when the key is one integer column (a slot match is then a key match, with one memory
access per probe), else the hash, confirmed by comparing the key values (``_same_keys``). Each
distinct key has one slot; its rows are chained through ``next_row`` in build-row order.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pyarrow as pa
from numba import njit

from jah.kernels.hashing import column_views, hash_columns, load_u64

__all__ = ["HashIndex"]


class _Keys(NamedTuple):
    """Key columns normalized for the kernels: ints as int64 rows, byte strings as int64 offsets."""

    kinds: tuple[str, ...]
    hashes: np.ndarray  # int64 view of the partition hash
    valid: np.ndarray  # uint8 per row (0 where any key is null); empty when none is
    ints: np.ndarray  # (int key columns, rows) int64
    offsets: np.ndarray  # (string key columns, rows + 1) int64 into data
    data: np.ndarray  # uint8
    has_null_column: bool  # a column of type null: no row can match
    verify: bool  # slot words are hashes, to be confirmed by value (else they are the int key)
    words: np.ndarray  # int64 per row: the key (one int column) or the hash


def _kind(t: pa.DataType) -> str:
    """What a key column compares as: columns of the same kind may be joined."""
    if pa.types.is_dictionary(t):
        return _kind(t.value_type)
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        return "int"
    if pa.types.is_timestamp(t):
        return f"timestamp[{t.unit}]"  # same unit only: the stored integers are compared
    if pa.types.is_time(t):
        return f"time[{t.unit}]"
    if pa.types.is_duration(t):
        return f"duration[{t.unit}]"
    if pa.types.is_date(t):
        return str(t)
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "bytes"
    if pa.types.is_null(t):
        return "null"
    raise TypeError(f"cannot join on a column of type {t}")


def _one_array(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        if column.num_chunks == 1:
            return column.chunk(0)
        return pa.concat_arrays(column.chunks) if column.num_chunks else pa.array([], type=column.type)
    return column


def _normalize(key_columns: Sequence[pa.Array | pa.ChunkedArray]) -> _Keys:
    if len(key_columns) == 0:
        raise ValueError("a join needs at least one key column")
    arrays = [_one_array(c) for c in key_columns]
    kinds = tuple(_kind(a.type) for a in arrays)
    hashes = hash_columns(arrays).view(np.int64)  # also checks equal lengths and types
    n = len(arrays[0])
    valid: np.ndarray | None = None
    ints: list[np.ndarray] = []
    offsets: list[np.ndarray] = []
    datas: list[np.ndarray] = []
    base = 0
    for a in arrays:
        v = column_views(a)
        if v.validity.size:
            bits = np.unpackbits(v.validity, count=v.bit_offset + n, bitorder="little")[v.bit_offset:]
            valid = bits if valid is None else valid & bits
        if v.kind == "int":
            ints.append(v.values.astype(np.int64, copy=False))
        elif v.kind == "bytes":
            offs = v.offsets.astype(np.int64)
            if base:
                offs += base
            offsets.append(offs)
            datas.append(v.data)
            base += v.data.size
    int_rows = ints[0].reshape(1, n) if len(ints) == 1 else np.stack(ints) if ints else np.empty((0, n), np.int64)
    off_rows = offsets[0].reshape(1, n + 1) if len(offsets) == 1 else (
        np.stack(offsets) if offsets else np.empty((0, n + 1), np.int64))
    data = datas[0] if len(datas) == 1 else np.concatenate(datas) if datas else np.empty(0, np.uint8)
    hashes = np.ascontiguousarray(hashes)
    int_rows = np.ascontiguousarray(int_rows)
    verify = not (len(kinds) == 1 and int_rows.shape[0] == 1)
    return _Keys(
        kinds, hashes,
        np.empty(0, np.uint8) if valid is None else np.ascontiguousarray(valid),
        int_rows, np.ascontiguousarray(off_rows), np.ascontiguousarray(data),
        "null" in kinds, verify, hashes if verify else int_rows[0],
    )


@njit(cache=True, nogil=True)
def _same_keys(a_ints: np.ndarray, a_offs: np.ndarray, a_data: np.ndarray, i: int,
               b_ints: np.ndarray, b_offs: np.ndarray, b_data: np.ndarray, j: int) -> bool:
    """Whether row ``i`` of keys a equals row ``j`` of keys b (ints as int64, strings bytewise)."""
    for c in range(a_ints.shape[0]):
        if a_ints[c, i] != b_ints[c, j]:
            return False
    for c in range(a_offs.shape[0]):
        a, a_end, b = a_offs[c, i], a_offs[c, i + 1], b_offs[c, j]
        if a_end - a != b_offs[c, j + 1] - b:
            return False
        while a + 8 <= a_end:
            if load_u64(a_data, a) != load_u64(b_data, b):
                return False
            a += 8
            b += 8
        while a < a_end:
            if a_data[a] != b_data[b]:
                return False
            a += 1
            b += 1
    return True


@njit(cache=True, nogil=True)
def _build(hashes: np.ndarray, words: np.ndarray, valid: np.ndarray, verify: bool, ints: np.ndarray,
           offs: np.ndarray, data: np.ndarray, slots: np.ndarray, next_row: np.ndarray) -> None:
    mask = slots.shape[0] - 1
    check_valid = valid.size != 0
    # Rows go in last to first and each is put at the front of its key's chain, so that chains
    # read in build-row order.
    for i in range(hashes.size - 1, -1, -1):
        next_row[i] = -1
        if check_valid and valid[i] == 0:
            continue
        s = hashes[i] & mask
        w = words[i]
        while True:
            r = slots[s, 1]
            if r < 0:
                slots[s, 0] = w
                slots[s, 1] = i
                break
            if slots[s, 0] == w and (not verify or _same_keys(ints, offs, data, r, ints, offs, data, i)):
                next_row[i] = r
                slots[s, 1] = i
                break
            s = (s + 1) & mask


@njit(cache=True, nogil=True)
def _find(hashes: np.ndarray, words: np.ndarray, valid: np.ndarray, verify: bool, ints: np.ndarray,
          offs: np.ndarray, data: np.ndarray, b_ints: np.ndarray, b_offs: np.ndarray, b_data: np.ndarray,
          slots: np.ndarray, res: np.ndarray, todo: np.ndarray) -> None:
    """``res[j]``: the first build row whose key equals probe row ``j``'s, or -1."""
    mask = slots.shape[0] - 1
    check_valid = valid.size != 0
    # Pass 1 settles, without a data-dependent branch, every row whose key sits in its home
    # slot (or whose home slot is empty): the CPU then overlaps the cache misses of many rows,
    # where a branch mispredicted per row would serialize them (3-5x slower on random keys).
    m = 0
    for j in range(hashes.size):
        s = hashes[j] & mask
        r = slots[s, 1]
        occupied = r >= 0
        equal = slots[s, 0] == words[j]
        live = (valid[j] != 0) if check_valid else True
        res[j] = r if (occupied & equal & live & (not verify)) else -1
        todo[m] = j
        m += occupied & live & (verify | (not equal))
    # Pass 2: the rest (home slot taken by another key, or keys to compare by value). The
    # comparison is `_same_keys` written out: a call passing six arrays costs more than it does.
    for t in range(m):
        j = todo[t]
        s = hashes[j] & mask
        w = words[j]
        while True:
            r = slots[s, 1]
            if r < 0:
                break
            same = slots[s, 0] == w
            if same and verify:
                for c in range(ints.shape[0]):
                    if b_ints[c, r] != ints[c, j]:
                        same = False
                        break
                for c in range(offs.shape[0]):
                    if not same:
                        break
                    a, a_end, b = b_offs[c, r], b_offs[c, r + 1], offs[c, j]
                    if a_end - a != offs[c, j + 1] - b:
                        same = False
                        break
                    while a + 8 <= a_end:
                        if load_u64(b_data, a) != load_u64(data, b):
                            same = False
                            break
                        a += 8
                        b += 8
                    while same and a < a_end:
                        same = b_data[a] == data[b]
                        a += 1
                        b += 1
            if same:
                res[j] = r
                break
            s = (s + 1) & mask


@njit(cache=True, nogil=True)
def _compact(res: np.ndarray, out_p: np.ndarray, out_b: np.ndarray) -> int:
    """Inner join over a unique index: the rows with a match, without a branch per row."""
    k = 0
    for j in range(res.size):
        out_p[k] = j
        out_b[k] = res[j]
        k += res[j] >= 0
    return k


@njit(cache=True, nogil=True)
def _expand(res: np.ndarray, next_row: np.ndarray, left: bool, j0: int, out_p: np.ndarray,
            out_b: np.ndarray, k0: int) -> tuple[int, int]:
    """Pairs from probe row ``j0`` and output position ``k0`` on, following duplicate chains.

    Returns (next probe row, pairs written), stopping before a row whose pairs do not fit: the
    caller grows the outputs and calls again. (Growing them here would make them loop-carried
    array variables, which Numba increfs and decrefs on every row.)
    """
    cap = out_p.size
    k = k0
    for j in range(j0, res.size):
        r = res[j]
        if r >= 0:
            m = 1
            q = next_row[r]
            while q >= 0:
                m += 1
                q = next_row[q]
            if k + m > cap:
                return j, k
            while r >= 0:
                out_p[k] = j
                out_b[k] = r
                k += 1
                r = next_row[r]
        elif left:
            if k == cap:
                return j, k
            out_p[k] = j
            out_b[k] = -1
            k += 1
    return res.size, k


class HashIndex:
    """An immutable hash table over a dataset's key columns, probed by stream batches.

    Null keys (a null in any key column) never match. Build once, probe from any thread: probing
    does not modify the index and its kernels release the GIL.
    """

    __slots__ = ("_keys", "_slots", "_next_row", "_unique")

    def __init__(self, keys: _Keys, slots: np.ndarray, next_row: np.ndarray, unique: bool) -> None:
        """Internal: use ``HashIndex.build``."""
        self._keys = keys
        self._slots = slots
        self._next_row = next_row
        self._unique = unique

    @classmethod
    def build(cls, key_columns: Sequence[pa.Array | pa.ChunkedArray]) -> HashIndex:
        """Index the rows of ``key_columns`` (one or more columns of equal length).

        Keys are ints of any width, bool, temporal types, strings or binary (TypeError otherwise).
        The index keeps normalized copies of the keys (int64 values, int64 offsets), not the
        caller's arrays; chunked columns are concatenated. At most 2**62 rows.
        """
        keys = _normalize(key_columns)
        n = keys.hashes.size
        live = 0 if keys.has_null_column else n if keys.valid.size == 0 else int(np.count_nonzero(keys.valid))
        capacity = 16
        while capacity < 2 * live:  # load factor <= 1/2: short probe runs
            capacity *= 2
        slots = np.empty((capacity, 2), dtype=np.int64)
        slots[:, 1] = -1
        next_row = np.full(n, -1, dtype=np.int64)
        if live:
            _build(keys.hashes, keys.words, keys.valid, keys.verify, keys.ints, keys.offsets, keys.data,
                   slots, next_row)
        return cls(keys, slots, next_row, not bool((next_row >= 0).any()))

    @property
    def num_rows(self) -> int:
        """Rows the index was built over, null keys included (``build_idx`` indexes them)."""
        return int(self._keys.hashes.size)

    def probe(self, key_columns: Sequence[pa.Array | pa.ChunkedArray], how: str = "inner") -> tuple[np.ndarray, np.ndarray]:
        """All pairs ``(probe_idx, build_idx)`` (int64 arrays) whose keys are equal.

        Pairs come in probe-row order, and for one probe row in build-row order. With
        ``how="left"`` a probe row without a match appears once, with ``build_idx == -1``.
        Key columns correspond by position to those of ``build`` and must be of the same kind
        (ints of any width with each other, strings/binary with each other, temporal types of
        the same unit): TypeError otherwise. Keys are compared by value, never by hash alone.
        """
        if how not in ("inner", "left"):
            raise ValueError(f'how must be "inner" or "left", got {how!r}')
        keys = _normalize(key_columns)
        mine = self._keys.kinds
        if len(keys.kinds) != len(mine) or any(a != b and "null" not in (a, b) for a, b in zip(keys.kinds, mine)):
            raise TypeError(f"probe keys of kinds {list(keys.kinds)} cannot match an index of {list(mine)}")
        n = keys.hashes.size
        left = how == "left"
        if keys.has_null_column or self._keys.has_null_column:
            res = np.full(n, -1, dtype=np.int64)
        else:
            res = np.empty(n, dtype=np.int64)
            b = self._keys
            _find(keys.hashes, keys.words, keys.valid, keys.verify, keys.ints, keys.offsets, keys.data,
                  b.ints, b.offsets, b.data, self._slots, res, np.empty(n, dtype=np.int64))
        if self._unique:
            if left:
                return np.arange(n, dtype=np.int64), res
            out_p = np.empty(n, dtype=np.int64)
            out_b = np.empty(n, dtype=np.int64)
            k = _compact(res, out_p, out_b)
        else:
            out_p = np.empty(max(n, 16), dtype=np.int64)
            out_b = np.empty(max(n, 16), dtype=np.int64)
            j = k = 0
            while True:
                j, k = _expand(res, self._next_row, left, j, out_p, out_b, k)
                if j == n:
                    break
                out_p = np.concatenate([out_p[:k], np.empty(out_p.size, np.int64)])  # grow 2x
                out_b = np.concatenate([out_b[:k], np.empty(out_b.size, np.int64)])
        if 2 * k < out_p.size:  # do not keep a mostly empty buffer alive behind the result
            return out_p[:k].copy(), out_b[:k].copy()
        return out_p[:k], out_b[:k]

    def __repr__(self) -> str:
        return f"<HashIndex {self.num_rows} rows, keys {list(self._keys.kinds)}, {self._slots.shape[0]} slots>"
