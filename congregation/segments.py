"""Logs of batches: append-only Arrow IPC segment files with one index row per batch.

The bytes of a batch are appended to the log's current segment file (and `fdatasync`ed when an
acknowledgement depends on them); only then is the index row `(log, seq, segment, offset, length,
rows)` committed to SQLite, in the same transaction as the writer's progress (the last source
position it has taken in). Kafka keeps its logs the same way; blobs in SQLite cost 4× (LIMITS.md).
A crash between the two leaves unindexed bytes at a segment's end, which nothing ever reads.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

SEGMENT_BYTES = 256 << 20   # a segment rolls once it holds this much


@dataclass(frozen=True)
class Append:
    """One batch for `LogStore.append_many` (no body or no rows: only the progress moves)."""

    body: bytes | memoryview | None
    rows: int
    source: str = ""
    origin: int = -1
    resume: int | None = None


@dataclass(frozen=True)
class Entry:
    seq: int
    segment: int
    offset: int
    length: int
    rows: int


class LogStore:
    """Every log of one data dir. Blocking: call it through one thread at a time."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "logs"
        self.root.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(Path(data_dir) / "logs.db"), check_same_thread=False,
                               isolation_level=None)
        self.db = sqlite_utils.Database(conn)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")   # durable against a killed process
        self.db["logs"].create({"name": str, "schema": bytes, "ended": int, "next_seq": int,
                                "rows": int, "first_at": float, "last_at": float},
                               pk="name", if_not_exists=True)
        self.db["batches"].create({"log": str, "seq": int, "segment": int, "offset": int,
                                   "length": int, "rows": int}, pk=("log", "seq"),
                                  if_not_exists=True)
        self.db["progress"].create({"log": str, "source": str, "origin": int, "resume": int},
                                   pk=("log", "source"), if_not_exists=True)
        # Readers (followers, `info`) use a connection of their own: in WAL mode it sees committed
        # batches only and never waits for a writer, which may be syncing a publish to disk.
        self.reader = sqlite3.connect(str(Path(data_dir) / "logs.db"), check_same_thread=False,
                                      isolation_level=None)
        self.reader.row_factory = sqlite3.Row
        self._files: dict[str, tuple[int, object]] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _dir(self, name: str) -> Path:
        return self.root / name.replace("/", "__")

    def create(self, name: str, schema: bytes) -> None:
        """Create the log if it does not exist (idempotent, as after a restart)."""
        with self._lock:
            self.db["logs"].insert({"name": name, "schema": schema, "ended": 0, "next_seq": 0,
                                    "rows": 0}, ignore=True)
            self._dir(name).mkdir(parents=True, exist_ok=True)

    def info(self, name: str) -> dict | None:
        row = self.reader.execute("SELECT * FROM logs WHERE name = ?", [name]).fetchone()
        return dict(row) if row is not None else None

    def names(self, prefix: str) -> list[str]:
        return [r["name"] for r in self.db.query(
            "SELECT name FROM logs WHERE name LIKE ? ORDER BY name", [prefix + "%"])]

    def progress(self, name: str) -> dict[str, int]:
        """The last source position each source has committed into this log."""
        return {r["source"]: r["origin"] for r in self.db.query(
            "SELECT source, origin FROM progress WHERE log = ?", [name])}

    def resume_points(self, name: str) -> dict[str, int]:
        """Per source, the position after which a replay rebuilds everything this log still
        needs: its progress, or earlier where a stateful Jah (an aggregate's open windows) holds
        rows from before it."""
        return {r["source"]: r["resume"] if r["resume"] is not None else r["origin"] for r in self.db.query(
            "SELECT source, origin, resume FROM progress WHERE log = ?", [name])}

    def last_body(self, name: str) -> bytes | None:
        """The body of the log's last batch, if it has one."""
        rows = self.entries_before(name, 1)
        return self.read(name, rows[0]) if rows else None

    def entries_before(self, name: str, limit: int) -> list[Entry]:
        return [Entry(*r) for r in self.db.execute(
            "SELECT seq, segment, offset, length, rows FROM batches WHERE log = ? "
            "ORDER BY seq DESC LIMIT ?", [name, limit])]

    def _segment_file(self, name: str) -> tuple[int, object]:
        seg, f = self._files.get(name, (-1, None))
        if f is not None and f.tell() < SEGMENT_BYTES:  # type: ignore[attr-defined]
            return seg, f
        if f is not None:
            f.close()  # type: ignore[attr-defined]
        last = self.db.execute("SELECT max(segment) FROM batches WHERE log = ?", [name]).fetchone()[0]
        seg = 0 if last is None else last
        path = self._dir(name) / f"{seg:08d}.seg"
        if path.exists() and path.stat().st_size >= SEGMENT_BYTES:
            seg += 1
            path = self._dir(name) / f"{seg:08d}.seg"
        f = open(path, "ab")
        self._files[name] = (seg, f)
        return seg, f

    def append(self, name: str, body: bytes | memoryview | None, rows: int,
               source: str = "", origin: int = -1, sync: bool = False, resume: int | None = None) -> int:
        """Append one batch body (IPC message without schema); returns its seq (-1 for no rows).

        With `source`, the writer's progress for that source moves to `origin` in the same
        transaction (and its resume point to `resume`, where the writer holds older rows).
        A zero-row batch only moves the progress.
        """
        return self.append_many(name, [Append(body, rows, source, origin, resume)], sync)[0]

    def append_many(self, name: str, items: list[Append], sync: bool = False) -> list[int]:
        """Append several batches and their progress in one transaction (a group commit: one
        commit, not one per batch); returns each one's seq (-1 for no rows)."""
        with self._lock:
            now = time.time()
            with self._tx():
                seqs = [-1] * len(items)
                kept = [i for i, item in enumerate(items) if item.rows and item.body is not None]
                if kept:
                    seg, f = self._segment_file(name)
                    offset = f.tell()  # type: ignore[attr-defined]
                    first = self.db.execute("SELECT next_seq FROM logs WHERE name = ?",
                                            [name]).fetchone()[0]
                    index = []
                    for seq, i in enumerate(kept, start=first):
                        body = items[i].body
                        f.write(body)  # type: ignore[attr-defined]
                        index.append([name, seq, seg, offset, len(body), items[i].rows])  # type: ignore[arg-type]
                        offset += len(body)  # type: ignore[arg-type]
                        seqs[i] = seq
                    f.flush()  # type: ignore[attr-defined]
                    if sync:
                        os.fdatasync(f.fileno())  # type: ignore[attr-defined]
                    self.db.conn.executemany(
                        "INSERT INTO batches (log, seq, segment, offset, length, rows) "
                        "VALUES (?, ?, ?, ?, ?, ?)", index)
                    # first/last append times: a log's steady-state rate, first batch to last
                    self.db.execute("UPDATE logs SET next_seq = ?, rows = rows + ?, "
                                    "first_at = coalesce(first_at, ?), last_at = ? WHERE name = ?",
                                    [first + len(kept), sum(items[i].rows for i in kept), now, now, name])
                latest = {item.source: item for item in items if item.source}   # each source's last
                if latest:
                    self.db.conn.executemany(
                        "INSERT OR REPLACE INTO progress (log, source, origin, resume) VALUES (?, ?, ?, ?)",
                        [[name, i.source, i.origin, i.resume] for i in latest.values()])
            return seqs

    def end(self, name: str) -> None:
        with self._lock, self._tx():
            self.db.execute("UPDATE logs SET ended = 1 WHERE name = ?", [name])

    def entries(self, name: str, from_seq: int, limit: int = 16) -> list[Entry]:
        return [Entry(r[0], r[1], r[2], r[3], r[4]) for r in self.reader.execute(
            "SELECT seq, segment, offset, length, rows FROM batches WHERE log = ? AND seq >= ? "
            "ORDER BY seq LIMIT ?", [name, from_seq, limit])]

    def read(self, name: str, entry: Entry) -> bytes:
        """The body bytes of one indexed batch."""
        with open(self._dir(name) / f"{entry.segment:08d}.seg", "rb") as f:
            return os.pread(f.fileno(), entry.length, entry.offset)

    def delete(self, prefix: str) -> None:
        """Delete every log whose name starts with `prefix`, files and rows."""
        with self._lock:
            for name in self.names(prefix):
                _, f = self._files.pop(name, (0, None))
                if f is not None:
                    f.close()  # type: ignore[attr-defined]
                shutil.rmtree(self._dir(name), ignore_errors=True)
                with self._tx():
                    for table in ("batches", "progress"):
                        self.db.execute(f"DELETE FROM {table} WHERE log = ?", [name])
                    self.db.execute("DELETE FROM logs WHERE name = ?", [name])

    def close(self) -> None:
        with self._lock:
            for _, f in self._files.values():
                f.close()  # type: ignore[attr-defined]
            self._files.clear()
            self.db.conn.close()
            self.reader.close()
