"""SOURCE: a `stream` analytic read from a file — bounded, paced (`rate`), or tailed (`follow`).

Positions: a bounded read numbers its batches (origin = batches read so far), a followed file
uses byte offsets; either way a restarted SOURCE resumes at the position its outputs committed.
"""
from __future__ import annotations

import trio

from hallelujah import formats
from jah.base import Jah
from jah.envelope import Envelope

PACED_BATCHES_PER_S = 20


class Source(Jah):
    role = "source"

    async def run(self) -> None:
        source = self.spec["source"]
        schema = self.schema("out")
        resume = int(self.spec.get("resume_from", 0))
        rate = source.get("rate")
        if source.get("follow"):
            async for offset, batch in formats.follow_batches(source, schema, start_offset=resume):
                await self.emit("out", Envelope(batch, offset, self.spec["source_id"]))
            return
        rows = int(max(1, min(formats.BATCH_ROWS, rate / PACED_BATCHES_PER_S))) if rate else formats.BATCH_ROWS
        batches = formats.read_batches(source, schema, batch_rows=rows)
        position = 0
        start = trio.current_time()
        sent_rows = 0
        while True:
            with self.busy():
                batch = await trio.to_thread.run_sync(next, batches, None)
            if batch is None:
                return
            position += 1
            if position <= resume:
                continue
            if rate:
                await trio.sleep_until(start + sent_rows / rate)
                sent_rows += batch.num_rows
            await self.emit("out", Envelope(batch, position, self.spec["source_id"]))
