"""What the two stages of an aggregate share: one output envelope per source position, and the
oldest source position their open windows still hold.

A window closes on a watermark, which follows the batch that moved it; its rows go out in the
envelope of that batch's position, so a SINK that takes each position once keeps them once. Where
no batch is waiting (two watermarks in a row), closed rows wait for the next batch, or for the end.
The `value` of each envelope is the first position whose rows are still held open: a replay after
a crash starts there and rebuilds the open windows (`Envelope.resume_after`).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pyarrow as pa

from jah.base import Jah
from jah.checkpoint import State
from jah.envelope import NONE, WATERMARK, Envelope
from jah.watermarks import BEFORE_TIME, END_OF_TIME


class HeldOrigins:
    """Per open window (by start), the first source position that put rows in it."""

    def __init__(self, size_us: int) -> None:
        self.size_us = size_us
        self.first: dict[int, int] = {}

    def record(self, starts: Iterable[int], origin: int) -> None:
        """`origin` put rows in the windows starting at `starts` (repeats allowed)."""
        for start in starts:
            self.first.setdefault(int(start), origin)

    def close(self, watermark: int) -> None:
        for start in [s for s in self.first if s + self.size_us <= watermark]:
            del self.first[start]

    def earliest(self) -> int:
        return min(self.first.values(), default=0)


class WindowedOutput:
    """The `out` port of a windowed Jah: exactly one envelope per source position."""

    def __init__(self, jah: "WindowedJah", empty: Callable[[], pa.Table]) -> None:
        self.jah = jah
        self.empty = empty
        self.pending: Envelope | None = None     # a batch whose envelope has not gone out yet
        self.last: Envelope | None = None
        self.closed: list[pa.Table] = []
        self.closed_from = 0      # the first position of the rows in `closed` (0: none)

    async def batch(self, env: Envelope) -> None:
        """A new source position: the previous one goes out (with what closed meanwhile). The
        parts of one position from several datastreams (each instance sends every position)
        count once."""
        if self.last is not None and (env.origin, env.source) == (self.last.origin, self.last.source):
            return
        if self.pending is not None:
            # what the Jah holds, not only its own windows: a MERGE also counts what each
            # AGGREGATE instance still holds (else the first positions went out as holding
            # nothing, and a crash then resumed after rows no window had closed yet)
            await self._send(self.pending, self.jah.held_from())
        self.pending = self.last = env

    async def windows(self, closed: pa.Table, held_from: int) -> bool:
        """Rows of windows a watermark closed; `held_from` = first position still held before it.
        False while closed rows wait for a position to go out with: the watermark must wait too,
        or whoever merges this output would close those windows before their rows came."""
        if closed.num_rows:
            self.closed.append(closed)
            self.closed_from = _least(self.closed_from, held_from)
        if self.pending is not None:
            await self._send(self.pending, held_from)
            self.pending = None
        return not self.closed

    async def end(self, closed: pa.Table) -> None:
        """The input ended: the last windows go out with the last position (or just after it)."""
        if closed.num_rows:
            self.closed.append(closed)
        if self.pending is not None:
            await self._send(self.pending, 0)
        elif self.closed and self.last is not None:
            await self._send(Envelope(None, self.last.origin + 1, self.last.source), 0)

    async def _send(self, env: Envelope, held_from: int) -> None:
        """`held_from` is what the sender holds open; rows closed earlier and sent only now came
        from positions before it, which whoever merges them must count as held from there."""
        rows = pa.concat_tables(self.closed) if self.closed else self.empty()
        if self.closed:
            held_from = _least(held_from, self.closed_from)
        self.closed, self.closed_from = [], 0
        batch = rows.combine_chunks().to_batches()[0] if rows.num_rows else \
            pa.RecordBatch.from_pylist([], schema=rows.schema)
        await self.jah.emit("out", Envelope(batch, env.origin, env.source, value=held_from,
                                            parts=self.jah.parts_out(env)))


class WindowedJah(Jah):
    """Base of both aggregate stages: markers in, windows closing at watermarks, envelopes out.

    At a checkpoint it keeps its windows (`window_state`), its watermark, the first position of
    each open window, and the position whose envelope it holds back: restored, it goes on as if it
    had never stopped, and every envelope goes out under the same position as before.
    """

    held: HeldOrigins
    watermark: int = BEFORE_TIME
    out: WindowedOutput | None = None
    _resumed: dict[str, Any] | None = None
    _unsent: pa.Table | None = None

    def window_state(self) -> tuple[dict[str, pa.Table], int | None, dict[str, Any]]:
        """The open windows' tables, the highest watermark they closed, and other scalars."""
        raise NotImplementedError

    def restore_windows(self, tables: dict[str, pa.Table], closed: int | None, meta: dict[str, Any]) -> None:
        raise NotImplementedError

    def snapshot(self) -> State:
        tables, closed, extra = self.window_state()
        out = self.out
        if out is not None and out.closed:       # closed windows' rows waiting for a position
            tables = {**tables, "unsent": pa.concat_tables(out.closed)}
        return State(tables, {
            "watermark": self.watermark, "closed": closed, "held": sorted(self.held.first.items()),
            "pending": _position(out.pending if out else None), "last": _position(out.last if out else None),
            "unsent_from": out.closed_from if out else 0,
            **extra})

    def restore(self, state: State) -> None:
        meta = state.meta
        self.watermark = int(meta["watermark"])
        self.held.first = {int(start): int(origin) for start, origin in meta["held"]}
        self.restore_windows(state.tables, meta["closed"], meta)
        self._resumed = meta
        self._unsent = state.tables.get("unsent")

    def empty(self) -> pa.Table:
        raise NotImplementedError

    def close(self, watermark: int) -> pa.Table:
        """The rows of the windows `watermark` closes (and forget them)."""
        raise NotImplementedError

    async def fold(self, env: Envelope) -> None:
        """Take one batch into the open windows."""
        raise NotImplementedError

    def held_from(self) -> int:
        return self.held.earliest()

    def parts_out(self, env: Envelope) -> int:
        """Into how many datastreams the position of `env` goes out: an instance sends its part
        (as many as its input says), so whoever merges the instances knows them coupled."""
        return env.parts

    async def run(self) -> None:
        out = self.out = WindowedOutput(self, self.empty)
        if self._resumed is not None:
            out.pending, out.last = _envelope(self._resumed["pending"]), _envelope(self._resumed["last"])
            out.closed = [self._unsent] if self._unsent is not None and self._unsent.num_rows else []
            out.closed_from = int(self._resumed.get("unsent_from", 0))
        async for env in self.inputs["in"]:
            if env.marker == NONE:
                await out.batch(env)
                await self.fold(env)
                continue
            if env.marker == WATERMARK:
                held_from = self.held_from()
                with self.busy():
                    closed = self.close(env.value)
                self.held.close(env.value)
                self.watermark = env.value
                if not await out.windows(closed, held_from):
                    continue          # a later watermark goes on with them (it is higher)
            for port in list(self.outputs):
                await self.emit(port, env)
        await out.end(self.close(END_OF_TIME))


def _least(a: int, b: int) -> int:
    """The earlier of two first positions, where 0 means none."""
    return min(a, b) if a > 0 and b > 0 else max(a, b)


def _position(env: Envelope | None) -> list[Any] | None:
    return None if env is None else [env.origin, env.source, env.parts]


def _envelope(position: list[Any] | None) -> Envelope | None:
    """The envelope a restored Jah holds back: only its position matters (see WindowedOutput)."""
    return None if position is None else Envelope(None, int(position[0]), str(position[1]), parts=int(position[2]))
