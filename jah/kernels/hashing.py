"""The partition hash: one fixed 64-bit hash of a row's key columns, and its 256 partitions.

Every Jah that routes or joins by key (PREJOIN, ENRICHMENT, DIRECTOR, aggregates) must agree on
which partition a key lands in, across processes, hosts and restarts, and rows already written to
logs and checkpoints were placed with it. So the function below is a format, not an
implementation detail: **it never changes once data has been written with it**.
``tests/kernels/test_hashing.py`` pins exact values; if that test fails, the change is wrong.

Definition (all arithmetic on unsigned 64-bit integers, modulo 2**64)::

    GOLDEN = 0x9E3779B97F4A7C15
    mix64(z):                                   # splitmix64's finalizer (Stafford variant 13)
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB
        return z ^ (z >> 31)

    hash(row) over key columns c_1 .. c_k, in the order given:
        h = 0
        for j = 1 .. k:  h = mix64(h ^ (v_j + j * GOLDEN))
        return h

So one integer column hashes as ``mix64(v + GOLDEN)``: the first output of splitmix64 seeded with ``v``.
The per-column value ``v_j`` of the row is:

* **null** (any type): ``NULL_VALUE = 0x6A09E667F3BCC909``. A one-column null hashes to
  ``NULL_HASH = 0x63CFC62A2B097592``.
* **integers** of every width, signed or not, **bool** (false 0, true 1), and the temporal types
  (timestamp, date32/64, time32/64, duration: their stored integer, unit as stored): the value as
  a signed 64-bit integer, reinterpreted as unsigned (two's complement). Equal values hash equal
  whatever the width; a uint64 above 2**63-1 hashes like the int64 with the same bits.
* **string, large_string, binary, large_binary**: ``bytes_value(b)`` of the value's bytes (UTF-8
  for strings), with P1 = 0x9E3779B185EBCA87, P2 = 0xC2B2AE3D27D4EB4F, P4 = 0x85EBCA77C2B2AE63,
  P5 = 0x27D4EB2F165667C5 (xxHash64's primes) and ``rotl`` a 64-bit left rotation::

      acc = P5 + len(b)
      pad b with zero bytes to a multiple of 8; for each 8-byte word w, read little-endian:
          acc = rotl(acc ^ (rotl(w * P2, 31) * P1), 27) * P1 + P4
      return acc

  (xxHash64's per-word round, one lane; the final ``mix64`` above is the avalanche.) The length
  in the seed tells ``"a"`` from ``"a\\0"``.
* **dictionary** arrays hash as their decoded values. Every other type raises ``TypeError``.

The partition of a row is the top 8 bits, ``hash >> 56`` (256 partitions); hash tables use the
low bits, so a JOIN holding a few partitions still spreads its keys over its whole table.

Chunking, slicing (array offsets) and the physical width of a column never change a hash.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pyarrow as pa
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["hash_columns", "partitions_of", "NULL_VALUE", "NULL_HASH"]

if sys.byteorder != "little":  # the kernels load words as little-endian; the definition is fixed
    raise ImportError("jah.kernels.hashing needs a little-endian host")

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
P1 = np.uint64(0x9E3779B185EBCA87)
P2 = np.uint64(0xC2B2AE3D27D4EB4F)
P4 = np.uint64(0x85EBCA77C2B2AE63)
P5 = np.uint64(0x27D4EB2F165667C5)
NULL_VALUE = np.uint64(0x6A09E667F3BCC909)
NULL_HASH = np.uint64(0x63CFC62A2B097592)  # mix64(NULL_VALUE + GOLDEN), pinned by the tests

_U0 = np.uint64(0)
_U1 = np.uint64(1)
_S27 = np.uint64(27)
_S30 = np.uint64(30)
_S31 = np.uint64(31)
_S33 = np.uint64(33)
_S37 = np.uint64(37)
_S56 = np.uint64(56)


# Building blocks shared by the kernels of jah.kernels (they live here, beside their first user).

@intrinsic
def load_u64(typingctx, arr, idx):  # type: ignore[no-untyped-def]
    """Unaligned little-endian 8-byte load of ``arr[idx:idx+8]``, a uint8 array (no bounds check)."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.uint8 and isinstance(idx, types.Integer)):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        i = context.cast(builder, args[1], sig.args[1], types.intp)
        ptr = builder.bitcast(builder.gep(ary.data, [i]), ir.IntType(64).as_pointer())
        return builder.load(ptr, align=1)

    return types.uint64(arr, idx), codegen


@intrinsic
def choose(typingctx, cond, a, b):  # type: ignore[no-untyped-def]
    """``a if cond else b`` for integers, as an LLVM ``select`` marked unpredictable.

    Compiles to a conditional move, never a branch: LLVM otherwise turns selects whose operands
    come from memory into branches, and a branch mispredicted per row serializes the cache
    misses that a loop over random keys could overlap.
    """
    if not (isinstance(a, types.Integer) and a == b):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        c = context.cast(builder, args[0], sig.args[0], types.boolean)
        inst = builder.select(c, args[1], args[2])
        inst.set_metadata("unpredictable", builder.module.add_metadata([]))
        return inst

    return a(types.boolean, a, b), codegen


@intrinsic
def prefetch(typingctx, arr, idx):  # type: ignore[no-untyped-def]
    """Hint the CPU to fetch ``arr[idx]`` into cache; no effect on results, never faults.

    A loop over random keys issues its cache misses a few rows ahead, instead of waiting for
    each: 2x faster hash-table probes.
    """
    if not (isinstance(arr, types.Array) and isinstance(idx, types.Integer)):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        i = context.cast(builder, args[1], sig.args[1], types.intp)
        i8p = ir.IntType(8).as_pointer()
        ptr = builder.bitcast(builder.gep(ary.data, [i]), i8p)
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch")
        read, keep, data = ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)
        builder.call(fn, [ptr, read, keep, data])
        return context.get_dummy_value()

    return types.none(arr, idx), codegen


# Helpers are inlined at Numba-IR level and take scalars only: an array passed to a helper costs
# an NRT incref/decref per call, and a non-inlined call per row costs more than the hash itself.
@njit(cache=True, nogil=True, inline="always")
def mix64(z: np.uint64) -> np.uint64:
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(cache=True, nogil=True, inline="always")
def absorb(acc: np.uint64, w: np.uint64) -> np.uint64:
    """One xxHash64 round of word ``w`` into ``acc`` (``bytes_value`` in the module docstring)."""
    k = w * P2
    k = ((k << _S31) | (k >> _S33)) * P1
    acc ^= k
    return ((acc << _S27) | (acc >> _S37)) * P1 + P4


@njit(cache=True, nogil=True, inline="always")
def word_mask(r: int) -> np.uint64:
    """Mask of the low ``r`` bytes of a word: none for r <= 0, all for r >= 8. Branch-free."""
    half = np.uint64(4 * min(max(r, 0), 8))  # two shifts of <= 32: a shift by 64 is undefined
    return ((_U1 << half) << half) - _U1


@njit(cache=True, nogil=True, inline="always")
def bit_is_set(byte: np.uint8, bit: int) -> bool:
    return (byte >> (bit & 7)) & 1 == 1


@njit(cache=True, nogil=True)
def _combine_ints(out: np.ndarray, values: np.ndarray, validity: np.ndarray, bit_offset: int,
                  salt: np.uint64, first: bool) -> None:
    # `first` and the null check are loop-invariant: four plain loops keep the common case
    # (first column, no nulls) a single multiply chain per row.
    n = out.size
    if validity.size == 0:
        if first:
            for i in range(n):
                out[i] = mix64(np.uint64(np.int64(values[i])) + salt)
        else:
            for i in range(n):
                out[i] = mix64(out[i] ^ (np.uint64(np.int64(values[i])) + salt))
    else:
        for i in range(n):
            b = bit_offset + i
            v = np.uint64(np.int64(values[i])) if bit_is_set(validity[b >> 3], b) else NULL_VALUE
            out[i] = mix64((_U0 if first else out[i]) ^ (v + salt))


@njit(cache=True, nogil=True)
def _combine_bytes(out: np.ndarray, offsets: np.ndarray, data: np.ndarray, validity: np.ndarray,
                   bit_offset: int, salt: np.uint64, first: bool) -> None:
    has_nulls = validity.size != 0
    size = data.size
    longest = 0
    for i in range(out.size):
        longest = max(longest, np.int64(offsets[i + 1]) - np.int64(offsets[i]))
    # Words are absorbed without branching on each string's length (a misprediction per row on
    # mixed lengths): two when some string is longer than 8 bytes, one when none is.
    two = longest > 8
    for i in range(out.size):
        b = bit_offset + i
        if has_nulls and not bit_is_set(validity[b >> 3], b):
            v = NULL_VALUE
        else:
            start = np.int64(offsets[i])
            end = np.int64(offsets[i + 1])
            n = end - start
            v = P5 + np.uint64(n)
            p = start
            if start + 16 <= size:
                # The first one or two words are loaded whole, masked to the string's length and
                # absorbed; a select keeps the rounds the length asks for.
                a = absorb(v, load_u64(data, p) & word_mask(n))
                v = a if n > 0 else v
                p += 8
                if two:
                    a = absorb(v, load_u64(data, p) & word_mask(n - 8))
                    v = a if n > 8 else v
                    p += 8
            while p + 8 <= end:
                v = absorb(v, load_u64(data, p))
                p += 8
            if p < end:
                if p + 8 <= size:  # a whole-word load stays inside the buffer: mask it
                    w = load_u64(data, p) & word_mask(end - p)
                else:
                    w = _U0
                    for k in range(end - p):
                        w |= np.uint64(data[p + k]) << np.uint64(8 * k)
                v = absorb(v, w)
        out[i] = mix64((_U0 if first else out[i]) ^ (v + salt))


@njit(cache=True, nogil=True)
def _combine_nulls(out: np.ndarray, salt: np.uint64, first: bool) -> None:
    for i in range(out.size):
        out[i] = mix64((_U0 if first else out[i]) ^ (NULL_VALUE + salt))


@njit(cache=True, nogil=True)
def _top_bits(hashes: np.ndarray, out: np.ndarray) -> None:
    for i in range(hashes.size):
        out[i] = hashes[i] >> _S56


_NO_VALIDITY = np.empty(0, dtype=np.uint8)
_EMPTY_BYTES = np.empty(0, dtype=np.uint8)
_SIGNED = {8: np.int8, 16: np.int16, 32: np.int32, 64: np.int64}
_UNSIGNED = {8: np.uint8, 16: np.uint16, 32: np.uint32, 64: np.uint64}


class ColumnViews(NamedTuple):
    """NumPy views of one Arrow array's buffers, as the kernels of this package read them.

    ``kind`` is ``"int"`` (``values``: int32 or int64, one per row), ``"bytes"`` (``offsets``:
    int32 or int64, rows + 1 of them, into ``data``: uint8) or ``"null"``. ``validity`` is the
    Arrow bitmap read from bit ``bit_offset`` on, or empty when the slice has no nulls.
    """

    kind: str
    length: int
    values: np.ndarray | None
    offsets: np.ndarray | None
    data: np.ndarray | None
    validity: np.ndarray
    bit_offset: int


def column_views(array: pa.Array) -> ColumnViews:
    """Views of ``array``'s buffers (a copy only for bool, ints narrower than 32 bits, dictionaries).

    Raises TypeError naming the type when it is not one the partition hash defines.
    """
    t = array.type
    if pa.types.is_dictionary(t):
        return column_views(array.dictionary_decode())
    n, off = len(array), array.offset
    bufs = array.buffers()
    validity = _NO_VALIDITY
    if array.null_count and bufs[0] is not None:
        validity = np.frombuffer(bufs[0], dtype=np.uint8)
    if pa.types.is_null(t):
        return ColumnViews("null", n, None, None, None, validity, off)
    if pa.types.is_boolean(t):
        bits = np.frombuffer(bufs[1], dtype=np.uint8) if n else _EMPTY_BYTES
        values = np.unpackbits(bits, count=off + n, bitorder="little")[off:].astype(np.int32)
        return ColumnViews("int", n, values, None, None, validity, off)
    if pa.types.is_integer(t) or pa.types.is_temporal(t):
        if pa.types.is_temporal(t) and not (
            pa.types.is_timestamp(t) or pa.types.is_date(t) or pa.types.is_time(t)
            or pa.types.is_duration(t)
        ):
            raise TypeError(f"cannot hash a column of type {t}")
        signed = not pa.types.is_unsigned_integer(t)
        dtype = (_SIGNED if signed else _UNSIGNED)[t.bit_width]
        values = np.frombuffer(bufs[1], dtype=dtype, count=off + n)[off:] if n else np.empty(0, np.int64)
        if dtype == np.uint64:
            values = values.view(np.int64)  # the definition reinterprets the bits
        elif values.dtype not in (np.int32, np.int64):
            values = values.astype(np.int64)  # two kernel signatures instead of eight
        return ColumnViews("int", n, values, None, None, validity, off)
    large = pa.types.is_large_string(t) or pa.types.is_large_binary(t)
    if large or pa.types.is_string(t) or pa.types.is_binary(t):
        odtype = np.int64 if large else np.int32
        offsets = np.frombuffer(bufs[1], dtype=odtype, count=off + n + 1)[off:] if n else np.zeros(1, odtype)
        data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None and n else _EMPTY_BYTES
        return ColumnViews("bytes", n, None, offsets, data, validity, off)
    raise TypeError(
        f"cannot hash a column of type {t}: the partition hash takes integers, bool, "
        "timestamps/dates/times/durations, string and binary"
    )


def _chunks(column: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    if isinstance(column, pa.ChunkedArray):
        return list(column.chunks)
    if isinstance(column, pa.Array):
        return [column]
    raise TypeError(f"expected a pyarrow Array or ChunkedArray, got {type(column).__name__}")


def hash_columns(columns: Sequence[pa.Array | pa.ChunkedArray]) -> np.ndarray:
    """The partition hash (module docstring) of each row of ``columns``: uint64, one per row.

    Columns combine in the order given; chunked and sliced columns are read in place (a copy
    only for bool, ints narrower than 32 bits and dictionaries). Raises ValueError for no
    columns or unequal lengths, TypeError naming a type the hash does not define. Blocking; the
    loops release the GIL.
    """
    if len(columns) == 0:
        raise ValueError("hash_columns needs at least one column")
    n = len(columns[0])
    out = np.empty(n, dtype=np.uint64)
    for j, column in enumerate(columns, start=1):
        if len(column) != n:
            raise ValueError(f"column {j - 1} has {len(column)} rows, column 0 has {n}")
        salt = np.uint64((j * int(GOLDEN)) & 0xFFFFFFFFFFFFFFFF)
        first = j == 1
        pos = 0
        for chunk in _chunks(column):
            v = column_views(chunk)
            part = out[pos:pos + v.length]
            pos += v.length
            if v.length == 0:
                continue
            if v.kind == "int":
                _combine_ints(part, v.values, v.validity, v.bit_offset, salt, first)
            elif v.kind == "bytes":
                _combine_bytes(part, v.offsets, v.data, v.validity, v.bit_offset, salt, first)
            else:
                _combine_nulls(part, salt, first)
    return out


def partitions_of(hashes: np.ndarray) -> np.ndarray:
    """The partition (0..255) of each hash: its top 8 bits, as uint8."""
    hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
    out = np.empty(hashes.size, dtype=np.uint8)
    _top_bits(hashes, out)
    return out
