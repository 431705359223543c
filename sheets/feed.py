"""The congregation's latest answers, fetched by a background trio task with a timeout, so a slow
or dead congregation makes the screen say "unreachable", never freeze."""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import trio

import hallelujah
from sheets import views

HISTORY = 60     # answers (about a minute) of rates kept for the sparklines


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
        # each tradecraft's (in, out) rows/s of the last HISTORY answers, oldest first
        self.history: dict[str, deque[tuple[float | None, float | None]]] = {}

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
        for r in self.rows:
            self.history.setdefault(r.name, deque(maxlen=HISTORY)).append((r.in_rate, r.out_rate))

    async def run(self, changed: Callable[[], None], every: float = 1.0) -> None:
        """Refresh forever, calling `changed()` after each attempt (answered or not)."""
        while True:
            await self.refresh()
            changed()
            await trio.sleep(every)

    def tradecraft(self, name: str) -> dict[str, Any] | None:
        return views.find(self.info, name)


class Tail:
    """The last `keep` rows of the batches seen so far (an output followed as it grows)."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.batches: list[pa.RecordBatch] = []
        self.held = 0          # rows in self.batches
        self.seen = 0          # rows of every batch added

    def add(self, batch: pa.RecordBatch) -> None:
        self.batches.append(batch)
        self.held += batch.num_rows
        self.seen += batch.num_rows
        while self.held - self.batches[0].num_rows >= self.keep:
            self.held -= self.batches.pop(0).num_rows

    def table(self) -> pa.Table | None:
        if not self.batches:
            return None
        table = pa.Table.from_batches(self.batches)
        return table.slice(max(0, table.num_rows - self.keep))
