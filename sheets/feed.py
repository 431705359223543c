"""The congregation's latest answers, fetched by a background trio task with a timeout, so a slow
or dead congregation makes the screen say "unreachable", never freeze."""
from __future__ import annotations

from typing import Any, Callable

import pyarrow as pa
import trio

import hallelujah
from sheets import views


class Feed:
    """Describe once a `every` seconds; keep the last answer, its tradecraft rows with rates, and
    why the last fetch failed (None when it did not)."""

    def __init__(self, db: hallelujah.Database, timeout: float = 2.0) -> None:
        self.db = db
        self.timeout = timeout
        self.info: dict[str, Any] | None = None
        self.rows: list[views.TradecraftRow] = []
        self.error: str | None = None
        self.answered_at: float | None = None      # trio.current_time() of the last answer
        self.attempts = 0                          # describes sent, answered or not
        self._samples: dict[str, views.Sample] = {}

    async def refresh(self) -> None:
        self.attempts += 1
        info = None
        try:
            with trio.move_on_after(self.timeout):
                info = await self.db.describe("")
            if info is None:
                self.error = f"no answer in {self.timeout:g}s"
                return
        except (hallelujah.HallelujahError, OSError) as exc:
            self.error = str(exc)
            return
        now = trio.current_time()
        self.info, self.error, self.answered_at = info, None, now
        self.rows = views.tradecraft_rows(info, self._samples, now)
        self._samples = views.samples(self.rows, now)

    async def run(self, changed: Callable[[], None], every: float = 1.0) -> None:
        """Refresh forever, calling `changed()` after each attempt (answered or not)."""
        while True:
            await self.refresh()
            changed()
            await trio.sleep(every)

    def tradecraft(self, name: str) -> dict[str, Any] | None:
        return views.find(self.info, name)


async def tail(db: hallelujah.Database, ref: str, rows: int, keep: int) -> pa.Table:
    """The last `keep` of the first `rows` rows of a retained output (stream with a limit, so it
    ends even while the output is still growing)."""
    kept: list[pa.RecordBatch] = []
    held = 0
    async with db.stream(ref, from_start=True, limit=rows) as batches:
        async for batch in batches:
            kept.append(batch)
            held += batch.num_rows
            while kept and held - kept[0].num_rows >= keep:
                held -= kept.pop(0).num_rows
    if not kept:
        return pa.table({})
    table = pa.Table.from_batches(kept)
    return table.slice(max(0, table.num_rows - keep))
