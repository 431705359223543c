"""STREAM_JOIN passes watermarks on: in memory, no daemon, the Jah as the planner makes it.

The promise checked: no row of `out` has an event time (stream side, or a non-null `with` side)
before a watermark sent ahead of it; watermarks rise; and the rows, the late rows on `rejected`
and the envelopes per position are what they were before watermarks went out.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pyarrow as pa
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from congregation.planning import plan_tradecraft
from hallelujah.tradecraft import parse_document
from jah.envelope import END_OF_STREAM, NONE, WATERMARK, Envelope, end_of_stream
from jah.runtime import Runtime
from jah.stream_join import StreamJoin
from jah.streams import Lane, Sender
from jah.watermarks import BEFORE_TIME

MS = 1_000
WINDOW = 10 * MS
SIDE = {"in": "a", "with": "b"}         # port -> stream feeding it
WITH_RIDS = 1_000_000                   # the with side's row ids start here (rejected rows mix sides)


def document(how: str) -> dict:
    schema = {"t": "timestamp[us]", "k": "int64", "rid": "int64"}
    return {"tradecraft": "wm", "analytics": [
        {"name": "a", "kind": "stream", "time": "t", "schema": schema},
        {"name": "b", "kind": "stream", "time": "t", "schema": schema},
        {"name": "ab", "kind": "join", "stream": "a", "with": "b", "on": {"k": "k"},
         "time": {"stream": "t", "with": "t"}, "window": "10ms", "how": how}]}


class Tap(Sender):
    """The far end of an output as the test sees it: every envelope in order, markers included
    (a real receiving port merges watermarks and would hide one sent twice). A bounded channel,
    so a test that reads slowly pushes back as a receiver does."""

    def __init__(self, capacity: float) -> None:
        self.sending, self.received = trio.open_memory_channel[Envelope](capacity)

    async def deliver(self, env: Envelope) -> None:
        await self.sending.send(env)


@dataclass
class Running:
    feeds: dict[str, Lane]
    out: Tap
    rejected: Tap
    origins: dict[str, int] = field(default_factory=lambda: {"in": 0, "with": 0})

    async def batch(self, side: str, rows: list[tuple[int | None, int | None, int]]) -> None:
        """Rows (time in µs or None, key or None, row id) as the next position of `side`."""
        t, k, rid = zip(*rows) if rows else ([], [], [])
        batch = pa.RecordBatch.from_arrays([pa.array(t, pa.timestamp("us")), pa.array(k, pa.int64()),
                                            pa.array(rid, pa.int64())], names=["t", "k", "rid"])
        await self.feeds[side].send(Envelope(batch, self.origins[side], SIDE[side]))
        self.origins[side] += 1

    async def watermark(self, side: str, mark: int) -> None:
        await self.feeds[side].send(Envelope(None, marker=WATERMARK, value=mark))


@asynccontextmanager
async def running_join(how: str, out_capacity: float = 1, rejected_capacity: float = float("inf")
                       ) -> AsyncIterator[Running]:
    """A STREAM_JOIN from the planner's spec of `document(how)`, hosted by a Runtime (not
    listening), its inputs fed by the test and its outputs tapped; all within a deadline."""
    plan = plan_tradecraft(parse_document(document(how)), lambda k: 0)
    spec = next(j.spec for j in plan.jahs.values() if j.role == "stream_join")
    assert spec["inputs"] == {"in": 1, "with": 1} and spec["outputs"] == {"out": 1, "rejected": 1}
    jah = StreamJoin("ab/0", spec, Runtime("test", "unused.sock", lambda *_: None))
    running = Running({side: jah.inputs[side].attach() for side in SIDE}, Tap(out_capacity), Tap(rejected_capacity))
    jah.outputs["out"].senders.append(running.out)
    jah.outputs["rejected"].senders.append(running.rejected)
    jah.check_wired()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(jah.serve)
            yield running


async def next_envelope(tap: Tap) -> Envelope:
    with trio.fail_after(5):
        return await tap.received.receive()


async def drain(tap: Tap) -> list[Envelope]:
    """What a tap gets up to and without the end of its stream."""
    got = []
    while (env := await next_envelope(tap)).marker != END_OF_STREAM:
        got.append(env)
    return got


def times(column: pa.Array) -> list[int | None]:
    return column.cast(pa.int64()).to_pylist()


def check_promise(out: list[Envelope]) -> list[int]:
    """Watermarks rise, one at most after each envelope, and no row after one is earlier (null
    stream time: the earliest; a null `with` time is no time). Returns the watermarks."""
    marks: list[int] = []
    for i, env in enumerate(out):
        if env.marker == WATERMARK:
            assert not marks or env.value > marks[-1], f"watermark {env.value} after {marks}"
            assert i and out[i - 1].marker == NONE, f"watermark {env.value} not after an envelope"
            marks.append(env.value)
        elif env.marker == NONE and marks:
            assert env.batch is not None
            for ts, tw in zip(times(env.batch.column("t")), times(env.batch.column("b.t"))):
                assert (BEFORE_TIME if ts is None else ts) >= marks[-1], f"row at {ts} after watermark {marks[-1]}"
                assert tw is None or tw >= marks[-1], f"with time {tw} after watermark {marks[-1]}"
    return marks


# ---- the promise over random inputs ---------------------------------------------------------

ROWS = st.lists(st.tuples(st.one_of(st.none(), st.integers(0, 80).map(lambda x: x * MS)),
                          st.one_of(st.none(), st.integers(0, 3))), max_size=6)
STEPS = st.lists(st.tuples(ROWS, st.one_of(st.none(), st.integers(0, 90).map(lambda x: x * MS)),
                           st.integers(0, 3)), max_size=7)


def reference(a: list[tuple], b: list[tuple], how: str) -> list[tuple[int, int | None]]:
    """(stream rid, with rid) of every pair of accepted rows, and, for a left join, (rid, None)
    for a stream row with none."""
    pairs = []
    for ts, ka, ra in a:
        mine = [rb for tw, kb, rb in b if None not in (ts, tw, ka, kb) and ka == kb and abs(ts - tw) <= WINDOW]
        pairs += [(ra, rb) for rb in mine] or ([(ra, None)] if how == "left" else [])
    return sorted(pairs, key=repr)


@settings(max_examples=100, deadline=None)
@given(how=st.sampled_from(["inner", "left"]), steps=st.fixed_dictionaries({"in": STEPS, "with": STEPS}),
       out_capacity=st.sampled_from([1, 3]))
def test_no_row_is_before_a_watermark_sent_ahead_of_it(how: str, steps: dict[str, list], out_capacity: int) -> None:
    fed: dict[str, list[tuple]] = {"in": [], "with": []}
    bounds: dict[tuple[str, int], int] = {}        # (side, rid) -> that side's watermark before it

    async def feed(running: Running, side: str) -> None:
        mark, rid = BEFORE_TIME, WITH_RIDS if side == "with" else 0
        for rows, watermark, pause in steps[side]:
            numbered = [(t, k, rid + i) for i, (t, k) in enumerate(rows)]
            rid += len(rows)
            fed[side] += numbered
            bounds.update({(side, r): mark for _, _, r in numbered})
            await running.batch(side, numbered)
            if watermark is not None:
                mark = max(mark, watermark)
                await running.watermark(side, watermark)
            for _ in range(pause):
                await trio.lowlevel.checkpoint()     # let the other side run ahead by a little
        await running.feeds[side].send(end_of_stream())

    async def scenario() -> tuple[list[Envelope], list[Envelope]]:
        async with running_join(how, out_capacity) as running, trio.open_nursery() as feeders:
            for side in SIDE:
                feeders.start_soon(feed, running, side)
            return await drain(running.out), await drain(running.rejected)

    out, rejected = trio.run(scenario)
    check_promise(out)
    # Late rows: before the least watermark the join had, so before one their own side sent ahead.
    late = {rid for e in rejected for rid in e.batch.column("rid").to_pylist()}
    for side, rows in fed.items():
        for t, _, rid in rows:
            if rid in late:
                assert (BEFORE_TIME if t is None else t) < bounds[side, rid], (side, t, rid)
    # The rows: exactly the pairs of the rows taken, each once.
    kept = {side: [r for r in rows if r[2] not in late] for side, rows in fed.items()}
    got = sorted(((rs, rw) for e in out if e.marker == NONE
                  for rs, rw in zip(e.batch.column("rid").to_pylist(), e.batch.column("b.rid").to_pylist())), key=repr)
    assert got == reference(kept["in"], kept["with"], how)
    # One envelope per position on each port (the left join's last rows may take the next one).
    positions = sorted((SIDE[s], o) for s in SIDE for o in range(len(steps[s])))
    assert sorted((e.source, e.origin) for e in rejected) == positions
    on_out = sorted((e.source, e.origin) for e in out if e.marker == NONE)
    assert on_out == positions or (how == "left" and len(on_out) == len(positions) + 1
                                   and set(on_out) - set(positions))


# ---- when the watermark moves ---------------------------------------------------------------

async def test_an_inner_join_passes_the_least_watermark_less_the_window_once_per_envelope() -> None:
    async with running_join("inner") as j:
        await j.batch("in", [(30 * MS, 1, 0), (45 * MS, 2, 1)])
        assert (await next_envelope(j.out)).rows == 0
        await j.watermark("in", 50 * MS)            # the other side has said nothing: no promise
        await j.batch("with", [(38 * MS, 1, WITH_RIDS)])
        pairs = await next_envelope(j.out)
        assert pairs.batch.column("rid").to_pylist() == [0]
        await j.watermark("with", 40 * MS)
        mark = await next_envelope(j.out)
        assert (mark.marker, mark.value) == (WATERMARK, 40 * MS - WINDOW)
        await j.watermark("with", 45 * MS)         # the least rises by 5 ms: said after the next envelope
        await j.watermark("in", 60 * MS)            # not the least: nothing to say
        await j.batch("with", [(46 * MS, 2, WITH_RIDS + 1)])
        pairs = await next_envelope(j.out)
        assert pairs.batch.column("rid").to_pylist() == [1]
        assert (await next_envelope(j.out)).value == 45 * MS - WINDOW
        for side in SIDE:
            await j.feeds[side].send(end_of_stream())
        assert [e.marker for e in await drain(j.out)] == []      # the end ends it, no last watermark


async def test_a_left_join_holds_the_watermark_at_its_unsent_rows_until_they_go() -> None:
    async with running_join("left") as j:
        await j.batch("in", [(25 * MS, 1, 0), (33 * MS, 2, 1)])
        assert (await next_envelope(j.out)).rows == 0
        await j.watermark("in", 50 * MS)
        await j.watermark("with", 40 * MS)         # lets row 0 (25 ms < 40 - 10) go, unmatched
        mark = await next_envelope(j.out)
        assert (mark.marker, mark.value) == (WATERMARK, 25 * MS)     # not 30 ms: row 0 is still to go
        await j.batch("with", [(41 * MS, 2, WITH_RIDS)])
        carried = await next_envelope(j.out)       # the next position carries row 0, then its pair
        assert list(zip(carried.batch.column("rid").to_pylist(), carried.batch.column("b.rid").to_pylist())) \
            == [(0, None), (1, WITH_RIDS)]
        mark = await next_envelope(j.out)
        assert (mark.marker, mark.value) == (WATERMARK, 40 * MS - WINDOW)
        for side in SIDE:
            await j.feeds[side].send(end_of_stream())
        assert check_promise([carried, mark, *await drain(j.out)]) == [30 * MS]


async def test_rows_made_before_a_watermark_leave_before_it_even_when_rejected_holds_them_up() -> None:
    """The two sides run as two tasks: one blocked sending its rows (here on `rejected`) must not
    be overtaken by the other's watermark."""
    async with running_join("inner", out_capacity=float("inf"), rejected_capacity=0) as j:
        await j.watermark("with", 50 * MS)
        await j.batch("in", [(30 * MS, 1, 0)])
        assert (await next_envelope(j.rejected)).rows == 0
        assert (await next_envelope(j.out)).rows == 0
        await j.batch("with", [(38 * MS, 1, WITH_RIDS)])   # pairs with row 0, then waits on `rejected`
        await trio.testing.wait_all_tasks_blocked()
        await j.watermark("in", 60 * MS)                    # the least is 50 ms: a promise of 40 ms
        await trio.testing.wait_all_tasks_blocked()
        assert (await next_envelope(j.rejected)).rows == 0
        pairs, mark = await next_envelope(j.out), await next_envelope(j.out)
        assert pairs.marker == NONE and pairs.batch.column("t").cast(pa.int64()).to_pylist() == [30 * MS]
        assert (mark.marker, mark.value) == (WATERMARK, 40 * MS)
        for side in SIDE:
            await j.feeds[side].send(end_of_stream())
        assert await drain(j.out) == [] and await drain(j.rejected) == []
