"""The async face of the logs of batches: appends through one thread, and followers woken on append."""
from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import trio

from congregation.segments import Append, Entry, LogStore
from hallelujah.frames import open_batch

T = TypeVar("T")
READ_AHEAD = 8     # index rows fetched per query when following a log


class Logs:
    def __init__(self, data_dir: Path) -> None:
        self.store = LogStore(data_dir)
        self._limiter = trio.CapacityLimiter(1)          # appends, one at a time
        self._read_limiter = trio.CapacityLimiter(1)     # readers, on the store's reader connection
        self._changed: dict[str, trio.Event] = {}

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        """Reads never queue behind an append (which may be syncing a publish to disk)."""
        return await trio.to_thread.run_sync(fn, *args, limiter=self._read_limiter)

    def _notify(self, name: str) -> None:
        event = self._changed.pop(name, None)
        if event is not None:
            event.set()

    async def create(self, name: str, schema: bytes) -> None:
        await self._run(self.store.create, name, schema)

    async def info(self, name: str) -> dict[str, Any] | None:
        return await self._read(self.store.info, name)

    async def names(self, prefix: str) -> list[str]:
        return await self._run(self.store.names, prefix)

    async def progress(self, name: str) -> dict[str, int]:
        return await self._run(self.store.progress, name)

    async def resume_points(self, name: str) -> dict[str, int]:
        return await self._run(self.store.resume_points, name)

    async def last_body(self, name: str) -> bytes | None:
        return await self._run(self.store.last_body, name)

    async def append(self, name: str, body: Any, rows: int, source: str = "", origin: int = -1,
                     sync: bool = False, resume: int | None = None) -> int:
        seq = await self._run(self.store.append, name, body, rows, source, origin, sync, resume)
        self._notify(name)
        return seq

    async def append_many(self, name: str, items: list[tuple]) -> list[int]:
        """Batches as (body, rows, source, origin, resume), in one transaction."""
        seqs = await self._run(self.store.append_many, name, [Append(*i) for i in items])
        self._notify(name)
        return seqs

    async def end(self, name: str) -> None:
        await self._run(self.store.end, name)
        self._notify(name)

    async def delete(self, prefix: str) -> None:
        await self._run(self.store.delete, prefix)
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
            await event.wait()

    async def follow(self, name: str, from_seq: int,
                     schema: pa.Schema) -> AsyncIterator[tuple[Entry, pa.RecordBatch]]:
        async for entry, body in self.follow_raw(name, from_seq):
            yield entry, open_batch(pa.py_buffer(body), schema)

    def close(self) -> None:
        self.store.close()
