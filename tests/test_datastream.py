"""The one datastream module: credits bound what is in flight, markers keep their place, and a
message lost or repeated on the way is an error naming the stream.

Real sockets (socketpairs) between a real sender and receiver; where a fault is wanted, a relay
between them drops or repeats one frame, as a broken link or a buggy peer would.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pyarrow as pa
import pytest
import trio

from hallelujah.datastream import DataReceiver, DataSender, open_receiver, open_sender
from hallelujah.errors import DatastreamError, Unavailable
from hallelujah.frames import Connection

SCHEMA = pa.schema([("k", pa.int64()), ("v", pa.float64())])


def batch(start: int, rows: int = 100) -> pa.RecordBatch:
    return pa.record_batch([pa.array(range(start, start + rows), pa.int64()),
                            pa.array([i * 0.5 for i in range(start, start + rows)])], schema=SCHEMA)


OPEN: list[Connection] = []


def pair() -> tuple[Connection, Connection]:
    a, b = trio.socket.socketpair()
    conns = Connection(trio.SocketStream(a), "b"), Connection(trio.SocketStream(b), "a")   # each named by its peer
    OPEN.extend(conns)
    return conns


@pytest.fixture(autouse=True)
async def closed_afterwards() -> AsyncIterator[None]:
    yield
    while OPEN:
        await OPEN.pop().aclose()


Relay = Callable[[int, str, dict, object], list]


async def relay(src: Connection, dst: Connection, change: Relay) -> None:
    """Forward frames src → dst; `change(n, kind, fields, body)` says what goes instead of the
    n-th frame (nothing, it once, it twice)."""
    n = 0
    try:
        while True:
            kind, fields, body = await src.receive()
            for k, f, b in change(n, kind, fields, body):
                await dst.send(k, f, b)
            n += 1
    except (EOFError, trio.ClosedResourceError):
        await dst.aclose()


def untouched(n: int, kind: str, fields: dict, body: object) -> list:
    return [(kind, fields, body)]


@asynccontextmanager
async def ends(window: int, change: Relay = untouched) -> AsyncIterator[tuple[DataSender, DataReceiver]]:
    """A sender and a receiver of stream "t/s", with a relay between them in the data direction."""
    send_conn, relay_in = pair()
    relay_out, receive_conn = pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(relay, relay_in, relay_out, change)
        nursery.start_soon(relay, relay_out, relay_in, untouched)     # credits come back as they are
        sender = open_sender(send_conn, "t/s")
        receiver = open_receiver(receive_conn, "t/s", SCHEMA, window=window)
        await receiver.start()
        await sender.first_grant()
        nursery.start_soon(sender.read_grants)
        yield sender, receiver
        nursery.cancel_scope.cancel()


async def test_credits_bound_what_is_in_flight_and_come_back_as_messages_are_released():
    with trio.fail_after(10):
        async with ends(window=4) as (sender, receiver):
            for i in range(4):
                await sender.send_batch(batch(i * 100), origin=i)
            with trio.move_on_after(0.2) as blocked:
                await sender.send_batch(batch(400), origin=4)
            assert blocked.cancelled_caught, "a fifth batch went with four credits"
            s = sender.statistics()
            assert (s.credits_used, s.credits_left, s.in_flight, s.rows_sent) == (4, 0, 4, 400)
            assert s.blocked_seconds >= 0.15
            got = [await receiver.receive() for _ in range(2)]
            await receiver.release(2)          # half the window: returned at once
            await sender.send_batch(batch(400), origin=4)
            assert sender.statistics().rows_acknowledged == 200
            got += [await receiver.receive() for _ in range(3)]
            assert [m.origin for m in got] == [0, 1, 2, 3, 4]
            assert [m.seq for m in got] == [0, 1, 2, 3, 4]
            assert pa.Table.from_batches([m.batch for m in got]).equals(
                pa.Table.from_batches([batch(i * 100) for i in range(5)]))
            r = receiver.statistics()
            assert (r.last_seq, r.messages, r.rows, r.credits_granted) == (4, 5, 500, 6)


async def test_markers_travel_in_order_with_the_data():
    with trio.fail_after(10):
        async with ends(window=8) as (sender, receiver):
            await sender.send_batch(batch(0), origin=0)
            await sender.send(marker="watermark", value=123)
            await sender.send_batch(batch(100), origin=1)
            await sender.send(marker="checkpoint", value=7)
            await sender.send(marker="endOfStream")
            got = [await receiver.receive() for _ in range(5)]
            assert [(m.marker, m.value, m.rows) for m in got] == [
                ("none", 0, 100), ("watermark", 123, 0), ("none", 0, 100), ("checkpoint", 7, 0),
                ("endOfStream", 0, 0)]


async def test_several_tasks_sending_on_one_datastream_all_get_through():
    """A STREAM_JOIN's two sides share its output: with one credit at a time, neither may wait on
    a grant that only woke the other (the lost wakeup of issue 12)."""
    with trio.fail_after(10):
        async with ends(window=2) as (sender, receiver):
            async def side(start: int) -> None:
                for i in range(50):
                    await sender.send_batch(batch(start + i, 1), origin=start + i)

            async def drain() -> list[int]:
                keys = []
                while len(keys) < 100:
                    m = await receiver.receive()
                    keys.append(m.batch.column(0)[0].as_py())
                    await receiver.release()
                return keys

            async with trio.open_nursery() as nursery:
                nursery.start_soon(side, 0)
                nursery.start_soon(side, 1000)
                keys = await drain()
            assert sorted(keys) == sorted([*range(50), *range(1000, 1050)])
            assert [k for k in keys if k < 1000] == list(range(50))      # each side's order holds


@pytest.mark.parametrize(("fault", "message"), [
    ("drop", r"datastream t/s: message 3 after 1 \(a gap of 1\): the stream is broken"),
    ("repeat", r"datastream t/s: message 2 after 2 \(a repeat\): the stream is broken"),
])
async def test_a_frame_dropped_or_repeated_on_the_way_is_an_error_naming_the_stream(fault, message):
    def broken(n: int, kind: str, fields: dict, body: object) -> list:
        if n == 2:        # the third message: once it is lost, or it comes twice
            return [] if fault == "drop" else [(kind, fields, body)] * 2
        return [(kind, fields, body)]

    with trio.fail_after(10):
        async with ends(window=16, change=broken) as (sender, receiver):
            for i in range(5):
                await sender.send_batch(batch(i * 10, 10), origin=i)
            assert [(await receiver.receive()).origin for _ in range(2)] == [0, 1]
            if fault == "repeat":
                assert (await receiver.receive()).origin == 2
            with pytest.raises(DatastreamError, match=message):
                await receiver.receive()


async def test_a_frame_that_is_not_data_is_an_error_naming_the_stream():
    a, b = pair()
    receiver = open_receiver(b, "t/s", SCHEMA, window=4)
    with trio.fail_after(10):
        await a.send("dataCfm", {"credits": 3})
        with pytest.raises(DatastreamError, match="datastream t/s: unexpected dataCfm frame"):
            await receiver.receive()


async def test_a_send_blocked_when_the_receiver_goes_away_fails_at_once():
    a, b = pair()
    sender = open_sender(a, "t/s", credits=1)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender.read_grants)
            await sender.send_batch(batch(0))
            await b.aclose()
            with pytest.raises(Unavailable, match="datastream t/s: its receiver b went away"):
                await sender.send_batch(batch(100))
            assert sender.statistics().receiver_gone
