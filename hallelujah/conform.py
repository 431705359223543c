"""Making data fit a stream's schema, and setting apart the rows that cannot.

`conform` is all or nothing: published data and a transform's output either fit or are refused
with a `SchemaMismatch` naming the field. `conform_rows` is what a file source uses: the whole
batch is cast at once (the fast path), and only when that fails are the rows whose values cannot
be cast found (by halving, O(bad × log n) casts) and set apart as `Rejects`, each with a reason
naming where it is in the file and the field — never the file's text. Messages here never quote a
value either: a value may be any line of any file.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hallelujah.errors import SchemaMismatch

Data = TypeVar("Data", pa.RecordBatch, pa.Table)
Column = TypeVar("Column", pa.Array, pa.ChunkedArray)
Cast = Callable[[str, pa.Array, pa.DataType], pa.Array]
_FLOAT_NAMES = {pa.float16(): "float16", pa.float32(): "float32", pa.float64(): "float64"}
_ZONED = r"(?:[Zz]|[+-]\d\d:?\d\d)$"
_EPOCH = r"^\s*-?\d+\s*$"


@dataclasses.dataclass(frozen=True)
class Rejects:
    """Rows a source could not read: in the stream's schema, null where a value could not be
    read, each with its reason ("line 7: field "ts": expected timestamp[ms], got string")."""

    rows: pa.RecordBatch
    reasons: list[str]

    def with_reasons(self, schema: pa.Schema) -> pa.RecordBatch:
        """The rows in the `rejected` output's schema: their fields, then the reason."""
        columns = [*self.rows.columns, pa.array(self.reasons, pa.string())]
        return pa.RecordBatch.from_arrays(columns, schema=schema)

    @staticmethod
    def unread(schema: pa.Schema, reasons: list[str]) -> Rejects:
        """Rows that could not even be split into fields: every value null."""
        n = len(reasons)
        return Rejects(pa.RecordBatch.from_arrays([pa.nulls(n, f.type) for f in schema], schema=schema), reasons)

    @staticmethod
    def joined(parts: list[Rejects | None]) -> Rejects | None:
        present = [p for p in parts if p is not None and p.reasons]
        if not present:
            return None
        if len(present) == 1:
            return present[0]
        return Rejects(pa.concat_batches([p.rows for p in present]), [r for p in present for r in p.reasons])


def type_name(kind: pa.DataType) -> str:
    """An Arrow type as a tradecraft schema spells it (pyarrow itself says "double" for float64)."""
    return _FLOAT_NAMES.get(kind, str(kind))


def check_fields(names: list[str], schema: pa.Schema) -> None:
    """Data must have exactly the schema's fields (in any order): SchemaMismatch naming the first that differs."""
    extra = [n for n in names if n not in schema.names]
    if extra:
        raise SchemaMismatch(f'field "{extra[0]}" is not in the schema (it has: {", ".join(schema.names)})')
    for field in schema:
        if field.name not in names:
            raise SchemaMismatch(f'field "{field.name}" is missing (expected {type_name(field.type)})')


def conform(data: Data, schema: pa.Schema, cast: Cast | None = None) -> Data:
    """Make `data` exactly `schema`: its fields in the schema's order, each safely cast by `cast`
    (default `cast_field`).

    Allowed casts: integers to narrower ones when every value fits, integers to floats when exact,
    float widening, ISO-8601 strings (naive ones are UTC; a zone suffix is converted to UTC;
    all-digit text counts as epoch numbers; digits finer than the unit are dropped) and integers
    (epoch values in the target's unit) to timestamps, timestamps between units (finer digits are
    dropped) and time zones (to UTC wall time), dictionaries to their values, all-null columns to
    anything. Raises SchemaMismatch naming the field for a missing or extra field, an impossible
    cast, or a null in a non-nullable field.
    """
    if data.schema.equals(schema):
        return data
    check_fields(data.schema.names, schema)
    columns = []
    for field in schema:
        column = (cast or cast_field)(field.name, data.column(field.name), field.type)
        if not field.nullable and column.null_count:
            raise SchemaMismatch(f'field "{field.name}": expected {type_name(field.type)} without nulls, got nulls')
        columns.append(column)
    if isinstance(data, pa.Table):
        return pa.Table.from_arrays(columns, schema=schema)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def publishable(data: Data, schema: pa.Schema) -> Data:
    """A table or batch an application publishes, made the stream's `schema` by `conform`'s safe
    casts (an int64 column into a float64 field when every value is exact, an int32 into int64,
    its fields in any order), or SchemaMismatch naming the field that cannot be, in the
    document's type names. Nothing is copied when `data` has the schema already."""
    if not isinstance(data, (pa.Table, pa.RecordBatch)):
        raise TypeError(f"publishable takes a pyarrow Table or RecordBatch, not {type(data).__name__}")
    return conform(data, schema)


def conform_rows(batch: pa.RecordBatch, schema: pa.Schema, at: Callable[[int], str],
                 cast: Cast | None = None, known: dict[int, str] | None = None
                 ) -> tuple[pa.RecordBatch, Rejects | None]:
    """`batch` made `schema` by `cast` (default `cast_field`), with the rows that cannot be set apart.

    `at(i)` says where row i is ("line 7"); `known` are rows already found bad, with their
    reasons (their values are null where they could not be read). Fields missing or extra still
    fail the whole batch (SchemaMismatch): that is the file's shape, not a row's value.
    """
    cast = cast or cast_field
    n = batch.num_rows
    bad = np.zeros(n, dtype=bool)
    reasons: dict[int, str] = dict(known or {})
    bad[list(reasons)] = True
    try:
        fitted = conform(batch, schema, cast)
    except SchemaMismatch:
        check_fields(batch.schema.names, schema)
        fitted = _row_by_row(batch, schema, at, cast, bad, reasons)
    if not bad.any():
        return fitted, None
    rows = fitted.filter(pa.array(bad))
    return fitted.filter(pa.array(~bad)), Rejects(rows, [reasons[int(i)] for i in np.flatnonzero(bad)])


def _row_by_row(batch: pa.RecordBatch, schema: pa.Schema, at: Callable[[int], str], cast: Cast,
                bad: np.ndarray, reasons: dict[int, str]) -> pa.RecordBatch:
    """Each field cast with the values it refuses made null, those rows marked in `bad` with a reason."""
    n = batch.num_rows
    columns = []
    for field in schema:
        def one(values: pa.Array, f: pa.Field = field) -> pa.Array:
            return cast(f.name, values, f.type)
        column = batch.column(field.name)
        expected = f'field "{field.name}": expected {type_name(field.type)}'
        try:
            one(column.slice(0, 0))
        except SchemaMismatch:      # no cast from this type at all: every value is refused
            failing = np.flatnonzero(column.is_valid().to_numpy(zero_copy_only=False)).tolist()
        else:
            failing = _failing(one, column)
        if failing:
            mask = np.zeros(n, dtype=bool)
            mask[failing] = True
            for i in failing:
                reasons.setdefault(i, f"{at(i)}: {expected}, got {type_name(column.type)}")
            column = pc.if_else(pa.array(mask), pa.scalar(None, column.type), column)
            bad |= mask
        column = one(column)
        if not field.nullable and column.null_count:
            nulls = np.asarray(column.is_null().to_numpy(zero_copy_only=False))
            for i in np.flatnonzero(nulls & ~bad):
                reasons.setdefault(int(i), f"{at(int(i))}: {expected}, got null")
            bad |= nulls
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _failing(cast: Callable[[pa.Array], pa.Array], values: pa.Array, offset: int = 0) -> list[int]:
    """Indices (from `offset`) of the values `cast` refuses: the whole first, then halves."""
    try:
        cast(values)
        return []
    except (SchemaMismatch, pa.ArrowException):
        if len(values) <= 1:
            return [offset]
    half = len(values) // 2
    return _failing(cast, values.slice(0, half), offset) + _failing(cast, values.slice(half), offset + half)


def cast_field(name: str, column: Column, target: pa.DataType) -> Column:
    """One column made `target` by the casts `conform` allows; SchemaMismatch naming the field otherwise."""
    source = column.type
    if source == target:
        return column
    if len(column) and column.null_count == len(column):     # nothing to convert, whatever the types
        nulls = pa.nulls(len(column), target)
        return pa.chunked_array([nulls]) if isinstance(column, pa.ChunkedArray) else nulls
    if pa.types.is_dictionary(source):
        return cast_field(name, pc.cast(column, source.value_type), target)
    mismatch = f'field "{name}": expected {type_name(target)}, got {type_name(source)}'
    try:
        if pa.types.is_null(source):
            return pc.cast(column, target)
        if pa.types.is_integer(target) and pa.types.is_integer(source):
            return pc.cast(column, target)  # safe: refuses values that do not fit
        if pa.types.is_floating(target) and (pa.types.is_integer(source) or pa.types.is_floating(source)):
            return pc.cast(column, target)
        if pa.types.is_timestamp(target):
            if _is_text(source):
                return _parse_timestamps(column, target)
            if pa.types.is_integer(source):
                return pc.cast(pc.cast(column, pa.int64()), target)
            if pa.types.is_timestamp(source) or pa.types.is_date(source):
                return pc.cast(column, options=pc.CastOptions(target, allow_time_truncate=True))
        if _is_text(source) and _is_text(target):
            return pc.cast(column, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise SchemaMismatch(f"{mismatch} ({_what_failed(e)})") from None
    raise SchemaMismatch(mismatch)


def cast_text(name: str, column: Column, target: pa.DataType) -> Column:
    """`cast_field`, and text to numbers and bools too: for a text file's values read as text."""
    if _is_text(column.type) and (pa.types.is_integer(target) or pa.types.is_floating(target)
                                  or pa.types.is_boolean(target)):
        try:
            return pc.cast(column, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise SchemaMismatch(f'field "{name}": expected {type_name(target)}, got text '
                                 f"({_what_failed(e)})") from None
    return cast_field(name, column, target)


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _what_failed(e: Exception) -> str:
    """What pyarrow's cast error says, without the value it quotes."""
    text = str(e)
    if "not in range" in text or "overflow" in text.lower():
        return "a value is out of range"
    if "would lose" in text or "truncat" in text:
        return "a value would lose precision"
    if "Failed to parse" in text or "Invalid" in text:
        return "a value cannot be parsed"
    return "a value cannot be converted"


def _parse_timestamps(text: Column, target: pa.DataType) -> Column:
    # pyarrow parses naive ISO text only into a naive type and zoned text only into a zoned one,
    # and a failed parse can cost 30x a good one: pick the parse from the cheap `ends_with` test
    # (our writers' form ends in Z), and split a mixed column only when that fails.
    zoned_type = pa.timestamp(target.unit, "UTC")
    utc = pc.ends_with(text, "Z")
    try:
        if pc.all(utc).as_py():
            return pc.cast(_iso(text, zoned_type), target)
        if not pc.any(utc).as_py():
            return _iso(text, target)
    except pa.ArrowInvalid:
        pass
    if pc.all(pc.match_substring_regex(text, _EPOCH)).as_py():
        return pc.cast(pc.cast(text, pa.int64()), target)
    zoned = pc.match_substring_regex(text, _ZONED)
    with_zone = pc.cast(_iso(pc.if_else(zoned, text, None), zoned_type), target)
    return pc.coalesce(with_zone, _iso(pc.if_else(zoned, None, text), target))


_PARSE_UNITS = {"s": ("us", "ns"), "ms": ("us", "ns"), "us": ("us", "ns"), "ns": ("ns",)}


def _iso(text: Column, target: pa.DataType) -> Column:
    """ISO-8601 text as `target`; digits finer than its unit are dropped, as a cast between units
    does. pyarrow's own parse refuses "…55.350000Z" for milliseconds, and a refused parse costs
    far more than a good one, so text is parsed in microseconds (nanoseconds if it must) and cast."""
    for unit in _PARSE_UNITS[target.unit]:
        try:
            parsed = pc.cast(text, pa.timestamp(unit, target.tz))
        except pa.ArrowInvalid:
            if unit == _PARSE_UNITS[target.unit][-1]:
                raise
            continue
        if unit == target.unit:
            return parsed
        return pc.cast(parsed, options=pc.CastOptions(target, allow_time_truncate=True))
    raise AssertionError("unreachable: the last unit returns or raises")


def rows_from(first: int, word: str = "row") -> Callable[[int], str]:
    """Where row i of a batch is, when the batch starts after `first` rows: "row {first + i + 1}"."""
    return lambda i: f"{word} {first + i + 1}"


@dataclasses.dataclass(frozen=True)
class Raw:
    """A batch as a file gave it, before it is made to fit a stream's schema."""

    batch: pa.RecordBatch
    at: Callable[[int], str]                                # where row i is in the file ("line 9")
    text: bool = False                                      # values are text still to be parsed
    known: dict[int, str] = dataclasses.field(default_factory=dict)     # rows of `batch` found bad already
    unread: list[str] = dataclasses.field(default_factory=list)         # reasons of rows not in `batch` at all


Piece = tuple[pa.RecordBatch, "Rejects | None"]


def fit(raws: list[Raw], schema: pa.Schema | None) -> Piece:
    """The rows of `raws` that fit `schema` as one batch, and those that do not; without a
    schema, the batches as they are (their reader refused any fault)."""
    if schema is None:
        batches = [r.batch for r in raws]
        return (batches[0] if len(batches) == 1 else pa.concat_batches(batches)), None
    goods, rejects = [], []
    for raw in raws:
        good, bad = conform_rows(raw.batch, schema, raw.at, cast_text if raw.text else None, raw.known)
        goods.append(good)
        rejects += [bad, Rejects.unread(schema, raw.unread) if raw.unread else None]
    return (goods[0] if len(goods) == 1 else pa.concat_batches(goods)), Rejects.joined(rejects)
