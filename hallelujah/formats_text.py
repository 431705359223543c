"""Reading CSV and JSON-lines text: whole blocks parsed by pyarrow, a failing block row by row.

The fast path is pyarrow's own block parse with the stream's types, as fast as pyarrow reads.
Only a block that fails is read again so that just its bad rows are set apart: a bounded CSV file
is read as text from that block on (each column is then cast, its bad values found by halving), a
JSON-lines block is halved line by line until the lines pyarrow refuses are alone, and a CSV row
with the wrong number of fields is skipped by pyarrow's invalid-row handler. Every such row becomes
a reject whose reason names its line (or row) and field. pyarrow's own messages quote the file's
text, so none is ever passed on (`unreadable`): a message names where, never what.
"""
from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json

from hallelujah.conform import Raw, rows_from, type_name
from hallelujah.errors import SchemaMismatch

_MIN_BLOCK, _MAX_BLOCK = 1 << 20, 1 << 28
MAX_MALFORMED = 100_000     # CSV rows with the wrong number of fields kept as rejects, per file


# ---- messages that never quote the file -------------------------------------------------------

def unreadable(path: Path, error: Exception, names: list[str] | None = None,
               schema: pa.Schema | None = None) -> SchemaMismatch:
    """A SchemaMismatch naming the file and, where pyarrow's message tells them, the row and
    field at fault; pyarrow's text itself (which quotes the row) is never passed on."""
    return SchemaMismatch(f"{path}: {fault(str(error), names, schema)}")


def fault(text: str, names: list[str] | None = None, schema: pa.Schema | None = None) -> str:
    """What a pyarrow parse error says, rebuilt from the parts that are not the file's text."""
    parts = []
    if m := re.search(r"Row #(\d+)", text):
        parts.append(f"row {m.group(1)}")
    name = None
    if m := re.search(r"Column\(/([^)]*)\)", text):
        name = m.group(1)
    elif (m := re.search(r"column #(\d+)", text)) and names and int(m.group(1)) < len(names):
        name = names[int(m.group(1))]
    if name is not None:
        expected = schema.field(name).type if schema is not None and name in schema.names else None
        parts.append(f'field "{name}"' + (f": expected {type_name(expected)}" if expected is not None else
                                          ": its values are not all of one type"))
    if m := re.search(r"Expected (\d+) columns?, got (\d+)", text):
        parts.append(f"a row has {m.group(2)} fields where the header has {m.group(1)}")
    elif name is None:
        parts.append("not valid CSV" if "CSV" in text else "not valid JSON lines" if "JSON" in text
                     else "cannot be read")
    return ": ".join(parts)


def lines_at(chunk: bytes | memoryview, first_line: int, skipped: set[int] | frozenset[int] = frozenset(),
             blank: Callable[[bytes], bool] = lambda line: not line.strip()) -> Callable[[int], str]:
    """Where row i of a chunk of whole lines is: "line N" of the file, the chunk starting after
    `first_line` lines; blank lines and `skipped` ones (1-based in the chunk) hold no row. The
    lines are only counted when a row is asked about, which only a reject does."""
    lines: list[int] = []

    def at(i: int) -> str:
        if not lines:
            lines.extend(k for k, text in enumerate(bytes(chunk).split(b"\n"), start=1)
                         if not blank(text) and k not in skipped)
        return f"line {first_line + lines[i]}" if i < len(lines) else f"row {i + 1} after line {first_line}"
    return at


def _csv_blank(line: bytes) -> bool:
    return line in (b"", b"\r")


# ---- CSV ---------------------------------------------------------------------------------------

def csv_convert(schema: pa.Schema | None = None, text: bool = False) -> pa_csv.ConvertOptions:
    """How CSV cells become values.

    Only the empty unquoted cell is null, and a quoted "" is an empty string: exactly what
    CSVWriter writes, so a round trip keeps nulls and empty strings apart, and text such as "NA"
    or "null" stays text. Timestamps are read as text and parsed by `conform`, which also accepts
    a zone suffix or epoch numbers that pyarrow's CSV parser would refuse; `text` reads every
    field as text (the slow path, whose values are then cast one column at a time).
    """
    types = None
    if schema is not None:
        types = {f.name: pa.string() if text or pa.types.is_timestamp(f.type) else f.type for f in schema}
    return pa_csv.ConvertOptions(column_types=types, null_values=[""], strings_can_be_null=True,
                                 quoted_strings_can_be_null=False)


class _Malformed:
    """pyarrow's invalid-row handler: skips a row with the wrong number of fields, keeping why,
    once per line however often the file is read. pyarrow parses ahead on its own thread, so when
    it meets such a row says nothing of the batch the row belongs to: a bounded file's are given
    together at its end, always the same, so a restarted source keeps each exactly once. At most
    `MAX_MALFORMED` are kept: a file with more has the wrong shape altogether and fails."""

    def __init__(self) -> None:
        self.rows: dict[object, str] = {}
        self.more = False

    def __call__(self, row: Any) -> str:
        if len(self.rows) >= MAX_MALFORMED:
            self.more = True
        else:
            where = f"line {row.number}: " if row.number is not None else ""
            key = row.number if row.number is not None else ("unnumbered", len(self.rows))
            self.rows.setdefault(key, f"{where}a row has {row.actual_columns} fields where the header has "
                                      f"{row.expected_columns}")
        return "skip"

    def take(self, path: Path) -> list[str]:
        if self.more:
            raise SchemaMismatch(f"{path}: more than {MAX_MALFORMED:,} rows have another number of fields "
                                 f"than the header (the first: {next(iter(self.rows.values()))})")
        order = sorted(self.rows, key=lambda k: (0, k) if isinstance(k, int) else (1, k[1]))  # type: ignore[index]
        taken = [self.rows[k] for k in order]
        self.rows = {}
        return taken


def _open_csv(source: Path | io.BytesIO, block: int, convert: pa_csv.ConvertOptions, handler: Any,
              names: list[str] | None = None, multiline: bool = True) -> pa_csv.CSVStreamingReader:
    # newlines_in_values: CSVWriter quotes a string holding a newline, so a record can span lines.
    # One thread: as fast here, and the handler's calls come in a fixed order.
    return pa_csv.open_csv(source, read_options=pa_csv.ReadOptions(block_size=block, use_threads=False,
                                                                  column_names=names),
                           parse_options=pa_csv.ParseOptions(newlines_in_values=multiline,
                                                             invalid_row_handler=handler),
                           convert_options=convert)


def csv_raws(path: Path, schema: pa.Schema | None, block: int) -> Iterator[Raw]:
    """A CSV file block by block with the stream's types; from a block pyarrow cannot convert
    on, as text (the blocks before are skipped: the same bytes make the same blocks). Rows with
    the wrong number of fields come last (see `_Malformed`).

    Without a schema there is nothing to set a row apart from: any fault fails the read. Rows
    are numbered from the first after the header, counting those with the right number of fields.
    """
    if schema is None:
        try:
            with _open_csv(path, block, csv_convert(), None) as reader:
                rows = 0
                for batch in reader:
                    yield Raw(batch, rows_from(rows))
                    rows += batch.num_rows
        except pa.ArrowInvalid as e:
            raise unreadable(path, e, header(path)) from None
        return
    malformed = _Malformed()
    given = 0
    try:
        for raw in _csv_blocks(path, block, schema, malformed, text=False):
            yield raw
            given += 1
    except pa.ArrowInvalid:      # a value the typed parse refused: read on as text
        for k, raw in enumerate(_csv_blocks(path, block, schema, malformed, text=True)):
            if k >= given:
                yield raw
    unread = malformed.take(path)
    if unread:
        yield Raw(pa.RecordBatch.from_pylist([], schema=schema), rows_from(0), unread=unread)


def _csv_blocks(path: Path, block: int, schema: pa.Schema, malformed: _Malformed, text: bool) -> Iterator[Raw]:
    rows = 0
    try:
        with _open_csv(path, block, csv_convert(schema, text), malformed) as reader:
            for batch in reader:
                yield Raw(batch, rows_from(rows), text=text)
                rows += batch.num_rows
    except pa.ArrowInvalid as e:
        if not text:
            raise
        raise unreadable(path, e, header(path), schema) from None     # not even as text


def csv_chunk(path: Path, chunk: bytes, names: list[str], schema: pa.Schema, first_line: int) -> Raw:
    """Whole lines of a followed CSV file (no quoted newlines) after `first_line` lines: typed,
    else as text."""
    for text in (False, True):
        malformed = _Malformed()
        try:
            with _open_csv(io.BytesIO(chunk), max(len(chunk) + 1, _MIN_BLOCK), csv_convert(schema, text),
                           malformed, names, multiline=False) as reader:
                table = reader.read_all()
        except pa.ArrowInvalid as e:
            if text:
                raise unreadable(path, e, names, schema) from None
            continue
        skipped = {k for k in malformed.rows if isinstance(k, int)}
        reasons = [re.sub(r"^line (\d+)", lambda m: f"line {first_line + int(m.group(1))}", r)
                   for r in malformed.take(path)]
        return Raw(_one_batch(table), lines_at(chunk, first_line, skipped, _csv_blank), text=text, unread=reasons)
    raise AssertionError("unreachable: the text parse returns or raises")


def header(path: Path) -> list[str]:
    """The field names of a CSV file's first line."""
    with open(path, "rb") as f:
        line = f.readline()
    return pa_csv.read_csv(io.BytesIO(line)).column_names if line.strip() else []


# ---- JSON lines --------------------------------------------------------------------------------

def json_parse(schema: pa.Schema | None) -> pa_json.ParseOptions:
    # A timestamp field is left for pyarrow to infer (numbers or text, chunk by chunk) and for
    # `conform` to convert.
    if schema is None:
        return pa_json.ParseOptions()
    fields = [f for f in schema if not pa.types.is_timestamp(f.type)]
    return pa_json.ParseOptions(explicit_schema=pa.schema(fields), unexpected_field_behavior="infer")


def line_chunks(path: Path, block: int) -> Iterator[tuple[memoryview, int]]:
    """The file in chunks of about `block` bytes cut after a newline (a last line without one
    comes alone at the end), each with the newlines it holds. A chunk is a view of what was read:
    the part line after the cut is read again with the next one, never copied."""
    with open(path, "rb") as f:
        while data := f.read(block):
            while (cut := data.rfind(b"\n") + 1) == 0 and (more := f.read(block)):
                data += more            # a line longer than a block: read on to its end
            if 0 < cut < len(data):
                f.seek(cut - len(data), io.SEEK_CUR)
            else:
                cut = len(data)
            yield memoryview(data)[:cut], data.count(b"\n", 0, cut)


def jsonl_chunk(path: Path, chunk: bytes | memoryview, schema: pa.Schema | None, first_line: int) -> list[Raw]:
    """Whole JSON lines after `first_line` lines: one parse, else halves until the lines pyarrow
    refuses are alone (each then a reject of nulls, naming its line)."""
    try:
        return [Raw(_json_batch(chunk, schema), lines_at(chunk, first_line))]
    except pa.ArrowInvalid as e:
        if schema is None:
            raise unreadable(path, e) from None
    return list(_json_halves(bytes(chunk).split(b"\n"), schema, first_line))


def _json_halves(lines: list[bytes], schema: pa.Schema, first_line: int) -> Iterator[Raw]:
    chunk = b"\n".join(lines)
    try:
        yield Raw(_json_batch(chunk, schema), lines_at(chunk, first_line))
        return
    except pa.ArrowInvalid as e:
        if len(lines) == 1:
            reason = f"line {first_line + 1}: {fault(str(e), schema=schema)}"
            yield Raw(pa.RecordBatch.from_pylist([], schema=schema), lines_at(b"", first_line), unread=[reason])
            return
    half = len(lines) // 2
    yield from _json_halves(lines[:half], schema, first_line)
    yield from _json_halves(lines[half:], schema, first_line + half)


def _json_batch(chunk: bytes | memoryview, schema: pa.Schema | None) -> pa.RecordBatch:
    if len(chunk) < 4096 and not bytes(chunk).strip():     # blank lines hold no row (pyarrow: no JSON)
        return pa.RecordBatch.from_pylist([], schema=schema or pa.schema([]))
    block = min(max(len(chunk) + 1, _MIN_BLOCK), _MAX_BLOCK)
    table = pa_json.read_json(pa.BufferReader(pa.py_buffer(chunk)), read_options=pa_json.ReadOptions(block_size=block),
                              parse_options=json_parse(schema))
    batch = _one_batch(table)
    return batch if schema is None else add_absent(batch, schema)


def add_absent(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """In JSON an absent key means null: add the schema's fields a block never mentioned."""
    for f in schema:
        if f.name not in batch.schema.names:
            batch = batch.append_column(f.name, pa.nulls(batch.num_rows, f.type))
    return batch


def _one_batch(table: pa.Table) -> pa.RecordBatch:
    batches = table.combine_chunks().to_batches()
    return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=table.schema)
