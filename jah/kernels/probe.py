"""The dataset side of a join: an open-addressing hash table over key columns, probed per batch.

A JOIN builds one ``HashIndex`` over the dataset partitions it holds and probes it with every
stream batch; the matching dataset rows are then gathered with one ``take``. ``pc.index_in``
rebuilds its set on every call and returns one match only; this table is built once, keeps
duplicate keys (every match is returned, in dataset order) and probes at a few ns per row
(LIMITS.md fact 4).

Layout: a cuckoo table. ``slots`` is a (2 * buckets, 2) int64 array of (word, first build row)
pairs, empty when the row is -1; a bucket is two slots (32 bytes, one cache line), and there are
at least as many buckets as non-null build rows (load factor <= 1/2). A key lives in one of two
buckets, chosen by its 64-bit hash: the low bits and the bits from 28 up (the low bits, because a
JOIN's partitions share their top bits). The rare key that finds no place after ``_MAX_KICKS``
moves goes to a small ``stash`` that every probe also scans (it stays empty with a good hash).
So a probe looks at exactly 4 slots, without a branch, and prefetches the buckets of the rows a
few ahead: the cache misses of many rows overlap, which is what makes it fast on random keys.

The hash is the partition hash (``hashing``), so equal ints of any width meet. When the key is
one integer column, the word is the key itself: a slot match is a key match. Otherwise the word is
the hash and a hash match is confirmed by comparing the key values. Each distinct key has one
slot; its rows are chained through ``next_row`` in build-row order.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pyarrow as pa
from numba import njit

from jah.kernels.hashing import (
    GOLDEN, bit_is_set, choose, column_views, hash_columns, load_u64, mix64, prefetch,
)

__all__ = ["HashIndex"]

_NO_BITS = np.empty(0, dtype=np.uint8)
_NONE = np.int64(-1)
_MAX_KICKS = 500  # cuckoo moves before a key goes to the stash
_AHEAD = 8  # rows whose buckets are prefetched ahead of the probe (4 to 16 measure alike)


class _Keys(NamedTuple):
    """Key columns as the kernels read them."""

    kinds: tuple[str, ...]
    n: int
    verify: bool  # words are hashes, confirmed by the values below; else words are the int key
    words: np.ndarray  # the key (int32 or int64) when not verify, else the int64 hash
    validity: np.ndarray  # packed bitmap, 0 where any key is null, from bit_offset; empty: no nulls
    bit_offset: int
    ints: np.ndarray  # (int key columns, n) int64 (verify only)
    offsets: np.ndarray  # (string key columns, n + 1) int64 into data (verify only)
    data: np.ndarray  # uint8
    has_null_column: bool  # a column of type null: no row can match


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
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) \
            or pa.types.is_large_binary(t):
        return "bytes"
    if pa.types.is_null(t):
        return "null"
    raise TypeError(f"cannot join on a column of type {t}")


def _one_array(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        if column.num_chunks == 1:
            return column.chunk(0)
        return pa.concat_arrays(column.chunks) if column.num_chunks else pa.array([], type=column.type)
    if not isinstance(column, pa.Array):
        raise TypeError(f"expected a pyarrow Array or ChunkedArray, got {type(column).__name__}")
    return column


def _rows(columns: list[np.ndarray], empty: np.ndarray) -> np.ndarray:
    """Equal-length 1-d arrays as the rows of a 2-d array (a view when there is one)."""
    if len(columns) == 1:
        return columns[0].reshape(1, -1)
    return np.stack(columns) if columns else empty


def _normalize(key_columns: Sequence[pa.Array | pa.ChunkedArray]) -> _Keys:
    if len(key_columns) == 0:
        raise ValueError("a join needs at least one key column")
    arrays = [_one_array(c) for c in key_columns]
    kinds = tuple(_kind(a.type) for a in arrays)
    n = len(arrays[0])
    no_ints, no_offsets = np.empty((0, n), np.int64), np.empty((0, n + 1), np.int64)
    if len(arrays) == 1 and kinds[0] not in ("bytes", "null"):
        # One integer column: its values are the slot words, read in place (int32 or int64).
        v = column_views(arrays[0])
        return _Keys(kinds, n, False, v.values, v.validity, v.bit_offset, no_ints, no_offsets, _NO_BITS,
                     False)
    hashes = hash_columns(arrays).view(np.int64)  # also checks equal lengths and types
    bitmaps = []
    ints: list[np.ndarray] = []
    offsets: list[np.ndarray] = []
    datas: list[np.ndarray] = []
    base = 0
    for a in arrays:
        v = column_views(a)
        if v.validity.size:
            bitmaps.append((v.validity, v.bit_offset))
        if v.kind == "int":
            ints.append(v.values)
        elif v.kind == "bytes":
            offs = v.offsets.astype(np.int64)
            if base:
                offs += base
            offsets.append(offs)
            datas.append(v.data)
            base += v.data.size
    validity, bit_offset = bitmaps[0] if len(bitmaps) == 1 else (_NO_BITS, 0)
    if len(bitmaps) > 1:
        valid = np.ones(n, dtype=np.uint8)
        for bits, off in bitmaps:
            valid &= np.unpackbits(bits, count=off + n, bitorder="little")[off:]
        validity = np.packbits(valid, bitorder="little")
    data = datas[0] if len(datas) == 1 else np.concatenate(datas) if datas else _NO_BITS
    return _Keys(
        kinds, n, True, hashes, validity, bit_offset,
        _rows([i.astype(np.int64, copy=False) for i in ints], no_ints),
        _rows(offsets, no_offsets),
        data, "null" in kinds,
    )


@njit(cache=True, nogil=True, inline="always")
def _hash_of(word: np.int64, verify: bool) -> np.int64:
    """The partition hash of a row: the word itself, or computed from a one-int-column key."""
    return word if verify else np.int64(mix64(np.uint64(word) + GOLDEN))


@njit(cache=True, nogil=True, inline="always")
def _second(h: np.int64, bmask: np.int64) -> np.int64:
    """The second bucket: hash bits from 28 up, independent of the first bucket's low bits."""
    return (h >> 28) & bmask


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
def _build(words: np.ndarray, verify: bool, validity: np.ndarray, bit_offset: int, ints: np.ndarray,
           offs: np.ndarray, data: np.ndarray, slots: np.ndarray, next_row: np.ndarray,
           stash: np.ndarray) -> int:
    """Insert every live row; return how many distinct keys went to the stash (almost always 0)."""
    bmask = slots.shape[0] // 2 - 1
    check_valid = validity.size != 0
    n_stash = 0
    # Rows go in last to first and each is put at the front of its key's chain, so that chains
    # read in build-row order.
    for i in range(words.size - 1, -1, -1):
        next_row[i] = -1
        if check_valid and not bit_is_set(validity[(bit_offset + i) >> 3], bit_offset + i):
            continue
        w = np.int64(words[i])
        h = _hash_of(w, verify)
        b1, b2 = h & bmask, _second(h, bmask)
        q = -1
        for c in (2 * b1, 2 * b1 + 1, 2 * b2, 2 * b2 + 1):
            r = slots[c, 1]
            if r >= 0 and slots[c, 0] == w and (
                    not verify or _same_keys(ints, offs, data, r, ints, offs, data, i)):
                q = c
        if q >= 0:
            next_row[i] = slots[q, 1]
            slots[q, 1] = i
            continue
        for c in range(n_stash):
            r = stash[c, 1]
            if stash[c, 0] == w and (not verify or _same_keys(ints, offs, data, r, ints, offs, data, i)):
                q = c
        if q >= 0:
            next_row[i] = stash[q, 1]
            stash[q, 1] = i
            continue
        # A new key: a free slot in either bucket, else cuckoo: take a slot of one bucket and
        # move its entry to that entry's other bucket, and so on.
        row = np.int64(i)
        b = b1
        for kick in range(_MAX_KICKS):
            if slots[2 * b, 1] < 0:
                q = 2 * b
            elif slots[2 * b + 1, 1] < 0:
                q = 2 * b + 1
            elif kick == 0 and slots[2 * b2, 1] < 0:
                q = 2 * b2
            elif kick == 0 and slots[2 * b2 + 1, 1] < 0:
                q = 2 * b2 + 1
            if q >= 0:
                slots[q, 0] = w
                slots[q, 1] = row
                break
            v = 2 * b + (kick & 1)
            w, slots[v, 0] = slots[v, 0], w
            row, slots[v, 1] = slots[v, 1], row
            h = _hash_of(w, verify)
            b = _second(h, bmask) if b == h & bmask else h & bmask
        if q < 0:  # no room after _MAX_KICKS moves (keys sharing one hash, in practice)
            stash[n_stash, 0] = w
            stash[n_stash, 1] = row
            n_stash += 1
    return n_stash


@njit(cache=True, nogil=True)
def _find(words: np.ndarray, verify: bool, validity: np.ndarray, bit_offset: int, ints: np.ndarray,
          offs: np.ndarray, data: np.ndarray, b_ints: np.ndarray, b_offs: np.ndarray, b_data: np.ndarray,
          slots: np.ndarray, stash: np.ndarray, res: np.ndarray, out_p: np.ndarray, compact: bool) -> int:
    """``res[j]``: the first build row whose key equals probe row ``j``'s, or -1.

    With ``compact`` (an inner join over a unique index) the matches are instead packed in
    place: ``out_p[:k]`` the probe rows, ``res[:k]`` their build rows; returns ``k``.
    """
    bmask = slots.shape[0] // 2 - 1
    flat = slots.reshape(-1)
    check_valid = validity.size != 0
    n = words.size
    # res holds each row's hash until the row is settled (compacting only writes at k <= j).
    for j in range(n):
        res[j] = _hash_of(np.int64(words[j]), verify)
    k = 0
    pack = compact and not verify
    # Pass 1: each key sits in one of 4 slots (2 buckets), checked without a branch: with the
    # buckets of rows a few ahead prefetched, the cache misses of many rows overlap.
    for j in range(n):
        if j + _AHEAD < n:
            ha = res[j + _AHEAD]
            prefetch(flat, 4 * (ha & bmask))
            prefetch(flat, 4 * _second(ha, bmask))
        w = np.int64(words[j])
        h = res[j]
        q1, q2 = 2 * (h & bmask), 2 * _second(h, bmask)
        found = _NONE
        for q in (q1, q1 + 1, q2, q2 + 1):
            r = slots[q, 1]
            found = choose((slots[q, 0] == w) & (r >= 0), r, found)
        for c in range(stash.shape[0]):
            found = choose(stash[c, 0] == w, stash[c, 1], found)
        if check_valid:
            found = choose(bit_is_set(validity[(bit_offset + j) >> 3], bit_offset + j), found, _NONE)
        if pack:
            out_p[k] = j
            res[k] = found  # k <= j: only entries already read are overwritten
            k += found >= 0
        else:
            res[j] = found
    if not verify:
        return k if pack else n
    # Pass 2: a hash match is a key match only if the values agree (distinct keys with one
    # 64-bit hash: all their candidates are looked at).
    for j in range(n):
        r = res[j]
        same = r >= 0
        # `_same_keys(b_ints, b_offs, b_data, r, ints, offs, data, j)` written out: a call
        # passing six arrays costs more than the comparison.
        if same:
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
        if r >= 0 and not same:
            r = -1
            w = np.int64(words[j])
            q1, q2 = 2 * (w & bmask), 2 * _second(w, bmask)
            for q in (q1, q1 + 1, q2, q2 + 1):
                c = slots[q, 1]
                if c >= 0 and slots[q, 0] == w and _same_keys(b_ints, b_offs, b_data, c, ints, offs, data, j):
                    r = c
            for q in range(stash.shape[0]):
                c = stash[q, 1]
                if stash[q, 0] == w and _same_keys(b_ints, b_offs, b_data, c, ints, offs, data, j):
                    r = c
        if compact:
            out_p[k] = j
            res[k] = r
            k += r >= 0
        else:
            res[j] = r
    return k if compact else n


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


def _aligned_slots(n: int) -> np.ndarray:
    """An (n, 2) int64 array of empty slots (row -1) starting on a 64-byte boundary, so that a
    bucket (two slots, 32 bytes) never straddles two cache lines."""
    buf = np.empty(2 * n + 8, dtype=np.int64)
    start = (-buf.ctypes.data % 64) // 8
    slots = buf[start:start + 2 * n].reshape(n, 2)
    slots[:, 0] = 0
    slots[:, 1] = -1
    return slots


def _grown(a: np.ndarray, k: int) -> np.ndarray:
    """Twice the room, the first ``k`` entries kept."""
    b = np.empty(2 * a.size, dtype=a.dtype)
    b[:k] = a[:k]
    return b


def _head(a: np.ndarray, k: int) -> np.ndarray:
    """``a[:k]``, copied when that frees most of ``a``."""
    return a[:k].copy() if 2 * k < a.size else a[:k]


class HashIndex:
    """An immutable hash table over a dataset's key columns, probed by stream batches.

    Null keys (a null in any key column) never match. Build once, probe from any thread: probing
    does not modify the index and its kernels release the GIL.
    """

    __slots__ = ("_keys", "_slots", "_stash", "_next_row", "_unique")

    def __init__(self, keys: _Keys, slots: np.ndarray, stash: np.ndarray, next_row: np.ndarray,
                 unique: bool) -> None:
        """Internal: use ``HashIndex.build``."""
        self._keys = keys
        self._slots = slots
        self._stash = stash
        self._next_row = next_row
        self._unique = unique

    @classmethod
    def build(cls, key_columns: Sequence[pa.Array | pa.ChunkedArray]) -> HashIndex:
        """Index the rows of ``key_columns`` (one or more columns of equal length).

        Keys are ints of any width, bool, temporal types, strings or binary (TypeError otherwise).
        The index holds its keys in the form the kernels read: a single integer column as a view
        of its Arrow buffer (kept alive), others as int64 copies; chunked columns are concatenated.
        Memory: 32 to 64 bytes per non-null row for the table, 8 per row for the chains, plus
        the keys. Blocking; the kernels release the GIL.
        """
        keys = _normalize(key_columns)
        n = keys.n
        live = 0 if keys.has_null_column else n
        if keys.validity.size and live:
            bits = np.unpackbits(keys.validity, count=keys.bit_offset + n, bitorder="little")
            live = int(np.count_nonzero(bits[keys.bit_offset:]))
        buckets = 8
        while 2 * buckets < 2 * live:  # 2 slots a bucket, load factor <= 1/2
            buckets *= 2
        slots = _aligned_slots(2 * buckets)
        next_row = np.full(n, -1, dtype=np.int64)
        stash = np.empty((0, 2), dtype=np.int64)
        if live:
            room = np.empty((live, 2), dtype=np.int64)
            used = _build(keys.words, keys.verify, keys.validity, keys.bit_offset, keys.ints,
                          keys.offsets, keys.data, slots, next_row, room)
            stash = room[:used].copy()
        return cls(keys, slots, stash, next_row, not bool((next_row >= 0).any()))

    @property
    def num_rows(self) -> int:
        """Rows the index was built over, null keys included (``build_idx`` indexes them)."""
        return self._keys.n

    def probe(
        self, key_columns: Sequence[pa.Array | pa.ChunkedArray], how: str = "inner"
    ) -> tuple[np.ndarray, np.ndarray]:
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
        if len(keys.kinds) != len(mine) or any(
            a != b and "null" not in (a, b) for a, b in zip(keys.kinds, mine)
        ):
            raise TypeError(f"probe keys of kinds {list(keys.kinds)} cannot match an index of {list(mine)}")
        n = keys.n
        left = how == "left"
        res = np.empty(n, dtype=np.int64)
        if keys.has_null_column or self._keys.has_null_column:
            res[:] = -1
        else:
            compact = self._unique and not left
            out_p = np.empty(n, dtype=np.int64) if compact else res
            b = self._keys
            k = _find(keys.words, keys.verify, keys.validity, keys.bit_offset, keys.ints, keys.offsets,
                      keys.data, b.ints, b.offsets, b.data, self._slots, self._stash, res, out_p, compact)
            if compact:
                return _head(out_p, k), _head(res, k)
        if self._unique or keys.has_null_column or self._keys.has_null_column:
            if left:
                return np.arange(n, dtype=np.int64), res
            matched = np.flatnonzero(res >= 0)
            return matched.astype(np.int64), res[matched]
        out_p = np.empty(max(n, 16), dtype=np.int64)
        out_b = np.empty(max(n, 16), dtype=np.int64)
        j = k = 0
        while True:
            j, k = _expand(res, self._next_row, left, j, out_p, out_b, k)
            if j == n:
                break
            out_p, out_b = _grown(out_p, k), _grown(out_b, k)
        return _head(out_p, k), _head(out_b, k)

    def __repr__(self) -> str:
        kinds, slots = list(self._keys.kinds), self._slots.shape[0]
        return f"<HashIndex {self.num_rows} rows, keys {kinds}, {slots} slots, {len(self._stash)} stashed>"
