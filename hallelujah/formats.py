"""Files in and out: the formats a stream or dataset is read from and an output is written to.

Everything here works on whole Arrow batches: pyarrow parses and formats, Python only steers.
Reading a file is bounded (`read_pieces`, `read_positioned`, `read_batches`); `follow_batches`
tails a growing csv or jsonl file. Data is made to fit a stream's schema by `conform`, which
refuses what it cannot cast safely with a `SchemaMismatch` naming the field. A source sets apart
the rows it cannot read (`Rejects`, each with a reason naming its line or row and field) instead
of failing whole; `read_batches`, for a client's own file, refuses the first. No message quotes a
file's text. Text parsing lives in `formats_text`; `conform` and `Rejects` in `conform`, and the
writers (`open_writer`, `batch_to_jsonl`) in `formats_write`, are re-exported here.
"""
from __future__ import annotations

import dataclasses
import io
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq
import trio

from hallelujah.conform import Piece, Raw, Rejects, conform, fit, rows_from, type_name
from hallelujah.errors import InvalidInput, NotFound, SchemaMismatch
from hallelujah.formats_text import (
    csv_chunk,
    csv_raws,
    header,
    jsonl_chunk,
    line_chunks,
    unreadable,
)
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
        with _connect(path) as con:
            return _sqlite_schema(con, path, _table_of(source))
    if path.stat().st_size == 0:
        return pa.schema([])
    try:
        if fmt == "csv":
            reader = pa_csv.open_csv(path, parse_options=pa_csv.ParseOptions(newlines_in_values=True),
                                     convert_options=pa_csv.ConvertOptions(null_values=[""], strings_can_be_null=True,
                                                                           quoted_strings_can_be_null=False))
        else:
            reader = pa_json.open_json(path, read_options=pa_json.ReadOptions(block_size=_MIN_BLOCK))
        with reader:
            return reader.schema
    except pa.ArrowInvalid as e:
        raise unreadable(path, e, header(path) if fmt == "csv" else None) from None


def read_pieces(source: dict[str, Any], schema: pa.Schema | None = None, batch_rows: int = BATCH_ROWS,
                project: bool = False) -> Iterator[Piece]:
    """A whole file as (batch, rejects): batches of at most `batch_rows` rows that fit `schema`,
    and with each the rows near it that could not be read (None when all could).

    A batch may be empty when all its rows were rejected. Memory stays bounded by a batch or a
    parse block, whatever the file size; an empty file yields nothing. Raises NotFound for a
    missing file at once; SchemaMismatch (naming the file and field) while iterating when the
    file's fields are not the schema's, or, without a schema, at any fault. With `project`, a
    schema that is some of the file's fields is all that is read (see `_projection`): a stream's
    source may declare a subset, a file a client publishes may not.
    """
    path = _path_of(source)
    fmt = format_of(path, source.get("format"))
    raws: Iterator[list[Raw]]
    target, wanted = schema, schema if project else None
    if fmt == "sqlite":
        table = _table_of(source)
        if target is None:
            with _connect(path) as con:
                target = _sqlite_schema(con, path, table)
        raws = ([r] for r in _read_sqlite(path, table, batch_rows, wanted))
    elif fmt == "parquet":
        raws = _typed(_read_parquet(path, batch_rows, wanted))
    elif fmt == "arrow":
        raws = _typed(_read_arrow(path, wanted))
    elif path.stat().st_size == 0:
        return iter(())
    elif fmt == "csv":
        names = header(path)
        keep = _projection(names, wanted)
        raws = (_selected([r], keep)
                for r in csv_raws(path, _as_text(names, schema, keep), _block_size(path, batch_rows)))
    else:
        raws = _jsonl_raws(path, schema, _block_size(path, batch_rows), project)
    return _sliced(path, raws, target, batch_rows)


def read_batches(source: dict[str, Any], schema: pa.Schema | None = None, batch_rows: int = BATCH_ROWS,
                 project: bool = False) -> Iterator[pa.RecordBatch]:
    """`read_pieces`, refusing the first row that cannot be read (SchemaMismatch naming the file,
    its line or row and the field): for a file a client publishes, or a dataset that loads whole."""
    path = source.get("path")
    for batch, rejects in read_pieces(source, schema, batch_rows, project):
        if rejects is not None:
            raise SchemaMismatch(f"{path}: {rejects.reasons[0]}")
        if batch.num_rows:
            yield batch


def _typed(batches: Iterator[pa.RecordBatch], rows: int = 0) -> Iterator[list[Raw]]:
    """Batches of a typed file, with their rows numbered (after `rows` rows)."""
    for batch in batches:
        yield [Raw(batch, rows_from(rows))]
        rows += batch.num_rows


def _jsonl_raws(path: Path, schema: pa.Schema | None, block: int, project: bool) -> Iterator[list[Raw]]:
    line, keep = 0, _projection(_jsonl_head_fields(path), schema) if project else None
    for chunk, lines in line_chunks(path, block):
        yield _selected(jsonl_chunk(path, chunk, schema, line), keep)
        line += lines


def _jsonl_head_fields(path: Path) -> list[str]:
    """The fields of a JSON lines file's first whole lines (up to a MiB), as pyarrow infers them:
    what a JSON lines file has instead of a header. None parse, or no line yet: none."""
    with open(path, "rb") as f:
        head = f.read(_MIN_BLOCK)
    try:
        return pa_json.read_json(io.BytesIO(head[:head.rfind(b"\n") + 1])).column_names
    except pa.ArrowInvalid:
        return []


def _projection(names: list[str], schema: pa.Schema | None) -> list[str] | None:
    """The file's fields to read, in its order, when a stream declares only some of them: then
    nothing else is read (or, for text, kept). None, to read every field, when the schema is not a
    strict subset of `names`: `conform` then names the field that is missing or extra."""
    if schema is None or not set(schema.names) < set(names):
        return None
    return [n for n in names if n in schema.names]


def _as_text(names: list[str], schema: pa.Schema | None, keep: list[str] | None) -> pa.Schema | None:
    """The schema to parse a CSV file by: a field it has beyond `keep` is taken as text, to be
    dropped, so no value of it can fail the read (pyarrow would infer its type block by block)."""
    if schema is None or keep is None:
        return schema
    return pa.schema([schema.field(n) if n in keep else pa.field(n, pa.string()) for n in names])


def _selected(raws: list[Raw], keep: list[str] | None) -> list[Raw]:
    """`raws` with only the fields in `keep` (all when None); a field a block lacks stays missing."""
    if keep is None:
        return raws
    return [dataclasses.replace(r, batch=r.batch.select([n for n in keep if n in r.batch.schema.names]))
            for r in raws]


def _sliced(path: Path, raws: Iterator[list[Raw]], schema: pa.Schema | None, batch_rows: int) -> Iterator[Piece]:
    """Each block made to fit, then cut to `batch_rows` (zero-copy): a parse block is sized in
    bytes, so it can hold more rows than asked. Its rejects go with its first part."""
    for block in raws:
        try:
            batch, rejects = fit(block, schema)
        except SchemaMismatch as e:
            raise SchemaMismatch(f"{path}: {e}") from None
        if rejects is not None and not batch.num_rows:
            yield batch, rejects
        for start in range(0, batch.num_rows, batch_rows):
            yield batch.slice(start, batch_rows), rejects if start == 0 else None


def _read_parquet(path: Path, batch_rows: int, schema: pa.Schema | None) -> Iterator[pa.RecordBatch]:
    # pre_buffer=True (pyarrow's default) keeps every row group read so far in memory: the whole
    # file by the end. Without it, memory stays at a batch or two, and reading is 3x faster.
    with pq.ParquetFile(path, pre_buffer=False) as file:
        yield from file.iter_batches(batch_size=batch_rows,
                                     columns=_projection(file.schema_arrow.names, schema))


def _open_arrow(path: Path) -> pa.ipc.RecordBatchFileReader:
    try:
        return pa.ipc.open_file(pa.memory_map(str(path)))
    except pa.ArrowInvalid:
        raise SchemaMismatch(f"{path}: not an Arrow IPC file") from None


def _read_arrow(path: Path, schema: pa.Schema | None) -> Iterator[pa.RecordBatch]:
    # memory-mapped: each batch is read zero-copy, and pages come in only as they are used, so
    # the columns a stream does not declare are never read
    with _open_arrow(path) as reader:
        keep = _projection(reader.schema.names, schema)
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i) if keep is None else reader.get_batch(i).select(keep)


def _block_size(path: Path, batch_rows: int) -> int:
    """A parse block holding about `batch_rows` lines, judged from the first MiB of the file."""
    with open(path, "rb") as f:
        sample = f.read(_MIN_BLOCK)
    per_line = len(sample) / max(sample.count(b"\n"), 1)
    return int(min(max(per_line * batch_rows * 1.1, _MIN_BLOCK), _MAX_BLOCK))


# ---- sqlite ------------------------------------------------------------------------------------

def _table_of(source: dict[str, Any]) -> str:
    if not source.get("table"):
        raise InvalidInput(f"source {source.get('path')}: a sqlite source needs a table")
    return str(source["table"])


@contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection (a source is never written); sqlite's own errors, which may quote
    the file's schema, become a SchemaMismatch naming the file only."""
    # check_same_thread off: a reader pulls batches with trio.to_thread.run_sync, one at a time
    # but not always from the same thread.
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)) as con:
            yield con
    except sqlite3.Error as e:
        raise SchemaMismatch(f"{path}: cannot be read as an SQLite database ({type(e).__name__})") from None


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


def _read_sqlite(path: Path, table: str, batch_rows: int, declared: pa.Schema | None = None) -> Iterator[Raw]:
    """The table's rows as read: timestamps still text, a value of another type than its column's
    (sqlite types are per value) null and its row known bad. Only the `declared` columns are
    selected when they are some of the table's."""
    with _connect(path) as con:
        schema = _sqlite_schema(con, path, table)
        if (keep := _projection(schema.names, declared)) is not None:
            schema = pa.schema([schema.field(n) for n in keep])
        # A text field may hold numbers too (sqlite types are per value): let sqlite make them text.
        columns = [f"CAST({_quote(f.name)} AS TEXT)" if f.type == pa.string() else _quote(f.name)
                   for f in schema]
        cursor = con.execute(f"SELECT {', '.join(columns)} FROM {_quote(table)}")
        done = 0
        # sqlite3 hands out rows of Python values; zip(*rows) turns them into columns in C, and
        # pa.array converts each column at once.
        while rows := cursor.fetchmany(batch_rows):
            at = rows_from(done)
            known: dict[int, str] = {}
            arrays = [_sqlite_array(f, col, at, known) for f, col in zip(schema, zip(*rows))]
            yield Raw(pa.RecordBatch.from_arrays(arrays, names=schema.names), at, known=known)
            done += len(rows)


_SQLITE_FAULTS = (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError)


def _sqlite_array(field: pa.Field, values: tuple[Any, ...], at: Callable[[int], str],
                  known: dict[int, str]) -> pa.Array:
    """One column of fetched rows as an array of the field's raw type (int64 for bools, text for
    timestamps); a value that is not of it is null, its row added to `known`."""
    raw = pa.int64() if field.type == pa.bool_() else (
        pa.string() if pa.types.is_timestamp(field.type) else field.type)
    try:
        array = pa.array(values, type=raw)
    except _SQLITE_FAULTS:
        kept = list(values)
        for i, value in enumerate(values):      # the slow path, for a column holding a stray value
            try:
                pa.array([value], type=raw)
            except _SQLITE_FAULTS:
                kept[i] = None
                known.setdefault(i, f'{at(i)}: field "{field.name}": expected {type_name(raw)}')
        array = pa.array(kept, type=raw)
    return pc.cast(array, pa.bool_()) if field.type == pa.bool_() else array


# ---- follow ------------------------------------------------------------------------------------

async def follow_batches(
    source: dict[str, Any], schema: pa.Schema, start_offset: int = 0, poll_interval: float = 0.2
) -> AsyncIterator[tuple[int, pa.RecordBatch, Rejects | None]]:
    """Tail a growing csv or jsonl file: yield `(next_offset, batch, rejects)` for complete lines
    appended, `rejects` the lines among them that could not be read (None when all could).

    Only whole lines (ending in a newline) past `start_offset` are read, so a half-written line is
    picked up once finished; `next_offset` is where to resume after that batch (for checkpoints).
    A csv file's header line is read first, whatever the offset. When nothing is new it sleeps
    `poll_interval` seconds. A file that shrinks was replaced: it is read again from its start.
    Runs until cancelled; file IO and parsing run in a worker thread. Raises NotFound if the file
    does not exist and SchemaMismatch if its fields are not the schema's (or some of them: a
    csv file's header, or a jsonl file's first lines, may have more, which are not kept).
    """
    path = _path_of(source)
    fmt = format_of(path, source.get("format"))
    if fmt not in ("csv", "jsonl"):
        raise InvalidInput(f"{path}: only csv and jsonl files can be followed, not {fmt}")
    tail = _Tail(path, fmt, schema, start_offset)
    while True:
        piece = await trio.to_thread.run_sync(tail.read_next)
        if piece is not None:
            yield tail.offset, *piece
        elif not tail.progressed:
            await trio.sleep(poll_interval)


class _Tail:
    """The synchronous half of `follow_batches`: where it is in the file and how to parse."""

    def __init__(self, path: Path, fmt: str, schema: pa.Schema, offset: int) -> None:
        self.path, self.fmt, self.schema, self.offset = path, fmt, schema, offset
        self.names: list[str] | None = None  # csv header
        self.lines: int | None = None        # newlines before the offset, counted when first needed
        self.keep: list[str] | None = None   # the declared fields, when they are some of the file's
        self.head: list[str] | None = None   # a jsonl file's fields, once it has a line
        self.progressed = False

    def read_next(self) -> Piece | None:
        """Parse the complete lines past the offset, advancing it; None if there are none."""
        self.progressed = False
        if not self.path.is_file():
            raise NotFound(f"followed file {str(self.path)!r} does not exist")
        with open(self.path, "rb") as f:
            if f.seek(0, io.SEEK_END) < self.offset:
                self.offset, self.names, self.lines, self.head = 0, None, 0, None
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
        chunk = chunk[:end]
        first_line = self._lines_before()
        if self.fmt == "csv":
            assert self.names is not None
            raws = [csv_chunk(self.path, chunk, self.names, _as_text(self.names, self.schema, self.keep),
                              first_line)]
        else:
            raws = jsonl_chunk(self.path, chunk, self.schema, first_line)
            if self.head is None:  # the file's first lines decide, wherever it resumes
                self.head = _jsonl_head_fields(self.path) or None
                self.keep = _projection(self.head or [], self.schema)
        try:
            batch, rejects = fit(_selected(raws, self.keep), self.schema)
        except SchemaMismatch as e:
            raise SchemaMismatch(f"{self.path}: {e}") from None
        self.offset += end
        self.lines = first_line + chunk.count(b"\n")
        self.progressed = True
        return None if batch.num_rows == 0 and rejects is None else (batch, rejects)

    def _lines_before(self) -> int:
        """Newlines before the offset: counted once in the file's head after a resume, then kept."""
        if self.lines is None:
            self.lines = 0
            with open(self.path, "rb") as f:
                left = self.offset
                while left > 0 and (data := f.read(min(left, FOLLOW_CHUNK_BYTES))):
                    self.lines += data.count(b"\n")
                    left -= len(data)
        return self.lines

    def _read_header(self, f: Any) -> bool:
        f.seek(0)
        line = f.readline()
        if not line.endswith(b"\n"):
            return False
        self.names = pa_csv.read_csv(io.BytesIO(line)).column_names
        self.keep = _projection(self.names, self.schema)
        self.offset = max(self.offset, len(line))
        return True


__all__ = [
    "BATCH_ROWS", "READ_FORMATS", "WRITE_FORMATS", "Rejects", "Writer", "batch_to_jsonl", "conform",
    "follow_batches", "format_of", "open_writer", "read_batches", "read_pieces", "read_positioned",
    "source_schema",
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
                    batch_rows: int = BATCH_ROWS, after: int = 0
                    ) -> Iterator[tuple[int, pa.RecordBatch, Rejects | None]]:
    """(position, batch, rejects) for part `part` of `parts` of a file, positions increasing in
    file order (see `read_pieces` for the batches and their rejects).

    A position names a batch whatever the number of parts (parquet: row group and batch within
    it), so a reader restarted with another split resumes at the same place and parts can be merged
    back in file order. Only parquet splits; other formats are read as one part. Batches at or
    before position `after` are not yielded; parquet row groups wholly before it are not read.
    This is a stream's source: a schema that is some of the file's fields is all that is read.
    """
    path = _path_of(source)
    if format_of(path, source.get("format")) != "parquet":
        if parts != 1:
            raise InvalidInput(f"{path}: only parquet sources can be read in parts")
        for i, (batch, rejects) in enumerate(read_pieces(source, schema, batch_rows, project=True), start=1):
            if i > after:
                yield i, batch, rejects
        return
    with pq.ParquetFile(path, pre_buffer=False) as file:
        keep, rows_before = _projection(file.schema_arrow.names, schema), 0
        for group in range(file.num_row_groups):
            if group % parts != part or (group + 1) * POSITIONS_PER_ROW_GROUP <= after:
                rows_before += file.metadata.row_group(group).num_rows
                continue                  # another part's, or every position of it is committed already
            batches = file.read_row_group(group, columns=keep, use_threads=False).to_batches(batch_rows)
            for i, (batch, rejects) in enumerate(_sliced(path, _typed(iter(batches), rows_before), schema,
                                                         batch_rows)):
                position = group * POSITIONS_PER_ROW_GROUP + i + 1
                if position > after:
                    yield position, batch, rejects
            rows_before += file.metadata.row_group(group).num_rows
