"""One datastream's two ends, in the shape of trio's memory channels: the only place credit flow is.

A receiver grants credits (`dataCfm`); a sender never has more messages in flight than it was
granted, so a full receiver blocks its sender and memory stays bounded by the window, nothing is
dropped (DESIGN "data plane"). Every message — a batch or a marker — takes one credit and carries
the next sequence number of its datastream; the receiver checks them, so a frame lost, repeated or
reordered on the way is an error naming the stream, never a silent gap in someone's output.

Every datastream uses these ends: Jah to Jah between processes, a client's `publish` (where a
credit coming back also means "kept, synced") and `stream`, and later congregation to
congregation. `statistics()` is what `describe`, the metrics and the stall dump read.

A message's `origin` is the position of the source batch it derives from (a publisher's batch
number, a log's entry): it is the data's lineage, not the wire's order, and may repeat.
"""
from __future__ import annotations

import collections
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import trio

from hallelujah.errors import DatastreamError, Unavailable
from hallelujah.frames import Connection, open_batch

NONE = "none"
END_OF_STREAM = "endOfStream"


@dataclass(slots=True)
class Message:
    """One message as received: a batch (body, opened when a schema is known) or a marker."""

    seq: int
    marker: str = NONE
    value: int = 0
    origin: int = -1
    source: str = ""
    rows: int = 0
    parts: int = 1
    body: pa.Buffer | None = None
    batch: pa.RecordBatch | None = None


@dataclass
class SenderStatistics:
    stream: str
    next_seq: int
    credits_granted: int
    credits_used: int
    credits_left: int
    in_flight: int              # sent, not yet given back as credits by the receiver
    rows_sent: int
    rows_acknowledged: int
    blocked_seconds: float      # waiting for credits, in total
    waiting: bool               # a send is waiting for a credit now
    receiver_gone: bool


@dataclass
class ReceiverStatistics:
    stream: str
    last_seq: int
    messages: int
    rows: int
    credits_granted: int
    credits_unreturned: int     # taken, not yet given back (coalesced)


class DataSender:
    """The sending end. Several tasks may send on one datastream (a STREAM_JOIN's two sides share
    its output): they wait on one shared event, renewed only once it has fired, so a grant wakes
    every waiter and none waits on an event nobody will set."""

    def __init__(self, conn: Connection, stream: str, *, credits: int = 0, first_seq: int = 0) -> None:
        self.conn = conn
        self.stream = stream
        self.credits: float = credits
        self.seq = first_seq
        self._granted_total = credits
        self._used = 0
        self._in_flight: collections.deque[int] = collections.deque()   # rows of each unacknowledged message
        self._rows_sent = 0
        self._rows_acked = 0
        self._blocked = 0.0
        self._waiting = 0
        self._gone = False
        self._granted = trio.Event()

    async def send_batch(self, batch: pa.RecordBatch, *, origin: int = -1, source: str = "",
                         parts: int = 1, body: Any = None) -> None:
        """One batch (its IPC body given, or serialized here), once a credit is free."""
        if body is None:
            body = batch.serialize()
        await self.send(body, rows=batch.num_rows, origin=origin, source=source, parts=parts)

    async def send(self, body: Any = None, *, rows: int = 0, marker: str = NONE, value: int = 0,
                   origin: int = -1, source: str = "", parts: int = 1) -> None:
        """One message (a raw IPC body, or a marker without one), once a credit is free."""
        while self.credits <= 0:
            if self._granted.is_set():
                self._granted = trio.Event()
            start = trio.current_time()
            self._waiting += 1
            try:
                await self._granted.wait()
            finally:
                self._waiting -= 1
                self._blocked += trio.current_time() - start
        if self._gone:
            raise Unavailable(f"datastream {self.stream}: its receiver {self.conn.peer} went away")
        self.credits -= 1
        self._used += 1
        length = 0 if body is None else memoryview(body).nbytes
        seq = self.seq
        self.seq += 1
        self._in_flight.append(rows)
        self._rows_sent += rows
        await self.conn.send("dataReq", {
            "seq": seq, "origin": origin, "source": source, "marker": marker, "markerValue": value,
            "bodyLength": length, "rows": rows, "parts": parts}, body)

    def grant(self, credits: int) -> int:
        """Credits came back; the rows of the messages they acknowledge are returned."""
        self.credits += credits
        self._granted_total += credits
        acked = 0
        for _ in range(min(credits, len(self._in_flight))):
            acked += self._in_flight.popleft()
        self._rows_acked += acked
        self._granted.set()
        return acked

    async def read_grants(self, acknowledged: Callable[[int], None] | None = None
                          ) -> tuple[str, dict[str, Any]] | None:
        """Read what the receiver sends: credit grants (each told to `acknowledged` with the rows
        acknowledged so far), until another frame comes (returned: a publish's final cmdCfm) or
        the receiver closes (None; a blocked send then fails)."""
        try:
            while True:
                kind, fields, _ = await self.conn.receive()
                if kind != "dataCfm":
                    return kind, fields
                self.grant(fields["credits"])
                if acknowledged is not None:
                    acknowledged(self._rows_acked)
        except (EOFError, Unavailable):
            self.receiver_gone()
            return None

    async def first_grant(self) -> None:
        """The receiver's opening grant, which says it is attached and ready."""
        kind, fields, _ = await self.conn.receive()
        if kind != "dataCfm":
            raise DatastreamError(f"datastream {self.stream}: expected the receiver's credits, got {kind}")
        self.grant(fields["credits"])

    def receiver_gone(self) -> None:
        self._gone = True
        self.credits = math.inf
        self._granted.set()

    @property
    def blocked(self) -> float:
        return self._blocked

    @property
    def waiting(self) -> bool:
        return self._waiting > 0

    def statistics(self) -> SenderStatistics:
        return SenderStatistics(self.stream, self.seq, self._granted_total, self._used,
                                0 if self._gone else int(self.credits), len(self._in_flight), self._rows_sent, self._rows_acked,
                                self._blocked, self.waiting, self._gone)

    def describe(self) -> str:
        s = self.statistics()
        return (f"socket to {self.conn.peer}: seq {s.next_seq}, credits used {s.credits_used}, "
                f"left {s.credits_left}, blocked {s.blocked_seconds:.3f}s"
                f"{', waiting for credits' if s.waiting else ''}{', receiver gone' if s.receiver_gone else ''}")

    async def aclose(self) -> None:
        await self.conn.aclose()


class DataReceiver:
    """The receiving end: checks each message's kind and sequence number, opens its batch, and
    returns credits as messages are released — half a window at a time (LIMITS.md fact 3), or at
    once where a credit is an acknowledgement (`coalesce=False`)."""

    def __init__(self, conn: Connection, stream: str, schema: pa.Schema | None, *, window: int,
                 granted: int = 0, first_seq: int | None = 0, coalesce: bool = True) -> None:
        self.conn = conn
        self.stream = stream
        self.schema = schema
        self.window = window
        self.coalesce = coalesce
        self._expected = first_seq       # None: the first message's number starts the count
        self._granted = granted
        self._unreturned = 0
        self._messages = 0
        self._rows = 0
        self._last = -1

    async def start(self) -> None:
        """Grant the window (less what was granted another way, as in a publish's confirm)."""
        if self._granted < self.window:
            await self._grant(self.window - self._granted)

    async def receive(self) -> Message:
        """The next message. EOFError at a clean end between messages; DatastreamError for a frame
        that is not data or is out of sequence."""
        kind, fields, body = await self.conn.receive()
        if kind != "dataReq":
            raise DatastreamError(f"datastream {self.stream}: unexpected {kind} frame")
        seq = fields["seq"]
        if self._expected is not None and seq != self._expected:
            what = (f"a gap of {seq - self._expected}" if seq > self._expected else "a repeat")
            raise DatastreamError(f"datastream {self.stream}: message {seq} after {self._expected - 1} "
                                  f"({what}): the stream is broken")
        self._expected = seq + 1
        self._last = seq
        self._messages += 1
        rows = fields.get("rows", 0)
        self._rows += rows
        msg = Message(seq, fields.get("marker", NONE), fields.get("markerValue", 0), fields.get("origin", -1),
                      fields.get("source", ""), rows, max(1, fields.get("parts", 1)), body)
        if body is not None and self.schema is not None:
            msg.batch = open_batch(body, self.schema)
        return msg

    async def release(self, messages: int = 1) -> None:
        """Messages taken off this end: their credits go back to the sender."""
        self._unreturned += messages
        if not self.coalesce or self._unreturned * 2 >= self.window:
            n, self._unreturned = self._unreturned, 0
            await self._grant(n)

    async def _grant(self, credits: int) -> None:
        """A sender that has sent end_of_stream may be gone already, which is fine: what it
        sent is still in our buffer, and the stream ends when we read its marker."""
        self._granted += credits
        try:
            await self.conn.send("dataCfm", {"credits": credits})
        except Unavailable:
            pass

    def statistics(self) -> ReceiverStatistics:
        return ReceiverStatistics(self.stream, self._last, self._messages, self._rows, self._granted,
                                  self._unreturned)

    def describe(self) -> str:
        s = self.statistics()
        return f"last seq {s.last_seq}, credits granted {s.credits_granted}"


def open_sender(conn: Connection, stream: str, *, credits: int = 0, first_seq: int = 0) -> DataSender:
    """The sending end of datastream `stream` over `conn`, with `credits` already granted."""
    return DataSender(conn, stream, credits=credits, first_seq=first_seq)


def open_receiver(conn: Connection, stream: str, schema: pa.Schema | None, *, window: int,
                  granted: int = 0, first_seq: int | None = 0, coalesce: bool = True) -> DataReceiver:
    """The receiving end of datastream `stream` over `conn` (call `start()` to grant the window)."""
    return DataReceiver(conn, stream, schema, window=window, granted=granted, first_seq=first_seq,
                        coalesce=coalesce)
