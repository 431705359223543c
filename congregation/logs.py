"""The async face of the logs of batches: appends through one thread, and followers woken on append.

Every process opens the same store: the congregation appends what clients publish, and the
workers run the LOGSOURCEs that read it and the SINKs that keep outputs, so the bytes of a
stream never pass through the congregation's loop on their way in or out. A write here wakes
this process's followers at once and is told to the other side (`LogChanged`), whose followers
look again. A sink's appends wait out a full disk; a publish is refused at once (NoSpace), so its
client hears of it and nothing acknowledged is ever lost.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import trio

from congregation.segments import Append, Entry, LogStore, Publish
from congregation.space import waiting_for_space
from hallelujah.frames import open_batch

T = TypeVar("T")
READ_AHEAD = 8     # index rows fetched per query when following a log
LOOK_AGAIN = 1.0   # a follower looks again this often: a notice lost costs a second, never a hang


class Notices:
    """The logs this process wrote, to tell another process: each name once per send, however
    many batches it took meanwhile."""

    def __init__(self) -> None:
        self._names: set[str] = set()
        self._waiting = trio.Event()

    def add(self, name: str) -> None:
        self._names.add(name)
        self._waiting.set()

    async def forward(self, tell: Callable[[str], Awaitable[None]]) -> None:
        while True:
            await self._waiting.wait()
            self._waiting = trio.Event()
            names, self._names = self._names, set()
            for name in sorted(names):
                await tell(name)


_WAITING: Any = object()


class _Waiting:
    """A batch waiting for a group commit, and then its result (or the error refusing it)."""

    def __init__(self, item: Publish) -> None:
        self.item = item
        self.result: Any = _WAITING


class Logs:
    def __init__(self, data_dir: Path, tell: Callable[[str], None] | None = None) -> None:
        self.store = LogStore(data_dir)
        self._limiter = trio.CapacityLimiter(1)          # appends, one at a time
        self._read_limiter = trio.CapacityLimiter(1)     # readers, on the store's reader connection
        self._changed: dict[str, trio.Event] = {}
        self._tell = tell                                # the other processes' followers
        self._publishes: list[_Waiting] = []             # batches waiting for the next group commit
        self._publishing = trio.Lock()                   # one group commit at a time

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        """Reads never queue behind an append (which may be syncing a publish to disk)."""
        return await trio.to_thread.run_sync(fn, *args, limiter=self._read_limiter)

    def _notify(self, name: str) -> None:
        """This process wrote log `name`."""
        self.changed(name)
        if self._tell is not None:
            self._tell(name)

    def changed(self, name: str) -> None:
        """Log `name` was written (here, or by another process that said so): its followers look."""
        event = self._changed.pop(name, None)
        if event is not None:
            event.set()

    async def create(self, name: str, schema: bytes) -> None:
        await self._run(self.store.create, name, schema)

    async def info(self, name: str) -> dict[str, Any] | None:
        return await self._read(self.store.info, name)

    async def log_rows(self, prefix: str) -> list[dict[str, Any]]:
        return await self._read(self.store.log_rows, prefix)

    async def progress(self, name: str) -> dict[str, int]:
        return await self._run(self.store.progress, name)

    async def resume_points(self, name: str) -> dict[str, int]:
        return await self._run(self.store.resume_points, name)

    async def last_body(self, name: str) -> bytes | None:
        return await self._run(self.store.last_body, name)

    async def _waiting(self, fn: Callable[..., T], name: str, *args: Any) -> T:
        """A write of the congregation's own to log `name`, tried again once there is space
        (nothing of a failed try was kept); the log's followers are woken after it."""
        result = await waiting_for_space(lambda: self._run(fn, name, *args), f"{fn.__name__} {name}")
        self._notify(name)
        return result

    async def append(self, name: str, body: Any, rows: int, source: str = "", origin: int = -1,
                     sync: bool = False, resume: int | None = None) -> int:
        return await self._waiting(self.store.append, name, body, rows, source, origin, sync, resume)

    async def append_many(self, name: str, items: list[tuple]) -> list[int]:
        """Batches as (body, rows, source, origin, resume), in one transaction."""
        return await self._waiting(self.store.append_many, name, [Append(*i) for i in items])

    async def publish(self, name: str, publisher: str, seq: int, body: Any, rows: int) -> int | None:
        """Batch `seq` of `publisher`, synced, unless kept already (None): see LogStore.publish.
        A full disk raises NoSpace at once.

        Batches of several publishers that wait meanwhile go in one group commit, one sync per
        log: whoever gets the turn first commits every batch waiting then.
        """
        waiting = _Waiting(Publish(name, publisher, seq, body, rows))
        self._publishes.append(waiting)
        try:
            async with self._publishing:
                if waiting.result is _WAITING:
                    group, self._publishes = self._publishes, []
                    try:
                        results: list[Any] = await self._run(self.store.publish_many, [w.item for w in group])
                    except Exception as exc:  # noqa: BLE001 - (NoSpace) the whole group failed, nothing kept
                        results = [exc] * len(group)
                    for w, result in zip(group, results):
                        w.result = result
                    for log_name in {w.item.log for w, r in zip(group, results) if isinstance(r, int)}:
                        self._notify(log_name)
        finally:
            if waiting in self._publishes:      # cancelled before its turn: it is not kept
                self._publishes.remove(waiting)
        if isinstance(waiting.result, Exception):
            raise waiting.result
        return waiting.result

    async def origins(self, name: str, from_seq: int, to_seq: int) -> dict[int, tuple[str, int]]:
        return await self._read(self.store.origins, name, from_seq, to_seq)

    async def committed(self, name: str, publisher: str) -> int:
        return await self._read(self.store.committed, name, publisher)

    async def open_log(self, name: str, transactional: bool, complete: int | None) -> None:
        """Before its writer starts: see LogStore.open_log."""
        await self._waiting(self.store.open_log, name, transactional, complete)

    async def stage(self, name: str, checkpoint: int, progress: dict[str, tuple[int, int | None]]) -> None:
        await self._waiting(self.store.stage, name, checkpoint, progress)

    async def commit_staged(self, prefix: str, checkpoint: int) -> None:
        """A checkpoint is complete: the transactional logs of its tradecraft show what it staged."""
        for name in await waiting_for_space(lambda: self._run(self.store.commit_staged, prefix, checkpoint),
                                            f"commit_staged {prefix}"):
            self._notify(name)

    async def end(self, name: str, wait_for_space: bool = True,
                  progress: dict[str, tuple[int, int | None]] | None = None) -> None:
        """End the log; a full disk is waited out, or (for a client's publish) raises NoSpace."""
        if wait_for_space:
            await self._waiting(self.store.end, name, progress)
        else:
            await self._run(self.store.end, name)
            self._notify(name)

    async def delete(self, prefix: str, keep: frozenset[str] = frozenset()) -> None:
        await self._run(self.store.delete, prefix, keep)
        for name in [n for n in self._changed if n.startswith(prefix)]:
            self._notify(name)

    async def follow_raw(self, name: str, from_seq: int) -> AsyncIterator[tuple[Entry, bytes]]:
        """Every batch body from `from_seq` on, waiting for appends, until the log has ended."""
        seq = from_seq
        while True:
            event = self._changed.setdefault(name, trio.Event())
            entries = await self._read(self.store.entries, name, seq, READ_AHEAD)
            for entry in entries:
                body = await self._read(self.store.read, name, entry)
                yield entry, body
                seq = entry.seq + 1
            if entries:
                continue
            info = await self.info(name)
            if info is None:
                return
            if info["ended"]:
                # Batches appended between the look at the entries and this one came before the
                # end (it is committed after them): a last look, and only then the end.
                if await self._read(self.store.entries, name, seq, 1):
                    continue
                return
            with trio.move_on_after(LOOK_AGAIN):
                await event.wait()

    async def follow(self, name: str, from_seq: int,
                     schema: pa.Schema) -> AsyncIterator[tuple[Entry, pa.RecordBatch]]:
        async for entry, body in self.follow_raw(name, from_seq):
            yield entry, open_batch(pa.py_buffer(body), schema)

    def close(self) -> None:
        self.store.close()
