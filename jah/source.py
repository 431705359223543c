"""SOURCE: a `stream` analytic read from a file — bounded, paced (`rate`), or tailed (`follow`).

A bounded parquet file is read by several SOURCEs at once, each taking every `parts`-th row group;
positions name batches in file order whatever the split, so the parts merge back in order and a
restarted SOURCE resumes at the position its outputs committed. A followed file uses byte offsets.
"""
from __future__ import annotations

import trio

from hallelujah import formats
from jah.base import Jah
from jah.envelope import Envelope

PACED_BATCHES_PER_S = 20


class Source(Jah):
    role = "source"

    def has_more_input(self) -> bool:
        return not self.spec["source"].get("follow")     # running, so its file is not read to the end

    async def run(self) -> None:
        source = self.spec["source"]
        schema = self.schema("out")
        resume = int(self.spec.get("resume_from", 0))
        source_id = self.spec["source_id"]
        rate = source.get("rate")
        if source.get("follow"):
            async for offset, batch in formats.follow_batches(source, schema, start_offset=resume):
                await self.emit_read(Envelope(batch, offset, source_id))
            return
        rows = int(max(1, min(formats.BATCH_ROWS, rate / PACED_BATCHES_PER_S))) if rate else formats.BATCH_ROWS
        batches = formats.read_positioned(source, schema, self.spec.get("part", 0),
                                          self.spec.get("parts", 1), rows, after=resume)
        start = trio.current_time()
        sent_rows = 0
        while True:
            with self.busy():
                item = await trio.to_thread.run_sync(next, batches, None)
            if item is None:
                return
            position, batch = item
            if rate:
                await trio.sleep_until(start + sent_rows / rate)
                sent_rows += batch.num_rows
            await self.emit_read(Envelope(batch, position, source_id))
