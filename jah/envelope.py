"""What travels on a datastream: a batch or an in-band marker, with its exactly-once lineage."""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from hallelujah.frames import serialize_batch

NONE = "none"
END_OF_STREAM = "endOfStream"
WATERMARK = "watermark"
HANDOVER = "handover"
CHECKPOINT = "checkpoint"


@dataclass(slots=True)
class Envelope:
    """One message of a datastream.

    `source`/`origin` name the source batch this one derives from: a retained output records the
    last origin it took from each source, so a replay after a crash skips what it already holds.
    `body` caches the IPC bytes (as received, or serialized once for several receivers).
    On a data envelope `value`, when positive, is the first source position whose rows the sender
    still holds in its state (an aggregate's open windows): a replay must start there.
    `lane` is the datastream of its port it arrived on (not sent on the wire). `parts` is into how
    many datastreams an EXCHANGE or PREJOIN split its position: whoever merges them back (POSTJOIN,
    a SINK) keeps a position once it has all its parts, so a crash never leaves half of one kept.
    """

    batch: pa.RecordBatch | None
    origin: int = -1
    source: str = ""
    marker: str = NONE
    value: int = 0
    body: pa.Buffer | bytearray | bytes | None = None
    lane: int = -1
    parts: int = 1

    @property
    def rows(self) -> int:
        return self.batch.num_rows if self.batch is not None else 0

    def ipc(self) -> pa.Buffer | bytearray | bytes | None:
        """The batch's IPC body, serialized at most once."""
        if self.body is None and self.batch is not None:
            self.body = serialize_batch(self.batch)
        return self.body

    def derive(self, batch: pa.RecordBatch) -> "Envelope":
        """A new envelope for a batch computed from this one (same lineage)."""
        return Envelope(batch, self.origin, self.source, value=self.value, parts=self.parts)

    def resume_after(self) -> int:
        """The position after which a replay rebuilds what this envelope's sender holds."""
        return self.value - 1 if self.value > 0 else self.origin


def end_of_stream() -> Envelope:
    return Envelope(None, marker=END_OF_STREAM)


class Reassembly:
    """The parts of source positions put back together: a position goes once all its parts are
    in, and the positions of one source go in order (a later one waits for an earlier one)."""

    def __init__(self) -> None:
        self.held: dict[tuple[str, int], list[Envelope]] = {}

    def add(self, env: Envelope) -> list[list[Envelope]]:
        """File one part; the whole positions now ready, in order."""
        self.held.setdefault((env.source, env.origin), []).append(env)
        ready = []
        while True:
            pending = [key for key in self.held if key[0] == env.source]
            if not pending:
                break
            first = min(pending, key=lambda key: key[1])
            if len(self.held[first]) < self.held[first][0].parts:
                break
            ready.append(self.held.pop(first))
        return ready

    def rest(self) -> list[list[Envelope]]:
        """What is held when no more parts can come, by position."""
        rest = [self.held[key] for key in sorted(self.held, key=lambda key: key[1])]
        self.held.clear()
        return rest


def joined(parts: list[Envelope]) -> Envelope:
    """The parts of one position as one envelope (the oldest position any part still holds)."""
    batches = [p.batch for p in parts if p.batch is not None and p.rows]
    batch = pa.concat_batches(batches) if len(batches) > 1 else (batches[0] if batches else parts[0].batch)
    held = [p.value for p in parts if p.value > 0]
    return Envelope(batch, parts[0].origin, parts[0].source, value=min(held, default=0))
