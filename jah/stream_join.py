"""STREAM_JOIN: one partition range of a join of two streams within a time window.

Both sides' rows are held by `jah.interval.IntervalJoin` until the watermark (the least of the two
sides') passes them by the window, so state stays bounded by the window, not the stream. A side
whose watermark runs more than a window ahead of the other's waits for it: otherwise a fast side
would pile up rows that cannot be dropped yet. Rows before the watermark are late and go to
`rejected`. Pairs and left-join rows without a partner go out with the envelope of the batch
that completed them, so each source position gets exactly one envelope per port.

Watermarks out: `out` carries the watermark ``min(W - window, t0)``, W the least of the two inputs'
watermarks and t0 the earliest stream time of the left-join rows let go but not sent yet (none: no
bound). It goes after the envelope that sent what it releases, only when it rises, and at most once
per envelope: a windowed Jah sends the windows a watermark closes with the envelope before it, and
a second watermark in a row would close windows it has no envelope for (see `jah.windowed`), so a
rise waits for the next envelope. The end of the inputs ends `out` as before (no watermark of the
end of time). It is safe: a row taken from now on has ``t >= W`` (an earlier one is late and
rejected) and meets only held rows, which have ``t >= W - window`` (the rest is evicted,
`IntervalJoin.cut`), so a pair made later has both its times ``>= W - window``; a row let go waits
for the next envelope, and the bound with it. It bounds either time column of the output: the
stream's time field (same name) and the `with` side's (named `STREAM.field` when the name clashes);
a left join's unmatched row has no `with` time (null, late to any window). One lock orders what
goes out: rows made under one watermark leave before a higher one, whichever side's task made them.
`rejected` carries late rows and no watermark (every row on it is before one).

Checkpoints: a side that meets barrier N waits there until the other side has met it too (or
has ended), so the state written holds exactly what came before N on both inputs; then one
barrier N goes on every output. A side held at a barrier does not pace the other: the other must
reach its own barrier N, which its source put within one credit window of data. Of two barriers
held, the least id goes first (a checkpoint given up leaves its barrier on one side only).
"""
from __future__ import annotations

from typing import Any

import pyarrow as pa
import trio

from hallelujah.durations import parse_duration
from jah.base import Host, Jah
from jah.checkpoint import State
from jah.envelope import CHECKPOINT, NONE, WATERMARK, Envelope
from jah.interval import IntervalJoin
from jah.rejecting import rejected_batch
from jah.watermarks import BEFORE_TIME, END_OF_TIME, LATE, late_rows, micros

SIDES = ("in", "with")


class StreamJoin(Jah):
    role = "stream_join"

    def __init__(self, jah_id: str, spec: dict[str, Any], host: Host) -> None:
        super().__init__(jah_id, spec, host)
        a = spec["analytic"]
        self.window = round(parse_duration(a["window"], "window") * 1_000_000)
        self.join = IntervalJoin(self.schema("in"), self.schema("with"), a["on"], a["time"], self.window,
                                 a["how"], self.schema("out"))
        self.times = {"in": a["time"]["stream"], "with": a["time"]["with"]}
        self.marks = dict.fromkeys(SIDES, BEFORE_TIME)
        self.watermark = BEFORE_TIME
        self.moved = trio.Event()
        self.unmatched: list[pa.RecordBatch] = []      # left rows let go, waiting for an envelope
        self.last: Envelope | None = None
        self.empty = pa.RecordBatch.from_pylist([], schema=self.schema("out"))
        self.let_go_from = END_OF_TIME                 # earliest stream time in `unmatched`
        self.sent_mark = BEFORE_TIME                   # the last watermark sent on `out`
        self.sent_rows = False                         # an envelope went out since that watermark
        self.sending = trio.Lock()
        self.at_barrier: dict[str, Envelope | None] = dict.fromkeys(SIDES)
        self.ended_sides: set[str] = set()
        self.barrier_passed = trio.Event()

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            for side in SIDES:
                nursery.start_soon(self._side, side)
        rest = self.join.finish()
        if rest.num_rows or self.unmatched:
            self.unmatched.append(rest)
            if self.last is not None:
                await self._emit(Envelope(None, self.last.origin + 1, self.last.source), [])

    async def _side(self, side: str) -> None:
        async for env in self.inputs[side]:
            if env.marker == WATERMARK:
                self.marks[side] = env.value
                self._advance()
                async with self.sending:
                    await self._pass_watermark()
            elif env.marker == CHECKPOINT:
                await self._barrier(side, env)
            elif env.marker != NONE:
                async with self.sending:
                    await self.emit("out", env)
            else:
                await self._pace(side)
                await self._batch(side, env)
        self.marks[side] = END_OF_TIME
        self.ended_sides.add(side)
        self._advance()
        async with self.sending:
            await self._pass_watermark()
        await self._pass_barrier()

    async def _pace(self, side: str) -> None:
        other = "with" if side == "in" else "in"
        while self.marks[side] != END_OF_TIME and self.marks[other] != BEFORE_TIME \
                and self.marks[side] > self.marks[other] + self.window and self.at_barrier[other] is None:
            self.moved = trio.Event()
            await self.moved.wait()

    async def _barrier(self, side: str, env: Envelope) -> None:
        """Hold this side at barrier `env` until it has gone on (see the module's docstring)."""
        if env.value <= self.checkpointed:
            return                                     # gone on already (a repeat)
        self.at_barrier[side] = env
        self.moved.set()                               # the other side's pacing must not wait on this one
        await self._pass_barrier()
        while self.at_barrier[side] is env:
            await self.barrier_passed.wait()

    async def _pass_barrier(self) -> None:
        """Once every side still running is at a barrier, the least of them goes on every
        output, after this Jah's state is written (`Jah.emit`)."""
        held = [b for b in self.at_barrier.values() if b is not None]
        if not held or any(self.at_barrier[s] is None and s not in self.ended_sides for s in SIDES):
            return
        barrier = min(held, key=lambda b: b.value)
        async with self.sending:
            for port in list(self.outputs):
                await self.emit(port, barrier)
        for side, held_at in self.at_barrier.items():
            if held_at is not None and held_at.value <= barrier.value:
                self.at_barrier[side] = None
        passed, self.barrier_passed = self.barrier_passed, trio.Event()
        passed.set()

    def _advance(self) -> None:
        mark = min(self.marks.values())
        if mark > self.watermark:
            self.watermark = mark
            with self.busy():
                let_go = self.join.advance(mark) if mark != END_OF_TIME else self.join.finish()
            if let_go.num_rows:
                self.unmatched.append(let_go)
                self.let_go_from = min(self.let_go_from, int(micros(let_go.column(self.times["in"])).min()))
        self.moved.set()

    async def _pass_watermark(self) -> None:
        """Send the watermark `out` can promise now, if it rose and an envelope went out since the
        last one (see the module's docstring); called holding `sending`, after what was made before
        it has gone."""
        if self.watermark == END_OF_TIME or not self.sent_rows:
            return
        mark = min(self.join.cut, self.let_go_from)
        if mark > self.sent_mark:
            self.sent_mark, self.sent_rows = mark, False
            await self.emit("out", Envelope(None, marker=WATERMARK, value=mark))

    async def _batch(self, side: str, env: Envelope) -> None:
        batch = env.batch
        assert batch is not None
        async with self.sending:
            with self.busy():
                late = late_rows(micros(batch.column(self.times[side])), self.watermark)
                if late.any():
                    rejected = batch.filter(pa.array(late))
                    batch = batch.filter(pa.array(~late))
                else:
                    rejected = batch.slice(0, 0)
                pairs = self.join.add_stream(batch) if side == "in" else self.join.add_with(batch)
            await self.emit("rejected", env.derive(rejected_batch(rejected, LATE, self.schema("rejected"))))
            await self._emit(env, [pairs])
            await self._pass_watermark()

    async def _emit(self, env: Envelope, batches: list[pa.RecordBatch]) -> None:
        self.last = env
        parts = [b for b in [*self.unmatched, *batches] if b.num_rows]
        self.unmatched, self.let_go_from = [], END_OF_TIME
        out = pa.concat_batches(parts) if len(parts) > 1 else (parts[0] if parts else self.empty)
        await self.emit("out", Envelope(out, env.origin, env.source, parts=env.parts))
        self.sent_rows = True

    def state_rows(self) -> int:
        return self.join.rows_held

    def snapshot(self) -> State:
        tables = self.join.state()
        if self.unmatched:
            tables["unmatched"] = pa.Table.from_batches(self.unmatched)
        last = self.last
        return State(tables, {
            "cut": self.join.cut, "marks": self.marks, "watermark": self.watermark,
            "let_go_from": self.let_go_from, "sent_mark": self.sent_mark, "sent_rows": self.sent_rows,
            "last": None if last is None else [last.origin, last.source]})

    def restore(self, state: State) -> None:
        meta = state.meta
        self.join.restore(state.tables, int(meta["cut"]))
        self.marks = {side: int(mark) for side, mark in meta["marks"].items()}
        self.watermark, self.let_go_from = int(meta["watermark"]), int(meta["let_go_from"])
        self.sent_mark, self.sent_rows = int(meta["sent_mark"]), bool(meta["sent_rows"])
        self.unmatched = state.tables["unmatched"].to_batches() if "unmatched" in state.tables else []
        if meta["last"] is not None:
            self.last = Envelope(None, int(meta["last"][0]), str(meta["last"][1]))
