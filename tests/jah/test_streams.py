"""Datastream ends in one process: the port's merge and an output's senders, with in-memory
channels (no daemon needed)."""
from __future__ import annotations

import pyarrow as pa
import trio

from jah.envelope import Envelope
from jah.streams import InPort, LocalSender, OutPort


def batch(n: int) -> pa.RecordBatch:
    return pa.record_batch({"x": pa.array(range(n), pa.int64())})


async def test_a_detached_sender_releases_a_blocked_send_and_the_others_get_every_envelope() -> None:
    gone, live = InPort(1), InPort(1)
    out = OutPort(2)
    retired = LocalSender(gone)           # nobody reads `gone`: its receiver has retired
    out.senders += [retired, LocalSender(live)]
    got: list[int] = []

    async def read_live() -> None:
        async for env in live:
            got.append(env.origin)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_live)

            async def produce() -> None:
                for origin in range(5):
                    await out.send(Envelope(batch(3), origin, "s"))
                await out.end()
            nursery.start_soon(produce)
            await trio.sleep(0.2)          # the producer is now blocked on the retired receiver
            assert got == [0]
            await out.detach(retired)
    assert got == [0, 1, 2, 3, 4]


async def test_coupled_lanes_are_drained_while_the_merge_waits_for_another_lane() -> None:
    """Two instances each carrying a part of every position: the merge waits for lane 0, and
    lane 1's sender is never blocked meanwhile (it could be what lane 0 waits on)."""
    port = InPort(2)
    lane0, lane1 = port.attach(), port.attach()
    order: list[tuple[int, int]] = []

    async def merge() -> None:
        async for env in port:
            order.append((env.origin, env.lane))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(merge)
            for origin in range(10):       # would block at the second without the drain
                await lane1.send(Envelope(batch(1), origin, "s", parts=2))
            for origin in range(10):
                await lane0.send(Envelope(batch(1), origin, "s", parts=2))
            await lane0.aclose()
            await lane1.aclose()
    assert [o for o, _ in order] == sorted(o for o in range(10) for _ in range(2))
