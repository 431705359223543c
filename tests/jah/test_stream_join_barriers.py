"""STREAM_JOIN lines up checkpoint barriers across its two inputs: in memory, no daemon.

One barrier goes on each output, once both inputs have brought it (or one has ended), with what
came before it on both inputs ahead of it; a side held at a barrier never makes the other wait
for its watermark (that would deadlock the checkpoint), and a repeat is dropped.
"""
from __future__ import annotations

import trio

from jah.envelope import CHECKPOINT, NONE, Envelope, end_of_stream
from tests.jah.test_stream_join_watermarks import MS, WITH_RIDS, drain, next_envelope, running_join


def barrier(checkpoint: int) -> Envelope:
    return Envelope(None, 0, "", CHECKPOINT, checkpoint)


def rids(envs: list[Envelope]) -> list[tuple[int, int]]:
    return [p for e in envs if e.marker == NONE
            for p in zip(e.batch.column("rid").to_pylist(), e.batch.column("b.rid").to_pylist())]


async def test_one_barrier_goes_on_once_both_inputs_brought_it_after_every_pair_made_before_it() -> None:
    async with running_join("inner", out_capacity=float("inf")) as j:
        await j.batch("in", [(10 * MS, 1, 0)])
        await j.feeds["in"].send(barrier(1))
        await j.batch("in", [(12 * MS, 1, 1)])          # after the barrier: waits behind it
        await j.batch("with", [(11 * MS, 1, WITH_RIDS)])
        early: list[Envelope] = []
        while (0, WITH_RIDS) not in rids(early):        # the pair made before either barrier
            early.append(await next_envelope(j.out))
        assert all(e.marker != CHECKPOINT for e in early), "a barrier went on before the other input brought it"
        await j.feeds["with"].send(barrier(1))
        await j.feeds["with"].send(barrier(1))          # a repeat: dropped
        await j.batch("with", [(13 * MS, 1, WITH_RIDS + 1)])
        for side in ("in", "with"):
            await j.feeds[side].send(end_of_stream())
        out = early + await drain(j.out)
        rejected = await drain(j.rejected)
    at = [i for i, e in enumerate(out) if e.marker == CHECKPOINT]
    assert len(at) == 1 and out[at[0]].value == 1
    assert [e.value for e in rejected if e.marker == CHECKPOINT] == [1]
    assert sorted(rids(out[at[0]:])) == [(0, WITH_RIDS + 1), (1, WITH_RIDS), (1, WITH_RIDS + 1)]
    assert rids(out[:at[0]]) == [(0, WITH_RIDS)]


async def test_a_side_held_at_a_barrier_does_not_pace_the_other() -> None:
    """`with` runs far ahead of `in` by watermark: it would wait for `in` to move, but `in` is
    held at barrier 1 until `with` brings barrier 1 too."""
    async with running_join("inner", out_capacity=float("inf")) as j:
        await j.batch("in", [(0, 1, 0)])
        await j.watermark("in", 0)
        await j.feeds["in"].send(barrier(1))
        for i in range(5):                              # minutes ahead of `in`'s watermark
            await j.batch("with", [(60_000 * MS * (i + 1), 1, WITH_RIDS + i)])
            await j.watermark("with", 60_000 * MS * (i + 1))
        await j.feeds["with"].send(barrier(1))
        with trio.fail_after(2):
            while (await next_envelope(j.out)).marker != CHECKPOINT:
                pass
        for side in ("in", "with"):
            await j.feeds[side].send(end_of_stream())
        await drain(j.out)


async def test_a_barrier_goes_on_when_the_other_input_ends_without_it() -> None:
    async with running_join("left", out_capacity=float("inf")) as j:
        await j.batch("in", [(5 * MS, 1, 0)])
        await j.feeds["in"].send(barrier(3))
        await j.batch("with", [(6 * MS, 1, WITH_RIDS)])
        await j.feeds["with"].send(end_of_stream())     # its source had read all it had
        with trio.fail_after(2):
            while (got := await next_envelope(j.out)).marker != CHECKPOINT:
                pass
        assert got.value == 3
        await j.feeds["in"].send(end_of_stream())
        assert rids(await drain(j.out)) == []           # the pair went before the barrier
