"""What the Window Interface changes, each through the library calls the CLI makes (so each is
refused with the message `hallelujah submit|publish|cancel|split|merge|reload|congestion` gives):
a document submitted from a file, a file's rows published into a stream with progress, the
hand-made changes of a running tradecraft (hallelujah/updates.py). Each is checked before it is asked
about, and done only once confirmed."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

import hallelujah
from hallelujah import formats
from hallelujah import updates as changes
from hallelujah.cli import _read_document
from hallelujah.cli_output import _rows_of, rows_text, sqlite_tables
from hallelujah.errors import InvalidInput
from hallelujah.tradecraft import parse_document

DOCUMENT_BYTES = 4 << 20       # a submit is one cmdReq, at most 4 MiB (README "Safety")


def said(exc: BaseException) -> str:
    """An error as the CLI prints it after "hallelujah: " (a file's OSError names the file)."""
    if isinstance(exc, OSError) and not isinstance(exc, hallelujah.HallelujahError):
        return f"{exc.filename or ''}{': ' if exc.filename else ''}{exc.strerror or exc}"
    return str(exc)


@dataclass(frozen=True)
class Submission:
    """A document read and validated here, ready to submit once confirmed."""
    file: str
    document: Any
    base_dir: Path
    name: str
    analytics: int


def read_submission(file: str) -> Submission:
    """Read and check `file` as `hallelujah submit FILE` does (every fault of the document at
    once); a file that is not a regular one, or too big to be a document, is refused unread
    (`:submit /dev/zero` must not hang the screen)."""
    path = Path(file).expanduser()
    info = path.stat()                     # (an OSError names the file)
    if not path.is_file():
        raise InvalidInput(f"{file}: not a regular file")
    if info.st_size > DOCUMENT_BYTES:
        raise InvalidInput(f"{file}: {info.st_size:,} bytes, more than a document's {DOCUMENT_BYTES:,}")
    document, base_dir = _read_document(str(path))
    tc = parse_document(document, base_dir)
    return Submission(file, document, base_dir, tc.name, len(tc.analytics))


async def submit(db: hallelujah.Database, s: Submission) -> str:
    result = await db.submit(s.document, s.base_dir)
    return f"submitted {result['tradecraft']}: outputs {', '.join(result['outputs']) or '(none)'}"


@dataclass(frozen=True)
class Publication:
    """A file's rows checked against the stream's schema, ready to publish once confirmed."""
    stream: str
    file: str
    source: dict[str, Any]
    schema: pa.Schema
    total: int | None          # rows, when the format says before reading (parquet, arrow)


async def read_publication(db: hallelujah.Database, stream: str, file: str, table: str | None) -> Publication:
    """What `hallelujah publish STREAM FILE [--table TABLE]` checks before it sends a row, in its
    order: the format told by the extension, a SQLite file's table, the stream (NotFound naming
    what exists); a file that is not there is refused first, with the file reader's message."""
    path = Path(file).expanduser()
    source = {"path": str(path), "format": formats.format_of(path), "table": table}
    formats._path_of(source)    # the reader's NotFound now, not once confirmed (nor a FIFO read)
    if source["format"] == "sqlite" and not table:
        raise InvalidInput(f"--table: {path.name} is a SQLite file: name the table to publish "
                           f"(it has: {', '.join(sqlite_tables(path)) or 'no tables'})")
    total = _rows_of(source)
    schema = await db.stream_schema(stream)
    return Publication(stream, file, source, schema, total)


async def publish(db: hallelujah.Database, p: Publication, progress: Callable[[int], None]) -> str:
    """Publish the rows, conformed to the stream's schema as they are read; `progress(rows)` as
    the congregation acknowledges them."""
    rows = await db.publish(p.stream, formats.read_batches(p.source, p.schema), schema=p.schema,
                            progress=progress)
    return f"published {rows_text(rows)} to {p.stream}"


def progress_text(p: Publication, rows: int) -> str:
    """"publishing f.csv into tc/x: 65,536 rows", with the share done when the total is known."""
    done = f"{rows:,} / {p.total:,} rows ({rows / p.total:.0%})" if p.total else rows_text(rows)
    return f"publishing {Path(p.file).name} into {p.stream}: {done}"


def change_question(name: str, args: tuple[str, ...]) -> list[str]:
    """What `:split|:merge|:reload|:congestion` asks before it is done."""
    if name == "congestion":
        return [f"Set the congestion thresholds of {args[0]}: busy above {args[1]} for {args[2]}?",
                "They hold until the congregation restarts (its document is not rewritten)."]
    return {"split": [f"Split JOIN {args[0]} in two now?", "Each new JOIN holds half its partitions."],
            "merge": [f"Merge JOIN {args[0]} with the other JOIN of its split now?"],
            "reload": [f"Load the next version of dataset {args[0]} now?",
                       "Stream rows joined after it use the new version."]}[name]


async def change(db: hallelujah.Database, name: str, args: tuple[str, ...]) -> str:
    """Do one hand-made change, as `hallelujah NAME ARGS` does it, and say it as the CLI does.
    A busy fraction that is not a number goes as typed, so the congregation's check names it."""
    if name == "split":
        result = await changes.split(db, args[0])
    elif name == "merge":
        result = await changes.merge(db, args[0])
    elif name == "reload":
        result = await changes.reload(db, args[0])
    else:
        try:
            busy: Any = float(args[1])
        except ValueError:
            busy = args[1]
        result = await changes.set_congestion(db, args[0], {"busy": busy, "for": args[2]})
    return changes.done_text(name, result)
