"""Writing batches to files: JSON lines, CSV and Parquet (re-exported by `hallelujah.formats`).

JSON lines are what `hallelujah stream` prints by default, so they are built for speed: every column
is formatted, escaped and joined into lines by pyarrow.compute kernels over the whole batch, and the
resulting buffer goes to the file without a per-row Python step.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Self

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from hallelujah.errors import InvalidInput

WRITE_FORMATS = ("jsonl", "csv", "parquet", "arrow")
ROW_GROUP_ROWS = 1 << 20
"""Rows per Parquet row group: 1 Mi-row groups write twice as fast as 64 Ki-row ones (LIMITS.md 6)."""
JSONL_SLICE_ROWS = 65536
"""Rows encoded at once: keeps the working set in cache and each line buffer far below 2 GiB."""

_NEEDS_ESCAPE = r'[\\"\x00-\x1f]'
_CONTROL = r"[\x00-\x1f]"
_SHORT_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
_CONTROL_ESCAPES = {chr(c): _SHORT_ESCAPES.get(chr(c), f"\\u{c:04x}") for c in range(0x20)}

Conform = Callable[[Any, pa.Schema], Any]


def batch_to_jsonl(batch: pa.RecordBatch) -> bytes:
    """The batch as JSON lines: one object per row, keys in field order, each line ending in \\n.

    Timestamps become ISO-8601 UTC strings with a `Z`, with as many fraction digits as the unit
    holds (s: none, ms: 3, us: 6 as in "2023-11-14T22:13:20.000001Z", ns: 9); a zoned timestamp
    is shown in UTC. Nulls, NaN and ±inf are `null`; floats always show a fraction or exponent
    (`1.0`, `1e+20`); strings are JSON-escaped, non-ASCII kept as UTF-8. Raises ValueError naming
    a field whose type (list, struct, binary…) has no JSON form here.
    """
    return b"".join(buffer.to_pybytes() for buffer in _jsonl_buffers(batch))


def _jsonl_buffers(batch: pa.RecordBatch) -> Iterator[pa.Buffer]:
    if batch.num_columns == 0:
        if batch.num_rows:
            yield pa.py_buffer(b"{}\n" * batch.num_rows)
        return
    keys = [json.dumps(name, ensure_ascii=False) for name in batch.schema.names]
    for start in range(0, batch.num_rows, JSONL_SLICE_ROWS):
        yield _encode_lines(batch.slice(start, JSONL_SLICE_ROWS), keys)


def _encode_lines(batch: pa.RecordBatch, keys: list[str]) -> pa.Buffer:
    """One buffer holding the lines of a slice, built by one variadic join over all columns."""
    pieces: list[Any] = []
    literal = "{"
    for i, (field, column) in enumerate(zip(batch.schema, batch.columns)):
        text, before, after = _json_text(field.name, column)
        pieces += [literal + ("," if i else "") + keys[i] + ":" + before, text]
        literal = after
    pieces.append(literal + "}\n")
    lines = pc.binary_join_element_wise(*pieces, "")
    _, offsets, data = lines.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int32)[[lines.offset, lines.offset + len(lines)]]
    return data.slice(int(bounds[0]), int(bounds[1] - bounds[0]))


def _json_text(name: str, column: pa.Array) -> tuple[pa.Array, str, str]:
    """A column as non-null JSON text, plus literals the line joiner must put around each value.

    A column without nulls leaves its quotes to the joiner's literals, which saves a join.
    """
    kind = column.type
    if pa.types.is_dictionary(kind):
        return _json_text(name, column.dictionary_decode())
    if pa.types.is_null(kind):
        return pc.fill_null(pa.nulls(len(column), pa.string()), "null"), "", ""
    if pa.types.is_boolean(kind) or pa.types.is_integer(kind) or pa.types.is_decimal(kind):
        return pc.fill_null(pc.cast(column, pa.string()), "null"), "", ""
    if pa.types.is_floating(kind):
        return _float_text(column), "", ""
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _quoted(_escaped(pc.cast(column, pa.string())))
    if pa.types.is_timestamp(kind):
        return _quoted(_iso_text(column), "Z")
    if pa.types.is_date(kind) or pa.types.is_time(kind):
        return _quoted(pc.cast(column, pa.string()))
    raise InvalidInput(f'field "{name}": type {kind} cannot be written as JSON lines')


def _quoted(text: pa.Array, suffix: str = "") -> tuple[pa.Array, str, str]:
    if text.null_count == 0:
        return text, '"', suffix + '"'
    return pc.fill_null(pc.binary_join_element_wise('"', text, suffix + '"', ""), "null"), "", ""


def _float_text(column: pa.Array) -> pa.Array:
    if pa.types.is_float16(column.type):
        column = pc.cast(column, pa.float32())
    text = pc.cast(column, pa.string())  # shortest text that reads back as the same value
    finite = pc.is_finite(column)
    if not pc.all(finite).as_py():
        text = pc.if_else(finite, text, None)  # JSON has no NaN or infinity
    integral = pc.equal(pc.floor(column), column)
    if pc.any(integral).as_py():
        # pyarrow writes 1.0 as "1": add ".0" so readers that infer types still see a float.
        integral = pc.and_(integral, pc.invert(pc.match_substring(text, "e")))
        text = pc.if_else(integral, pc.binary_join_element_wise(text, ".0", ""), text)
    return pc.fill_null(text, "null")


def _escaped(column: pa.Array) -> pa.Array:
    """JSON string escaping, applied only to the rows that need it (usually none)."""
    if not _has_escapable_bytes(column):
        return column
    needs = pc.match_substring_regex(column, _NEEDS_ESCAPE)
    rows = pc.filter(column, needs)
    rows = pc.replace_substring(rows, "\\", "\\\\")  # first, so added backslashes stay single
    rows = pc.replace_substring(rows, '"', '\\"')
    control = pc.match_substring_regex(rows, _CONTROL)
    if pc.any(control).as_py():
        some = pc.filter(rows, control)
        for char, escape in _CONTROL_ESCAPES.items():
            some = pc.replace_substring(some, char, escape)
        rows = pc.replace_with_mask(rows, control, some)
    return pc.replace_with_mask(column, needs, rows)


def _has_escapable_bytes(column: pa.Array) -> bool:
    """Whether any byte of the strings is a quote, backslash or control character.

    A NumPy scan of the UTF-8 bytes is ~10× cheaper than the regex match per row, and almost all
    batches need no escaping at all. UTF-8 never uses these byte values inside other characters.
    """
    _, offsets, data = column.buffers()
    if data is None or len(column) == 0:
        return False
    bounds = np.frombuffer(offsets, dtype=np.int32)[[column.offset, column.offset + len(column)]]
    chars = np.frombuffer(data, dtype=np.uint8)[bounds[0]:bounds[1]]
    return bool(((chars < 0x20) | (chars == 0x22) | (chars == 0x5C)).any())


def _iso_text(column: pa.Array) -> pa.Array:
    """Timestamps as ISO-8601 text without the zone letter ("2023-11-14T22:13:20.000001")."""
    naive = pc.cast(column, pa.timestamp(column.type.unit))  # a zoned value's UTC wall time
    # Casting to string is ~50× faster than strftime; it only puts a space where ISO wants a T.
    return pc.replace_substring(pc.cast(naive, pa.string()), " ", "T", max_replacements=1)


class Writer:
    """Writes batches of one schema to a file or binary stream; a context manager.

    `write` conforms each batch to the writer's schema first (SchemaMismatch if it cannot). `close`
    finishes the file (a Parquet footer) and closes it only if the writer opened it: a stream
    passed in, such as stdout, stays open.
    """

    def __init__(self, schema: pa.Schema, conform: Conform) -> None:
        self.schema = schema
        self._conform = conform
        self._closed = False

    def write(self, batch: pa.RecordBatch) -> None:
        """Append the batch's rows (a Table is taken too)."""
        if self._closed:
            raise ValueError("write to a closed writer")
        for part in batch.to_batches() if isinstance(batch, pa.Table) else [batch]:
            self._write(self._conform(part, self.schema))

    def close(self) -> None:
        """Flush and finish the file; safe to call twice."""
        if not self._closed:
            self._closed = True
            self._close()

    def _write(self, batch: pa.RecordBatch) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class _JsonlWriter(Writer):
    def __init__(self, target: str | Path | BinaryIO, schema: pa.Schema, conform: Conform) -> None:
        super().__init__(schema, conform)
        self._owned = isinstance(target, (str, Path))
        # The writer owns a file it opened, until close().
        self._file: BinaryIO = open(target, "wb") if isinstance(target, (str, Path)) else target  # noqa: SIM115

    def _write(self, batch: pa.RecordBatch) -> None:
        for buffer in _jsonl_buffers(batch):
            self._file.write(memoryview(buffer))

    def _close(self) -> None:
        self._file.flush()
        if self._owned:
            self._file.close()


class _CsvWriter(Writer):
    """CSV with a header row; timestamps as ISO-8601 UTC text like the JSON lines."""

    def __init__(self, target: str | Path | BinaryIO, schema: pa.Schema, conform: Conform) -> None:
        super().__init__(schema, conform)
        self._times = [i for i, f in enumerate(schema) if pa.types.is_timestamp(f.type)]
        text_schema = schema
        for i in self._times:
            text_schema = text_schema.set(i, schema.field(i).with_type(pa.string()))
        sink = str(target) if isinstance(target, Path) else target
        self._writer = pa_csv.CSVWriter(sink, text_schema)

    def _write(self, batch: pa.RecordBatch) -> None:
        for i in self._times:
            text = pc.binary_join_element_wise(_iso_text(batch.column(i)), "Z", "")
            batch = batch.set_column(i, batch.schema.field(i).with_type(pa.string()), text)
        self._writer.write_batch(batch)

    def _close(self) -> None:
        self._writer.close()


class _ParquetWriter(Writer):
    """Parquet in row groups of ROW_GROUP_ROWS, buffering at most that many rows."""

    def __init__(self, target: str | Path | BinaryIO, schema: pa.Schema, conform: Conform) -> None:
        super().__init__(schema, conform)
        # Dictionary-encode only text: trying it on numbers costs 3x the whole write and rarely
        # pays off for event data.
        text = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
        self._writer = pq.ParquetWriter(str(target) if isinstance(target, Path) else target, schema,
                                        use_dictionary=text, compression="snappy")
        self._pending: list[pa.RecordBatch] = []
        self._rows = 0

    def _write(self, batch: pa.RecordBatch) -> None:
        self._pending.append(batch)
        self._rows += batch.num_rows
        if self._rows >= ROW_GROUP_ROWS:
            table = pa.Table.from_batches(self._pending, self.schema)
            while table.num_rows >= ROW_GROUP_ROWS:
                self._writer.write_table(table.slice(0, ROW_GROUP_ROWS), row_group_size=ROW_GROUP_ROWS)
                table = table.slice(ROW_GROUP_ROWS)
            self._pending, self._rows = table.to_batches(), table.num_rows

    def _close(self) -> None:
        if self._rows:
            self._writer.write_table(pa.Table.from_batches(self._pending, self.schema),
                                     row_group_size=ROW_GROUP_ROWS)
        self._pending, self._rows = [], 0
        self._writer.close()


class _ArrowWriter(Writer):
    """The Arrow IPC file format (Feather v2, uncompressed): the batches as they are, readable
    zero-copy with `pyarrow.ipc.open_file` or memory-mapped; the cheapest way out (~6× Parquet)."""

    def __init__(self, target: str | Path | BinaryIO, schema: pa.Schema, conform: Conform) -> None:
        super().__init__(schema, conform)
        self._writer = pa.ipc.new_file(str(target) if isinstance(target, Path) else target, schema)

    def _write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)

    def _close(self) -> None:
        self._writer.close()


_WRITERS: dict[str, Callable[[Any, pa.Schema, Conform], Writer]] = {
    "jsonl": _JsonlWriter, "csv": _CsvWriter, "parquet": _ParquetWriter, "arrow": _ArrowWriter}


def open_writer(target: str | Path | BinaryIO, fmt: str, schema: pa.Schema) -> Writer:
    """A Writer of `fmt` (jsonl, csv, parquet or arrow) for batches of `schema` into a path or stream.

    A path is created or truncated. Raises ValueError for another format.
    """
    # Imported here, not at the top, because hallelujah.formats imports this module.
    from hallelujah.formats import conform

    if fmt not in _WRITERS:
        raise InvalidInput(f'cannot write format "{fmt}" (can write: {", ".join(WRITE_FORMATS)})')
    return _WRITERS[fmt](target, schema, conform)
