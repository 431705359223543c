"""Files in and out: the formats a stream or dataset is read from and an output is written to.

Everything here works on whole Arrow batches: pyarrow parses and formats, Python only steers.
Reading a file (`read_batches`) is bounded; `follow_batches` tails a growing csv or jsonl file.
Data is made to fit a stream's schema by `conform`, which refuses what it cannot cast safely with a
`SchemaMismatch` naming the field. Writers (`open_writer`, `batch_to_jsonl`) live in
`formats_write` and are re-exported here.
"""
from __future__ import annotations

import io
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq
import trio

from hallelujah.errors import InvalidInput, NotFound, SchemaMismatch
from hallelujah.formats_write import WRITE_FORMATS, Writer, batch_to_jsonl, open_writer

READ_FORMATS = ("parquet", "csv", "jsonl", "sqlite", "arrow")
BATCH_ROWS = 65536
"""Rows per batch read from a file: large enough that per-batch overheads are noise."""

FOLLOW_CHUNK_BYTES = 16 << 20
"""Most bytes `follow_batches` parses at once, so catching up on a large file stays bounded."""

_EXTENSIONS = {
    ".parquet": "parquet", ".pq": "parquet", ".csv": "csv",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
    ".sqlite": "sqlite", ".db": "sqlite", ".sqlite3": "sqlite",
    ".arrow": "arrow", ".feather": "arrow", ".ipc": "arrow",
}
_MIN_BLOCK, _MAX_BLOCK = 1 << 20, 1 << 28
_ZONED = r"(?:[Zz]|[+-]\d\d:?\d\d)$"
_EPOCH = r"^\s*-?\d+\s*$"

Data = TypeVar("Data", pa.RecordBatch, pa.Table)


def format_of(path: str | Path, explicit: str | None = None) -> str:
    """Name the format of `path`: `explicit` when given, else from the file extension.

    Raises ValueError naming the path when neither says a known format.
    """
    if explicit is not None:
        named = {"json": "jsonl", "ndjson": "jsonl"}.get(explicit.lower(), explicit.lower())
        if named not in READ_FORMATS:
            raise InvalidInput(f'{path}: unknown format "{explicit}" (known: {", ".join(READ_FORMATS)})')
        return named
    fmt = _EXTENSIONS.get(Path(path).suffix.lower())
    if fmt is None:
        raise InvalidInput(
            f"{path}: cannot tell the format from the extension; name it "
            f"({', '.join(READ_FORMATS)})"
        )
    return fmt


def _path_of(source: dict[str, Any]) -> Path:
    """The existing file a source names; NotFound if it does not exist."""
    if "path" not in source:
        raise InvalidInput("source has no path")
    path = Path(source["path"])
    if not path.is_file():
        raise NotFound(f"source file {str(path)!r} does not exist")
    return path


def source_schema(source: dict[str, Any]) -> pa.Schema:
    """The schema a source's file has, as far as the file itself says.

    Parquet: its metadata. csv/jsonl: types pyarrow infers from the first block (up to 1 MiB), so a
    column that changes later is only caught when read. sqlite: the declared column types, and the
    rows' own types where the declaration says nothing definite. Raises NotFound for a missing file.
    """
    path = _path_of(source)
    fmt = format_of(path, source.get("format"))
    if fmt == "parquet":
        return pq.read_schema(path).remove_metadata()
    if fmt == "arrow":
        with _open_arrow(path) as reader:
            return reader.schema.remove_metadata()
    if fmt == "sqlite":
        with closing(_connect(path)) as con:
            return _sqlite_schema(con, path, _table_of(source))
    if path.stat().st_size == 0:
        return pa.schema([])
    try:
        if fmt == "csv":
            reader = pa_csv.open_csv(path, parse_options=pa_csv.ParseOptions(newlines_in_values=True),
                                     convert_options=_csv_convert())
        else:
            reader = pa_json.open_json(path, read_options=pa_json.ReadOptions(block_size=_MIN_BLOCK))
        with reader:
            return reader.schema
    except pa.ArrowInvalid as e:
        raise SchemaMismatch(f"{path}: {e}") from None


def read_batches(
    source: dict[str, Any], schema: pa.Schema | None = None, batch_rows: int = BATCH_ROWS
) -> Iterator[pa.RecordBatch]:
    """Read a whole file as batches of at most `batch_rows` rows, conformed to `schema` if given.

    Memory stays bounded by a batch or a parse block, whatever the file size; an empty file yields
    no batch. Raises NotFound for a missing file at once, and SchemaMismatch (naming the field)
    while iterating when the data does not fit `schema`.
    """
    path = _path_of(source)
    fmt = format_of(path, source.get("format"))
    batches: Iterator[pa.RecordBatch]
    if fmt == "sqlite":
        batches = _read_sqlite(path, _table_of(source), batch_rows)
    elif fmt == "parquet":
        batches = _read_parquet(path, batch_rows)
    elif fmt == "arrow":
        batches = _read_arrow(path)
    else:
        batches = _read_text(path, fmt, schema, batch_rows)
    return _sliced(path, batches, schema, batch_rows)


def _sliced(path: Path, batches: Iterator[pa.RecordBatch], schema: pa.Schema | None, batch_rows: int
            ) -> Iterator[pa.RecordBatch]:
    try:
        for batch in batches:
            # A parse block is sized in bytes, so it can hold more rows than asked: slice it
            # (zero-copy). Empty batches carry nothing.
            for start in range(0, batch.num_rows, batch_rows):
                part = batch.slice(start, batch_rows)
                yield part if schema is None else conform(part, schema)
    except pa.ArrowInvalid as e:
        raise _named_mismatch(path, e, schema) from None


def _read_parquet(path: Path, batch_rows: int) -> Iterator[pa.RecordBatch]:
    # pre_buffer=True (pyarrow's default) keeps every row group read so far in memory: the whole
    # file by the end. Without it, memory stays at a batch or two, and reading is 3x faster.
    with pq.ParquetFile(path, pre_buffer=False) as file:
        yield from file.iter_batches(batch_size=batch_rows)


def _open_arrow(path: Path) -> pa.ipc.RecordBatchFileReader:
    try:
        return pa.ipc.open_file(pa.memory_map(str(path)))
    except pa.ArrowInvalid as e:
        raise SchemaMismatch(f"{path}: not an Arrow IPC file: {e}") from None


def _read_arrow(path: Path) -> Iterator[pa.RecordBatch]:
    # memory-mapped: each batch is read zero-copy, and pages come in only as they are used
    with _open_arrow(path) as reader:
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)


def _csv_convert(schema: pa.Schema | None = None) -> pa_csv.ConvertOptions:
    # Only the empty unquoted cell is null, and a quoted "" is an empty string: exactly what
    # CSVWriter writes, so a round trip keeps nulls and empty strings apart, and text such as
    # "NA" or "null" stays text. Timestamps are read as text and parsed by `conform`, which also
    # accepts a zone suffix or epoch numbers that pyarrow's CSV parser would refuse.
    types = None
    if schema is not None:
        types = {f.name: pa.string() if pa.types.is_timestamp(f.type) else f.type for f in schema}
    return pa_csv.ConvertOptions(
        column_types=types, null_values=[""], strings_can_be_null=True,
        quoted_strings_can_be_null=False,
    )


def _json_parse(schema: pa.Schema | None, timestamp_types: dict[str, pa.DataType] | None = None
                ) -> pa_json.ParseOptions:
    # A timestamp field is typed only once the first block showed whether it holds numbers or
    # text (`timestamp_types`); otherwise pyarrow infers it and `conform` converts.
    if schema is None:
        return pa_json.ParseOptions()
    fields = [f for f in schema if not pa.types.is_timestamp(f.type)]
    fields += [pa.field(n, t) for n, t in (timestamp_types or {}).items()]
    return pa_json.ParseOptions(explicit_schema=pa.schema(fields), unexpected_field_behavior="infer")


def _block_size(path: Path, batch_rows: int) -> int:
    """A parse block holding about `batch_rows` lines, judged from the first MiB of the file."""
    with open(path, "rb") as f:
        sample = f.read(_MIN_BLOCK)
    per_line = len(sample) / max(sample.count(b"\n"), 1)
    return int(min(max(per_line * batch_rows * 1.1, _MIN_BLOCK), _MAX_BLOCK))


def _read_text(path: Path, fmt: str, schema: pa.Schema | None, batch_rows: int
               ) -> Iterator[pa.RecordBatch]:
    if path.stat().st_size == 0:
        return
    block = _block_size(path, batch_rows)
    if fmt == "csv":
        # newlines_in_values: CSVWriter quotes a string holding a newline, so a record can span lines.
        reader = pa_csv.open_csv(path, read_options=pa_csv.ReadOptions(block_size=block),
                                 parse_options=pa_csv.ParseOptions(newlines_in_values=True),
                                 convert_options=_csv_convert(schema))
    else:
        options = pa_json.ReadOptions(block_size=block)
        ts_types = None
        if schema is not None:
            # Peek at the first block to fix each timestamp field's raw type for the whole file.
            with pa_json.open_json(path, read_options=options, parse_options=_json_parse(schema)) as peek:
                ts_types = {f.name: _raw_timestamp_type(peek.schema, f.name)
                            for f in schema if pa.types.is_timestamp(f.type)}
        reader = pa_json.open_json(path, read_options=options,
                                   parse_options=_json_parse(schema, ts_types))
    with reader:
        for batch in reader:
            yield batch if schema is None or fmt != "jsonl" else _add_absent(batch, schema)


def _raw_timestamp_type(inferred: pa.Schema, name: str) -> pa.DataType:
    index = inferred.get_field_index(name)
    if index >= 0 and pa.types.is_integer(inferred.field(index).type):
        return pa.int64()
    return pa.string()


def _add_absent(batch: Data, schema: pa.Schema) -> Data:
    """In JSON an absent key means null: add the schema's fields a block never mentioned."""
    missing = [f for f in schema if f.name not in batch.schema.names]
    for f in missing:
        batch = batch.append_column(f.name, pa.nulls(batch.num_rows, f.type))
    return batch


def _named_mismatch(path: Path, error: Exception, schema: pa.Schema | None) -> SchemaMismatch:
    """Turn a pyarrow parse error into a SchemaMismatch that names the field when it can."""
    text = str(error)
    m = re.search(r"Column\((/[^)]*)\)", text) or re.search(r"column #(\d+)", text)
    if m and m.group(1).startswith("/"):
        text = f'field "{m.group(1)[1:]}": {text}'
    elif m and schema is not None and int(m.group(1)) < len(_header(path)):
        name = _header(path)[int(m.group(1))]
        expected = _type_name(schema.field(name).type) if name in schema.names else "?"
        text = f'field "{name}": expected {expected}: {text}'
    return SchemaMismatch(f"{path}: {text}")


def _header(path: Path) -> list[str]:
    with open(path, "rb") as f:
        line = f.readline()
    return pa_csv.read_csv(io.BytesIO(line)).column_names if line.strip() else []


# ---- sqlite ------------------------------------------------------------------------------------

def _table_of(source: dict[str, Any]) -> str:
    if not source.get("table"):
        raise InvalidInput(f"source {source.get('path')}: a sqlite source needs a table")
    return str(source["table"])


def _connect(path: Path) -> sqlite3.Connection:
    # Read-only: a source is never written. check_same_thread off: a reader pulls batches with
    # trio.to_thread.run_sync, one at a time but not always from the same thread.
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_SAMPLE_ROWS = 1000
_SQLITE_TYPES = {"integer": pa.int64(), "real": pa.float64(), "text": pa.string(), "blob": pa.binary()}


def _sqlite_schema(con: sqlite3.Connection, path: Path, table: str) -> pa.Schema:
    columns = con.execute(f"PRAGMA table_info({_quote(table)})").fetchall()
    if not columns:
        raise NotFound(f'{path}: no table "{table}"')
    fields = []
    for _, name, declared, *_ in columns:
        decl = (declared or "").upper()
        if "INT" in decl:
            t = pa.int64()
        elif any(k in decl for k in ("CHAR", "CLOB", "TEXT")):
            t = pa.string()
        elif any(k in decl for k in ("REAL", "FLOA", "DOUB")):
            t = pa.float64()
        elif "BOOL" in decl:
            t = pa.bool_()
        else:  # BLOB, NUMERIC, DATE…, or nothing: sqlite stores whatever it was given, so look.
            t = _sampled_type(con, table, name, decl)
        fields.append(pa.field(name, t))
    return pa.schema(fields)


def _sampled_type(con: sqlite3.Connection, table: str, name: str, decl: str) -> pa.DataType:
    kinds = {k for (k,) in con.execute(
        f"SELECT DISTINCT typeof({_quote(name)}) FROM "
        f"(SELECT {_quote(name)} FROM {_quote(table)} LIMIT {_SAMPLE_ROWS})")} - {"null"}
    if kinds == {"text"} and ("DATE" in decl or "TIME" in decl):
        return pa.timestamp("us")
    if kinds <= {"integer", "real"} and "real" in kinds:
        return pa.float64()
    return _SQLITE_TYPES[kinds.pop()] if len(kinds) == 1 else pa.string()


def _read_sqlite(path: Path, table: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
    with closing(_connect(path)) as con:
        schema = _sqlite_schema(con, path, table)
        # A text field may hold numbers too (sqlite types are per value): let sqlite make them text.
        columns = [f"CAST({_quote(f.name)} AS TEXT)" if f.type == pa.string() else _quote(f.name)
                   for f in schema]
        cursor = con.execute(f"SELECT {', '.join(columns)} FROM {_quote(table)}")
        # sqlite3 hands out rows of Python values; zip(*rows) turns them into columns in C, and
        # pa.array converts each column at once.
        while rows := cursor.fetchmany(batch_rows):
            yield pa.RecordBatch.from_arrays(
                [_sqlite_array(path, f, col) for f, col in zip(schema, zip(*rows))], schema=schema)


def _sqlite_array(path: Path, field: pa.Field, values: tuple[Any, ...]) -> pa.Array:
    """One column of fetched rows as an array of the field's type (sqlite types are per value)."""
    raw = pa.int64() if field.type == pa.bool_() else (
        pa.string() if pa.types.is_timestamp(field.type) else field.type)
    try:
        array = pa.array(values, type=raw)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError) as e:
        raise SchemaMismatch(f'{path}: field "{field.name}": expected {_type_name(raw)}: {e}') from None
    if field.type == pa.bool_():
        return pc.cast(array, pa.bool_())
    return array if raw == field.type else _cast_field(field.name, array, field.type)


# ---- conform -----------------------------------------------------------------------------------

def conform(data: Data, schema: pa.Schema) -> Data:
    """Make `data` exactly `schema`: its fields in the schema's order, each safely cast.

    Allowed casts: integers to narrower ones when every value fits, integers to floats when exact,
    float widening, ISO-8601 strings (naive ones are UTC; a zone suffix is converted to UTC;
    all-digit text counts as epoch numbers) and integers (epoch values in the target's unit) to
    timestamps, timestamps between units (finer digits are dropped) and time zones (to UTC wall
    time), dictionaries to their values, all-null columns to anything. Raises SchemaMismatch naming
    the field for a missing or extra field, an impossible cast, or a null in a non-nullable field.
    """
    if data.schema.equals(schema):
        return data
    names = data.schema.names
    extra = [n for n in names if n not in schema.names]
    if extra:
        raise SchemaMismatch(f'field "{extra[0]}" is not in the schema (it has: {", ".join(schema.names)})')
    columns = []
    for field in schema:
        if field.name not in names:
            raise SchemaMismatch(f'field "{field.name}" is missing (expected {_type_name(field.type)})')
        column = _cast_field(field.name, data.column(field.name), field.type)
        if not field.nullable and column.null_count:
            raise SchemaMismatch(f'field "{field.name}": expected {_type_name(field.type)} without nulls, got nulls')
        columns.append(column)
    if isinstance(data, pa.Table):
        return pa.Table.from_arrays(columns, schema=schema)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


Column = TypeVar("Column", pa.Array, pa.ChunkedArray)
_FLOAT_NAMES = {pa.float16(): "float16", pa.float32(): "float32", pa.float64(): "float64"}


def _type_name(kind: pa.DataType) -> str:
    """An Arrow type as a tradecraft schema spells it (pyarrow itself says "double" for float64)."""
    return _FLOAT_NAMES.get(kind, str(kind))


def _cast_field(name: str, column: Column, target: pa.DataType) -> Column:
    source = column.type
    if source == target:
        return column
    if pa.types.is_dictionary(source):
        return _cast_field(name, pc.cast(column, source.value_type), target)
    mismatch = f'field "{name}": expected {_type_name(target)}, got {_type_name(source)}'
    try:
        if pa.types.is_null(source):
            return pc.cast(column, target)
        if pa.types.is_integer(target) and pa.types.is_integer(source):
            return pc.cast(column, target)  # safe: refuses values that do not fit
        if pa.types.is_floating(target) and (pa.types.is_integer(source) or pa.types.is_floating(source)):
            return pc.cast(column, target)
        if pa.types.is_timestamp(target):
            if pa.types.is_string(source) or pa.types.is_large_string(source):
                return _parse_timestamps(column, target)
            if pa.types.is_integer(source):
                return pc.cast(pc.cast(column, pa.int64()), target)
            if pa.types.is_timestamp(source) or pa.types.is_date(source):
                return pc.cast(column, options=pc.CastOptions(target, allow_time_truncate=True))
        if {source, target} <= {pa.string(), pa.large_string()}:
            return pc.cast(column, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise SchemaMismatch(f"{mismatch} ({e})") from None
    raise SchemaMismatch(mismatch)


def _parse_timestamps(text: Column, target: pa.DataType) -> Column:
    # pyarrow parses naive ISO text only into a naive type and zoned text only into a zoned one,
    # and a failed parse can cost 30x a good one: pick the parse from the cheap `ends_with` test
    # (our writers' form ends in Z), and split a mixed column only when that fails.
    zoned_type = pa.timestamp(target.unit, "UTC")
    utc = pc.ends_with(text, "Z")
    try:
        if pc.all(utc).as_py():
            return pc.cast(pc.cast(text, zoned_type), target)
        if not pc.any(utc).as_py():
            return pc.cast(text, target)
    except pa.ArrowInvalid:
        pass
    if pc.all(pc.match_substring_regex(text, _EPOCH)).as_py():
        return pc.cast(pc.cast(text, pa.int64()), target)
    zoned = pc.match_substring_regex(text, _ZONED)
    with_zone = pc.cast(pc.cast(pc.if_else(zoned, text, None), zoned_type), target)
    return pc.coalesce(with_zone, pc.cast(pc.if_else(zoned, None, text), target))


# ---- follow ------------------------------------------------------------------------------------

async def follow_batches(
    source: dict[str, Any], schema: pa.Schema, start_offset: int = 0, poll_interval: float = 0.2
) -> AsyncIterator[tuple[int, pa.RecordBatch]]:
    """Tail a growing csv or jsonl file: yield `(next_offset, batch)` for complete lines appended.

    Only whole lines (ending in a newline) past `start_offset` are read, so a half-written line is
    picked up once finished; `next_offset` is where to resume after that batch (for checkpoints).
    A csv file's header line is read first, whatever the offset. When nothing is new it sleeps
    `poll_interval` seconds. A file that shrinks was replaced: it is read again from its start.
    Runs until cancelled; file IO and parsing run in a worker thread. Raises NotFound if the file
    does not exist and SchemaMismatch if appended data does not fit `schema`.
    """
    path = _path_of(source)
    fmt = format_of(path, source.get("format"))
    if fmt not in ("csv", "jsonl"):
        raise InvalidInput(f"{path}: only csv and jsonl files can be followed, not {fmt}")
    tail = _Tail(path, fmt, schema, start_offset)
    while True:
        batch = await trio.to_thread.run_sync(tail.read_next)
        if batch is not None:
            yield tail.offset, batch
        elif not tail.progressed:
            await trio.sleep(poll_interval)


class _Tail:
    """The synchronous half of `follow_batches`: where it is in the file and how to parse."""

    def __init__(self, path: Path, fmt: str, schema: pa.Schema, offset: int) -> None:
        self.path, self.fmt, self.schema, self.offset = path, fmt, schema, offset
        self.names: list[str] | None = None  # csv header
        self.progressed = False

    def read_next(self) -> pa.RecordBatch | None:
        """Parse the complete lines past the offset, advancing it; None if there are none."""
        self.progressed = False
        if not self.path.is_file():
            raise NotFound(f"followed file {str(self.path)!r} does not exist")
        with open(self.path, "rb") as f:
            if f.seek(0, io.SEEK_END) < self.offset:
                self.offset, self.names = 0, None
            if self.fmt == "csv" and self.names is None and not self._read_header(f):
                return None
            f.seek(self.offset)
            chunk = f.read(FOLLOW_CHUNK_BYTES)
            end = chunk.rfind(b"\n") + 1
            while end == 0 and len(chunk) >= FOLLOW_CHUNK_BYTES:
                more = f.read(FOLLOW_CHUNK_BYTES)  # a line longer than a chunk: read it whole
                if not more:
                    break
                if (newline := more.rfind(b"\n")) >= 0:
                    end = len(chunk) + newline + 1
                chunk += more
        if end == 0:
            return None
        table = self._parse(chunk[:end])
        self.offset += end
        self.progressed = True
        if table.num_rows == 0:
            return None
        return conform(table, self.schema).combine_chunks().to_batches()[0]

    def _read_header(self, f: Any) -> bool:
        f.seek(0)
        line = f.readline()
        if not line.endswith(b"\n"):
            return False
        self.names = pa_csv.read_csv(io.BytesIO(line)).column_names
        self.offset = max(self.offset, len(line))
        return True

    def _parse(self, chunk: bytes) -> pa.Table:
        try:
            if self.fmt == "csv":
                return pa_csv.read_csv(
                    io.BytesIO(chunk), read_options=pa_csv.ReadOptions(column_names=self.names),
                    convert_options=_csv_convert(self.schema))
            block = min(max(len(chunk) + 1, _MIN_BLOCK), _MAX_BLOCK)
            table = pa_json.read_json(io.BytesIO(chunk), read_options=pa_json.ReadOptions(block_size=block),
                                      parse_options=_json_parse(self.schema))
            return _add_absent(table, self.schema)
        except pa.ArrowInvalid as e:
            raise _named_mismatch(self.path, e, self.schema) from None


__all__ = [
    "BATCH_ROWS", "READ_FORMATS", "WRITE_FORMATS", "Writer", "batch_to_jsonl", "conform",
    "follow_batches", "format_of", "open_writer", "read_batches", "source_schema",
]


POSITIONS_PER_ROW_GROUP = 1 << 20   # batch positions a parquet row group may use


def splittable(source: dict[str, Any]) -> int:
    """How many parts a source can be read in at once: its row groups for parquet, else 1."""
    path = _path_of(source)
    if format_of(path, source.get("format")) != "parquet" or source.get("rate") or source.get("follow"):
        return 1
    with pq.ParquetFile(path) as file:
        return file.num_row_groups


def read_positioned(source: dict[str, Any], schema: pa.Schema | None, part: int = 0, parts: int = 1,
                    batch_rows: int = BATCH_ROWS, after: int = 0) -> Iterator[tuple[int, pa.RecordBatch]]:
    """(position, batch) for part `part` of `parts` of a file, positions increasing in file order.

    A position names a batch whatever the number of parts (parquet: row group and batch within
    it), so a reader restarted with another split resumes at the same place and parts can be merged
    back in file order. Only parquet splits; other formats are read as one part. Batches at or
    before position `after` are not yielded; parquet row groups wholly before it are not read.
    """
    path = _path_of(source)
    if format_of(path, source.get("format")) != "parquet":
        if parts != 1:
            raise InvalidInput(f"{path}: only parquet sources can be read in parts")
        for i, batch in enumerate(read_batches(source, schema, batch_rows), start=1):
            if i > after:
                yield i, batch
        return
    with pq.ParquetFile(path, pre_buffer=False) as file:
        for group in range(part, file.num_row_groups, parts):
            if (group + 1) * POSITIONS_PER_ROW_GROUP <= after:
                continue                  # every position of this group is committed already
            batches = file.read_row_group(group, use_threads=False).to_batches(batch_rows)
            for i, batch in enumerate(_sliced(path, iter(batches), schema, batch_rows)):
                position = group * POSITIONS_PER_ROW_GROUP + i + 1
                if position > after:
                    yield position, batch
