"""Logs of batches: append-only Arrow IPC segment files with one index row per batch.

The bytes of a batch are appended to the log's current segment file (and `fdatasync`ed when an
acknowledgement depends on them); only then is the index row `(log, seq, segment, offset, length,
rows)` committed to SQLite, in the same transaction as the writer's progress (the last source
position it has taken in). Kafka keeps its logs the same way; blobs in SQLite cost 4× (LIMITS.md).
A crash between the two leaves unindexed bytes at a segment's end, which nothing ever reads; a
write that fails (a full disk) cuts its bytes off again and commits nothing.

A published batch is kept once per (publisher, sequence number): the publisher's last kept
number is its progress, committed with the batch's index row, so a retried batch is recognized.

A *transactional* log (the output of a stream join, whose batches a replay does not repeat
alike: DESIGN "The database") shows its readers only the batches before `visible`. Its writer
stages each checkpoint's end (`stage`): the seq reached and the sources' progress then; the
congregation moves `visible` there once the checkpoint is complete (`commit_staged`), and a
restart cuts off whatever came after the last complete one (`open_log`), for the replay from that
checkpoint to write again. So what a client reads is never rolled back.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from congregation.space import is_no_space, no_space
from hallelujah.errors import InvalidInput

SEGMENT_BYTES = 256 << 20   # a segment rolls once it holds this much
PUBLISHER = "publisher:"    # a publisher's progress, as a source (no analytic name has a colon)
IOV_MAX = 1024              # buffers one writev takes
BUSY_TIMEOUT = 30.0         # seconds a writer waits for another process's write transaction


@dataclass(frozen=True)
class Append:
    """One batch for `LogStore.append_many` (no body or no rows: only the progress moves)."""

    body: bytes | memoryview | None
    rows: int
    source: str = ""
    origin: int = -1
    resume: int | None = None


@dataclass(frozen=True)
class Publish:
    """Batch `seq` of a publisher, for `LogStore.publish_many`."""

    log: str
    publisher: str
    seq: int
    body: bytes | memoryview | None
    rows: int


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
        # Several processes write here (the congregation's publishes, the workers' SINKs), each
        # for milliseconds at a time: a writer waits for another's commit rather than fail.
        conn = sqlite3.connect(str(Path(data_dir) / "logs.db"), check_same_thread=False,
                               isolation_level=None, timeout=BUSY_TIMEOUT)
        self.db = sqlite_utils.Database(conn)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")   # durable against a killed process
        self.db.table("logs").create({"name": str, "schema": bytes, "ended": int, "next_seq": int,
                                "rows": int, "first_at": float, "last_at": float},
                               pk="name", if_not_exists=True)
        self.db.table("batches").create({"log": str, "seq": int, "segment": int, "offset": int,
                                   "length": int, "rows": int}, pk=("log", "seq"),
                                  if_not_exists=True)
        self.db.table("progress").create({"log": str, "source": str, "origin": int, "resume": int},
                                   pk=("log", "source"), if_not_exists=True)
        if "visible" not in self.db.table("logs").columns_dict:     # a data dir of an older version
            self.db.table("logs").add_column("visible", int)
        if "source" not in self.db.table("batches").columns_dict:   # (older: batches without their origin)
            self.db.table("batches").add_column("source", str)
            self.db.table("batches").add_column("origin", int)
        self.db.table("staged").create({"log": str, "checkpoint": int, "seq": int, "progress": str},
                                 pk=("log", "checkpoint"), if_not_exists=True)
        # Readers (followers, `info`) use a connection of their own: in WAL mode it sees committed
        # batches only and never waits for a writer, which may be syncing a publish to disk.
        self.reader = sqlite3.connect(str(Path(data_dir) / "logs.db"), check_same_thread=False,
                                      isolation_level=None)
        self.reader.row_factory = sqlite3.Row
        self.data_dir = Path(data_dir)
        self._files: dict[str, tuple[int, int]] = {}   # log -> (segment, fd open for appending)
        self._undo: list[tuple[int, int]] = []         # (fd, size) to cut back to if a write fails
        self._to_sync: set[int] = set()                # fds to sync before the commit
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.conn.in_transaction:    # SQLITE_FULL may have rolled it back already
                self.db.execute("ROLLBACK")
            raise

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """One write transaction under the lock; the segments written for an acknowledgement are
        synced (each once) before it commits. If it fails, nothing of it stays: the rows roll
        back and each segment is cut back to its size before; a full disk raises NoSpace."""
        with self._lock:
            self._undo, self._to_sync = [], set()
            try:
                with self._tx():
                    yield
                    for fd in self._to_sync:
                        os.fdatasync(fd)
            except BaseException as exc:
                for undo in reversed(self._undo):       # a segment written twice: its first size last
                    with contextlib.suppress(OSError):
                        os.ftruncate(*undo)
                if is_no_space(exc):
                    raise no_space(self.data_dir, exc) from None
                raise
            finally:
                self._undo, self._to_sync = [], set()

    def _dir(self, name: str) -> Path:
        return self.root / name.replace("/", "__")

    def create(self, name: str, schema: bytes) -> None:
        """Create the log if it does not exist (idempotent, as after a restart)."""
        with self._writing():
            self.db.table("logs").insert({"name": name, "schema": schema, "ended": 0, "next_seq": 0,
                                    "rows": 0}, ignore=True)
            self._dir(name).mkdir(parents=True, exist_ok=True)

    def info(self, name: str) -> dict | None:
        row = self.reader.execute("SELECT * FROM logs WHERE name = ?", [name]).fetchone()
        return dict(row) if row is not None else None

    def log_rows(self, prefix: str) -> list[dict]:
        """Every log whose name starts with `prefix`, as `info` gives one: one query on the
        readers' connection (never behind a writer's append)."""
        return [dict(r) for r in self.reader.execute(
            "SELECT * FROM logs WHERE substr(name, 1, ?) = ? ORDER BY name", [len(prefix), prefix])]

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

    def _segment_file(self, name: str) -> tuple[int, int, int]:
        """The log's current segment: its number, an fd appending to it, and its size."""
        seg, fd = self._files.get(name, (-1, -1))
        if fd >= 0:
            st = os.fstat(fd)
            # (unlinked: the log was deleted by another process, and this name is a new log)
            if st.st_size < SEGMENT_BYTES and st.st_nlink:
                return seg, fd, st.st_size
            os.close(fd)
            del self._files[name]
        last = self.db.execute("SELECT max(segment) FROM batches WHERE log = ?", [name]).fetchone()[0]
        seg = 0 if last is None else last
        path = self._dir(name) / f"{seg:08d}.seg"
        if path.exists() and path.stat().st_size >= SEGMENT_BYTES:
            seg += 1
            path = self._dir(name) / f"{seg:08d}.seg"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._files[name] = (seg, fd)
        return seg, fd, os.lseek(fd, 0, os.SEEK_END)

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
        with self._writing():
            return self._write(name, items, sync)

    def publish(self, name: str, publisher: str, seq: int, body: bytes | memoryview | None,
                rows: int) -> int | None:
        """Keep batch `seq` of `publisher` (synced) unless it is kept already: its log seq (-1 for
        no rows), or None for a repeat (a retry after a lost acknowledgement). A batch after a gap
        in the publisher's numbers, or a new batch after the log's end, is refused."""
        result = self.publish_many([Publish(name, publisher, seq, body, rows)])[0]
        if isinstance(result, InvalidInput):
            raise result
        return result

    def publish_many(self, items: list[Publish]) -> list[int | None | InvalidInput]:
        """Several publishers' batches in one transaction, each log's segment synced once (a
        group commit: publishers that wait together share a sync). Each one's result is that of
        `publish`, or the InvalidInput that refuses it, which leaves the others kept."""
        with self._writing():
            results: list[int | None | InvalidInput] = []
            for item in items:
                try:
                    results.append(self._publish(item))
                except InvalidInput as refused:
                    results.append(refused)
            return results

    def _publish(self, item: Publish) -> int | None:
        """Inside `_writing`: see `publish`."""
        name, source, seq = item.log, PUBLISHER + item.publisher, item.seq
        row = self.db.execute(
            "SELECT ended, (SELECT origin FROM progress WHERE log = ? AND source = ?) "
            "FROM logs WHERE name = ?", [name, source, name]).fetchone()
        if row is None:
            raise InvalidInput(f"{name}: the stream's log is gone (was it cancelled?)")
        ended, last = row[0], -1 if row[1] is None else row[1]
        if seq <= last:
            return None
        if seq > last + 1:
            raise InvalidInput(f'{name}: batch {seq} of publisher "{item.publisher}" comes after a gap: '
                               f'the last batch kept is {last}, so the next must be {last + 1}')
        if ended:
            raise InvalidInput(f"{name}: batch {seq} refused: the stream has ended "
                               f"(a publish with end closed it) and takes no more rows")
        return self._write(name, [Append(item.body, item.rows, source, seq)], sync=True)[0]

    def committed(self, name: str, publisher: str) -> int:
        """The last batch number of `publisher` kept in the log (-1 for none)."""
        row = self.reader.execute("SELECT origin FROM progress WHERE log = ? AND source = ?",
                                  [name, PUBLISHER + publisher]).fetchone()
        return -1 if row is None else row[0]

    def _write(self, name: str, items: list[Append], sync: bool) -> list[int]:
        """Inside `_writing`: the bytes (then their index rows) and each source's progress."""
        now = time.time()
        seqs = [-1] * len(items)
        kept = [i for i, item in enumerate(items) if item.rows and item.body is not None]
        if kept:
            seg, fd, offset = self._segment_file(name)
            self._undo.append((fd, offset))
            first, visible = self.db.execute("SELECT next_seq, visible FROM logs WHERE name = ?",
                                             [name]).fetchone()
            index = []
            bodies = [memoryview(items[i].body).cast("B") for i in kept]  # type: ignore[arg-type]
            for seq, (i, body) in enumerate(zip(kept, bodies), start=first):
                index.append([name, seq, seg, offset, body.nbytes, items[i].rows, items[i].source or None,
                              items[i].origin if items[i].source else None])
                offset += body.nbytes
                seqs[i] = seq
            _write_all(fd, bodies)
            if sync:
                self._to_sync.add(fd)
            self.db.conn.executemany(
                "INSERT INTO batches (log, seq, segment, offset, length, rows, source, origin) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", index)
            # first/last append times: a log's steady-state rate, first batch to last
            # a transactional log counts its rows as they become visible (`_show`)
            added = sum(items[i].rows for i in kept) if visible is None else 0
            self.db.execute("UPDATE logs SET next_seq = ?, rows = rows + ?, "
                            "first_at = coalesce(first_at, ?), last_at = ? WHERE name = ?",
                            [first + len(kept), added, now, now, name])
        # each source's last (dict order: a later item replaces an earlier one)
        self._set_progress(name, {i.source: (i.origin, i.resume) for i in items if i.source})
        return seqs

    def end(self, name: str, progress: dict[str, tuple[int, int | None]] | None = None) -> None:
        """End the log: a transactional one shows all it holds (its writer's input has ended, so
        nothing of it is replayed), with the writer's final `progress`."""
        with self._writing():
            self._show(name, None)
            self._set_progress(name, progress or {})
            self.db.execute("DELETE FROM staged WHERE log = ?", [name])
            self.db.execute("UPDATE logs SET ended = 1 WHERE name = ?", [name])

    def open_log(self, name: str, transactional: bool, complete: int | None) -> None:
        """Before a writer (re)starts: what checkpoints up to `complete` (the last complete one)
        staged is shown; what came after it is cut off, and its progress with it; the log is then
        transactional from here on (`visible` set) or not (shows every batch)."""
        with self._writing():
            if complete is not None:
                self._commit(name, complete)
            row = self.db.execute("SELECT visible, next_seq, ended FROM logs WHERE name = ?", [name]).fetchone()
            if row is None:
                raise InvalidInput(f"{name}: no such log")
            visible, next_seq, ended = row
            self.db.execute("DELETE FROM staged WHERE log = ?", [name])
            if visible is not None and not ended:
                self.db.execute("DELETE FROM batches WHERE log = ? AND seq >= ?", [name, visible])
                next_seq = visible
            self.db.execute("UPDATE logs SET next_seq = ?, visible = ? WHERE name = ?",
                            [next_seq, next_seq if transactional and not ended else None, name])

    def stage(self, name: str, checkpoint: int, progress: dict[str, tuple[int, int | None]]) -> None:
        """The writer has passed checkpoint `checkpoint`: what it wrote so far, and its progress
        per source (origin, resume), are shown once that checkpoint is complete."""
        with self._writing():
            self.db.execute("INSERT OR REPLACE INTO staged (log, checkpoint, seq, progress) "
                            "SELECT name, ?, next_seq, ? FROM logs WHERE name = ?",
                            [checkpoint, json.dumps(progress), name])

    def commit_staged(self, prefix: str, checkpoint: int) -> list[str]:
        """Checkpoint `checkpoint` of the tradecraft whose logs start with `prefix` is complete:
        its logs show what was staged up to it. Returns the logs that changed."""
        with self._writing():
            names = [r[0] for r in self.db.execute(
                "SELECT DISTINCT log FROM staged WHERE substr(log, 1, ?) = ? AND checkpoint <= ?",
                [len(prefix), prefix, checkpoint])]
            for name in names:
                self._commit(name, checkpoint)
            return names

    def _commit(self, name: str, checkpoint: int) -> None:
        """Inside `_writing`: show what `name` staged up to `checkpoint`, with its progress."""
        row = self.db.execute("SELECT seq, progress FROM staged WHERE log = ? AND checkpoint <= ? "
                              "ORDER BY checkpoint DESC LIMIT 1", [name, checkpoint]).fetchone()
        if row is None:
            return
        self._show(name, row[0])
        self._set_progress(name, {s: tuple(p) for s, p in json.loads(row[1]).items()})
        self.db.execute("DELETE FROM staged WHERE log = ? AND checkpoint <= ?", [name, checkpoint])

    def _show(self, name: str, upto: int | None) -> None:
        """Move a transactional log's `visible` to `upto` (None: all, and no longer transactional),
        counting the rows that become visible."""
        visible = self.db.execute("SELECT visible FROM logs WHERE name = ?", [name]).fetchone()
        if visible is None or visible[0] is None:
            return
        shown = self.db.execute("SELECT coalesce(sum(rows), 0) FROM batches WHERE log = ? AND seq >= ? "
                                "AND seq < ?", [name, visible[0], 1 << 62 if upto is None else upto]).fetchone()[0]
        self.db.execute("UPDATE logs SET visible = ?, rows = rows + ? WHERE name = ?",
                        [None if upto is None else max(upto, visible[0]), shown, name])

    def _set_progress(self, name: str, progress: dict[str, tuple[int, int | None]]) -> None:
        if progress:
            self.db.conn.executemany(
                "INSERT OR REPLACE INTO progress (log, source, origin, resume) VALUES (?, ?, ?, ?)",
                [[name, source, origin, resume] for source, (origin, resume) in progress.items()])

    def entries(self, name: str, from_seq: int, limit: int = 16) -> list[Entry]:
        """Batches from `from_seq` on that readers may see (a transactional log's: before `visible`)."""
        return [Entry(r[0], r[1], r[2], r[3], r[4]) for r in self.reader.execute(
            "SELECT seq, segment, offset, length, rows FROM batches WHERE log = ? AND seq >= ? "
            "AND seq < coalesce((SELECT visible FROM logs WHERE name = ?), 1 << 62) "
            "ORDER BY seq LIMIT ?", [name, from_seq, name, limit])]

    def origins(self, name: str, from_seq: int, to_seq: int) -> dict[int, tuple[str, int]]:
        """The source and origin each batch from `from_seq` to `to_seq` was written with (a
        copy of the log written with them has the same progress per source: replication)."""
        return {r[0]: (r[1] or "", -1 if r[2] is None else r[2]) for r in self.reader.execute(
            "SELECT seq, source, origin FROM batches WHERE log = ? AND seq >= ? AND seq <= ?",
            [name, from_seq, to_seq])}

    def read(self, name: str, entry: Entry) -> bytes:
        """The body bytes of one indexed batch."""
        with open(self._dir(name) / f"{entry.segment:08d}.seg", "rb") as f:
            return os.pread(f.fileno(), entry.length, entry.offset)

    def delete(self, prefix: str, keep: frozenset[str] = frozenset()) -> None:
        """Delete every log whose name starts with `prefix` (but those in `keep`), files and rows."""
        with self._lock:
            for name in self.names(prefix):
                if name in keep:
                    continue
                _, fd = self._files.pop(name, (0, -1))
                if fd >= 0:
                    os.close(fd)
                shutil.rmtree(self._dir(name), ignore_errors=True)
                with self._tx():
                    for table in ("batches", "progress", "staged"):
                        self.db.execute(f"DELETE FROM {table} WHERE log = ?", [name])
                    self.db.execute("DELETE FROM logs WHERE name = ?", [name])

    def close(self) -> None:
        with self._lock:
            for _, fd in self._files.values():
                os.close(fd)
            self._files.clear()
            self.db.conn.close()
            self.reader.close()


def _write_all(fd: int, bodies: list[memoryview]) -> None:
    """Every byte of `bodies`, in order, in as few system calls as the kernel takes."""
    while bodies:
        written = os.writev(fd, bodies[:IOV_MAX])
        while bodies and written >= bodies[0].nbytes:
            written -= bodies[0].nbytes
            bodies.pop(0)
        if written:
            bodies[0] = bodies[0][written:]
