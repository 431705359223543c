"""LOGSOURCE: a pushed `stream` analytic, read from the input log that `publish` appends to.

It runs in a worker, beside the Jahs that read it, and reads the log's files itself: the
congregation only appends what clients publish, and tells the workers so (`LogChanged`). It
reads from the position its outputs committed and then follows new appends; a publish with
`end` closes the stream. `publish` validates every body
before keeping it; batches the log held before this start (kept by an older version, or on a
damaged disk) are validated here once more, so a corrupt one fails the tradecraft with its
reason instead of crashing every process that reads it, on every restart.
"""
from __future__ import annotations

import pyarrow as pa
import trio

from hallelujah.checked import checked_batch
from hallelujah.frames import open_batch
from jah.base import Jah
from jah.envelope import Envelope


class LogSource(Jah):
    role = "logsource"

    async def run(self) -> None:
        logs = self.host.context["logs"]
        name = self.spec["log"]
        seq = int(self.spec.get("resume_from", 0))
        schema = self.schema("out")
        info = await logs.info(name)
        unchecked = info["next_seq"] if info else 0      # batches from before this start
        async for entry, body in logs.follow_raw(name, seq):
            buffer = pa.py_buffer(body)
            if entry.seq < unchecked:
                batch = await trio.to_thread.run_sync(checked_batch, name, entry.seq, body, schema)
            else:
                batch = open_batch(buffer, schema)
            # the stored body is the batch's IPC message, checked: a reader in another process
            # gets it as it is, not serialized again
            await self.emit_read(Envelope(batch, entry.seq + 1, self.spec["source_id"], body=buffer))
