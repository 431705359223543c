"""Datastream ends: in-process channels and credit-flow-controlled sockets.

A receiver grants credits, a sender never has more batches in flight than granted, so a slow
receiver blocks its sender and memory stays bounded by the credit window (DESIGN "data plane").
Between processes, each end is a `hallelujah.datastream` end: credit flow is written only there.
"""
from __future__ import annotations

import collections
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any

import trio

from hallelujah.datastream import DataReceiver, DataSender
from hallelujah.errors import DatastreamError, Unavailable
from jah.envelope import CHECKPOINT, END_OF_STREAM, NONE, WATERMARK, Envelope, end_of_stream
from jah.watermarks import END_OF_TIME, Combined

CREDITS = 4          # batches in flight per datastream


@dataclass
class PortStats:
    rows: int = 0
    batches: int = 0


class InPort:
    """The receiving end of one or more datastreams into a Jah's input; ends when all of them end.

    Several datastreams into one port come from parallel instances of one analytic: the port
    merges them back into source-position order, so an output is the same whatever the split.
    Their watermarks combine into one: the least over the streams still running.

    Liveness (DESIGN "data plane"): the merge waits for a lane that has nothing yet. That is safe
    for a lane whose positions are its own (a part of a split source): its sender does not depend
    on the others, so the merge holds one batch per such lane and lets credits push back. It is
    not safe for *coupled* lanes — instances that each carry a part of every position (`parts` >
    1), fed by a shared EXCHANGE: an instance may hold its output back until its other input
    moves (a STREAM_JOIN's pacing), that input comes through the EXCHANGE, and the EXCHANGE is
    blocked sending to a sibling that is blocked on this very merge. So a coupled lane is drained
    as it arrives, into its queue here, whatever the merge waits for; the merge's order is the
    same. What a coupled lane can queue is bounded by the credits of the EXCHANGE towards the
    lagging sibling (it sends each position to every instance in turn), not by luck.
    """

    def __init__(self, streams: int, capacity: int = 1) -> None:
        self.streams = streams
        self.capacity = capacity
        self.attached = 0
        self._lanes: list[trio.MemoryReceiveChannel[Envelope]] = []
        self.lanes: list[Lane] = []
        self._arrival = trio.Event()
        self.stats = PortStats()
        self.queues: list[collections.deque[Envelope]] = []   # taken off each lane, not yet merged
        self.coupled: list[bool] = []
        self.live: set[int] = set()
        self.watermark: int | None = None     # the last one passed on (µs of event time)

    def attach(self) -> Lane:
        """The sending end of one more datastream into this port."""
        send, receive = trio.open_memory_channel[Envelope](self.capacity)
        self._lanes.append(receive)
        self.attached += 1
        lane = Lane(send, self)
        self.lanes.append(lane)
        return lane

    def arrived(self) -> None:
        self._arrival.set()

    def backlog(self) -> int:
        return sum(lane.statistics().current_buffer_used for lane in self._lanes) + \
            sum(len(q) for q in self.queues)

    def describe(self) -> str:
        """Each lane: batches in its channel and in the merge's queue (and the first position
        there), whether it is coupled and still live, and its datastream's counters."""
        parts = []
        for i, (receive, lane) in enumerate(zip(self._lanes, self.lanes)):
            queue = self.queues[i] if i < len(self.queues) else collections.deque()
            parts.append(f"lane {i}: channel {receive.statistics().current_buffer_used}/{self.capacity}, "
                         f"merge queue {len(queue)}"
                         f"{f' from position {queue[0].origin}' if queue else ''}"
                         f"{', coupled' if i < len(self.coupled) and self.coupled[i] else ''}, "
                         f"{'live' if i in self.live else 'ended/pending'}, {lane.describe()}")
        return f"{self.streams} stream(s), rows {self.stats.rows}, batches {self.stats.batches}; " + "; ".join(parts)

    def __aiter__(self) -> AsyncIterator[Envelope]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Envelope]:
        lanes = self._lanes
        queues = self.queues
        coupled = self.coupled
        live = self.live
        live.update(range(len(lanes)))
        pending: set[int] = set()      # attached while running: counted once they bring something
        marks = Combined(len(lanes))
        last = -1 << 62
        ended: list[bool] = []
        for _ in lanes:
            queues.append(collections.deque())
            coupled.append(False)
            ended.append(False)

        barrier = -1                   # the last checkpoint barrier passed on

        def take(i: int, env: Envelope) -> Envelope | None:
            """File one marker at the front of its lane's queue; a marker to pass on is returned."""
            if env.marker in (END_OF_STREAM, WATERMARK):
                if env.marker == END_OF_STREAM:
                    live.discard(i)
                mark = marks.update(i, env.value if env.marker == WATERMARK else END_OF_TIME)
                if mark is None or not live:
                    return None
                self.watermark = mark
                return Envelope(None, marker=WATERMARK, value=mark)
            return env                      # other markers pass at once, in their stream's order

        def fill(i: int) -> list[Envelope]:
            """Take what lane i has (all of it if coupled, else up to one batch); the markers
            that reach the front of its queue are filed, in order, and those to pass returned."""
            queue = queues[i]
            out = []
            while True:
                while queue and queue[0].marker != NONE:
                    if queue[0].marker == CHECKPOINT:
                        if queue[0].value > barrier:
                            break                    # the lane waits there for the others
                        queue.popleft()              # one passed on already (a repeat)
                        continue
                    marker = take(i, queue.popleft())
                    if marker is not None:
                        out.append(marker)
                if (queue and not coupled[i]) or not (i in live or i in pending) or ended[i]:
                    return out
                try:
                    env = lanes[i].receive_nowait()
                except trio.WouldBlock:
                    return out
                except trio.EndOfChannel:         # its sender closed it (detached): the lane ends
                    env = end_of_stream()
                if i in pending:
                    pending.discard(i)
                    live.add(i)
                if env.marker == NONE:
                    env.lane = i
                    coupled[i] = coupled[i] or env.parts > 1
                ended[i] = env.marker == END_OF_STREAM    # nothing follows it on its lane
                queue.append(env)

        while live or pending:
            self._arrival = trio.Event()    # set by any arrival after the look below
            for i in range(len(queues), len(lanes)):     # a datastream added while running (a split)
                queues.append(collections.deque())
                coupled.append(False)
                ended.append(False)
                marks.add()
                pending.add(i)
            # Whatever has already arrived is filed first, so markers queued behind a lane's
            # next batch are not held up by a lane that has nothing yet.
            for i in sorted(live | pending):
                for marker in fill(i):
                    yield marker
            at_barrier = [i for i in live if queues[i] and queues[i][0].marker == CHECKPOINT]
            if at_barrier and len(at_barrier) == len(live):
                # Aligned: every live lane has brought everything before checkpoint N, and
                # nothing after it has been passed on. (Lanes may be at different ones when a
                # lane joined late: the least goes, and only the lanes at it move on.)
                barrier = min(queues[i][0].value for i in at_barrier)
                origin = max(queues[i][0].origin for i in at_barrier)
                for i in at_barrier:
                    if queues[i][0].value == barrier:
                        queues[i].popleft()
                yield Envelope(None, origin, marker=CHECKPOINT, value=barrier)
                continue
            ready = [i for i in live if queues[i] and queues[i][0].marker == NONE]
            if ready:
                i = min(ready, key=lambda k: queues[k][0].origin)
                # The least position goes once every lane has one; a tie with the position just
                # passed may go at once (no lane can bring anything earlier). A datastream added
                # while running counts once it brings something: its positions follow those of
                # the one it relieves, but not always those its siblings have brought already,
                # which is why POSTJOIN puts the parts of a position back together itself.
                # A lane waiting at a barrier has nothing before it left to bring.
                if len(ready) + len(at_barrier) == len(live) or queues[i][0].origin <= last:
                    env = queues[i].popleft()
                    last = env.origin
                    self.stats.rows += env.rows
                    self.stats.batches += 1
                    yield env
                    continue
            if live or pending:
                await self._arrival.wait()    # whichever lane it is: a marker may unblock others


class Lane:
    """The sending end of one datastream into a port: a bounded channel that wakes the port."""

    def __init__(self, channel: trio.MemorySendChannel[Envelope], port: InPort) -> None:
        self.channel = channel
        self.port = port
        self.sent = 0             # envelopes put into the port
        self.receiver: DataReceiver | None = None     # the socket datastream feeding it, if any
        self.waiting = False      # blocked: the port has not taken the previous envelope

    async def send(self, env: Envelope) -> None:
        self.waiting = True
        await self.channel.send(env)
        self.waiting = False
        self.sent += 1
        self.port.arrived()

    def statistics(self) -> dict[str, Any]:
        if self.receiver is not None:
            return asdict(self.receiver.statistics())
        return {"in_process": True, "messages": self.sent, "queued": self.channel.statistics().current_buffer_used}

    def describe(self) -> str:
        return (f"envelopes {self.sent}{', ' + self.receiver.describe() if self.receiver else ''}"
                f"{', blocked on the port' if self.waiting else ''}")

    async def aclose(self) -> None:
        await self.channel.aclose()
        self.port.arrived()


class Sender:
    """One datastream's sending end.

    `send` is `deliver` unless the datastream was detached (its receiver retired while this end
    lives on, as an INGEST's stream to a JOIN a split relieved): then nothing more goes, and a
    send blocked when it was detached returns instead of waiting for a receiver that is gone.
    """

    detached = False
    in_flight = 0

    def statistics(self) -> dict[str, Any]:
        return {"in_process": True}

    async def send(self, env: Envelope) -> None:
        if self.detached:
            return
        try:
            await self.deliver(env)
        except (trio.ClosedResourceError, trio.BrokenResourceError, Unavailable):
            if not self.detached:
                raise

    async def deliver(self, env: Envelope) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__

    async def aclose(self) -> None:
        pass


class LocalSender(Sender):
    """Same process: a bounded trio channel is the credit window."""

    def __init__(self, port: InPort) -> None:
        self.channel = port.attach()

    @property
    def waiting(self) -> bool:
        """A send waits for the port to take what the channel holds: its receiver is behind."""
        return self.channel.waiting

    @property
    def in_flight(self) -> int:      # type: ignore[override]
        return self.channel.channel.statistics().current_buffer_used

    def statistics(self) -> dict[str, Any]:
        return {"in_process": True, "queued": self.in_flight, "waiting": self.waiting}

    async def deliver(self, env: Envelope) -> None:
        await self.channel.send(env)

    def describe(self) -> str:
        return f"in-process, {self.channel.describe()}"

    async def aclose(self) -> None:
        await self.channel.aclose()


class SocketSender(Sender):
    """Another process: the sending end of a `hallelujah.datastream` over a socket."""

    def __init__(self, end: DataSender) -> None:
        self.end = end

    @property
    def blocked(self) -> float:
        return self.end.blocked

    @property
    def waiting(self) -> bool:
        return self.end.waiting

    @property
    def in_flight(self) -> int:      # type: ignore[override]
        return self.end.statistics().in_flight

    def statistics(self) -> dict[str, Any]:
        return asdict(self.end.statistics())

    def describe(self) -> str:
        return self.end.describe()

    async def serve_credits(self) -> None:
        """Read the receiver's credit grants until it closes (run in the owning nursery)."""
        other = await self.end.read_grants()
        if other is not None:
            self.end.receiver_gone()
            raise DatastreamError(f"datastream {self.end.stream}: unexpected {other[0]} from its receiver")

    async def deliver(self, env: Envelope) -> None:
        await self.end.send(env.ipc() if env.batch is not None else None, rows=env.rows, marker=env.marker,
                            value=env.value, origin=env.origin, source=env.source, parts=env.parts)

    async def aclose(self) -> None:
        await self.end.aclose()


async def receive_stream(end: DataReceiver, lane: Lane) -> None:
    """Feed one incoming socket datastream into its lane of a port, returning credits as the port
    takes its messages."""
    lane.receiver = end
    await end.start()
    try:
        while True:
            try:
                msg = await end.receive()
            except EOFError:
                raise Unavailable(f"datastream {end.stream} from {end.conn.peer} ended without "
                                  f"end_of_stream") from None
            env = Envelope(msg.batch, msg.origin, msg.source, msg.marker, msg.value, msg.body, parts=msg.parts)
            await lane.send(env)
            if env.marker == END_OF_STREAM:
                return
            await end.release()
    finally:
        await end.conn.aclose()


@dataclass
class OutPort:
    """A Jah's output: fans each envelope out to every datastream attached to it."""

    streams: int
    senders: list[Sender] = field(default_factory=list)
    stats: PortStats = field(default_factory=PortStats)

    async def send(self, env: Envelope) -> None:
        if env.marker == NONE:
            self.stats.rows += env.rows
            self.stats.batches += 1
        for sender in list(self.senders):     # a copy: a sender may be detached meanwhile
            await sender.send(env)

    async def end(self) -> None:
        senders = list(self.senders)
        for sender in senders:
            await sender.send(end_of_stream())
        for sender in senders:
            await sender.aclose()

    async def detach(self, sender: Sender) -> None:
        """Stop sending to one datastream whose receiver has gone (retired): a send blocked on
        it returns, later envelopes skip it, and its end is closed."""
        sender.detached = True
        if sender in self.senders:
            self.senders.remove(sender)
        with trio.CancelScope(shield=True):
            await sender.aclose()
