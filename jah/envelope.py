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
    `lane` is the datastream of its port it arrived on (not sent on the wire).
    """

    batch: pa.RecordBatch | None
    origin: int = -1
    source: str = ""
    marker: str = NONE
    value: int = 0
    body: pa.Buffer | bytearray | bytes | None = None
    lane: int = -1

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
        return Envelope(batch, self.origin, self.source, value=self.value)

    def resume_after(self) -> int:
        """The position after which a replay rebuilds what this envelope's sender holds."""
        return self.value - 1 if self.value > 0 else self.origin


def end_of_stream() -> Envelope:
    return Envelope(None, marker=END_OF_STREAM)
