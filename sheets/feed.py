"""The congregations' latest answers, fetched by a background trio task with a timeout, so a slow
or dead congregation makes the screen say "unreachable", never freeze."""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import trio

import hallelujah
from sheets import views
from sheets.congregations import Answer, answered, failed

HISTORY = 60     # answers (about a minute) of rates kept for the sparklines


class Feed:
    """Describe each congregation once every `every` seconds; keep each one's last answer, and
    for the one shown (`current`) its tradecraft rows with rates and their history."""

    def __init__(self, db: hallelujah.Database, timeout: float = 2.0) -> None:
        self.db = db
        self.timeout = timeout
        self.addresses = list(db.addresses)
        # one address each, to say which answers (the first that answers serves the updates)
        self.dbs = {a: db if len(self.addresses) == 1 else hallelujah.Database([a]) for a in self.addresses}
        self.answers = {a: Answer() for a in self.addresses}
        self.current = self.addresses[0]
        self.rows: list[views.TradecraftRow] = []
        self.attempts = 0                          # describes sent, answered or not
        self._samples: dict[str, views.Sample] = {}
        # each tradecraft's (in, out) rows/s of the last HISTORY answers, oldest first
        self.history: dict[str, deque[tuple[float | None, float | None]]] = {}

    @property
    def info(self) -> dict[str, Any] | None:
        return self.answers[self.current].info

    @property
    def error(self) -> str | None:
        return self.answers[self.current].error

    @property
    def answered_at(self) -> float | None:      # trio.current_time() of the shown congregation's last answer
        return self.answers[self.current].answered_at

    def choose(self, address: str) -> None:
        """Show `address`'s tradecrafts: rates start again from its next answers."""
        if address != self.current and address in self.answers:
            self.current, self._samples, self.history = address, {}, {}
            self.rows = views.tradecraft_rows(self.info or {}, {}, trio.current_time())

    async def refresh(self) -> None:
        self.attempts += 1
        async with trio.open_nursery() as nursery:
            for address in self.addresses:
                nursery.start_soon(self._ask, address)

    async def _ask(self, address: str) -> None:
        last = self.answers[address]
        info = None
        try:
            with trio.move_on_after(self.timeout):
                info = await self.dbs[address].describe("")
            if info is None:
                self.answers[address] = failed(last, f"no answer in {self.timeout:g}s")
                return
        except (hallelujah.HallelujahError, OSError) as exc:
            self.answers[address] = failed(last, str(exc))
            return
        now = trio.current_time()
        self.answers[address] = answered(last, info, now)
        if address == self.current:
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
