"""SOURCE: a `stream` analytic read from a file — bounded, paced (`rate`), or tailed (`follow`).

A bounded parquet file is read by several SOURCEs at once, each taking every `parts`-th row group;
positions name batches in file order whatever the split, so the parts merge back in order and a
restarted SOURCE resumes at the position its outputs committed. A followed file uses byte offsets.
A row the file holds but that cannot be read as the stream's schema (a value that does not parse,
a CSV row with too many fields, a line that is not JSON) goes to `ANALYTIC.rejected` with the
reason, at the position of the rows around it: the rest of the file still flows. A stream that
declares only some of the file's fields reads only those (parquet and sqlite never fetch the rest).
"""
from __future__ import annotations

import pyarrow as pa
import trio

from hallelujah import formats
from hallelujah.formats import Rejects
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
            async for offset, batch, rejects in formats.follow_batches(source, schema, start_offset=resume):
                await self._send(offset, batch, rejects)
            return
        rows = int(max(1, min(formats.BATCH_ROWS, rate / PACED_BATCHES_PER_S))) if rate else formats.BATCH_ROWS
        pieces = formats.read_positioned(source, schema, self.spec.get("part", 0),
                                         self.spec.get("parts", 1), rows, after=resume)
        start = trio.current_time()
        sent_rows = 0
        while True:
            with self.busy():
                item = await trio.to_thread.run_sync(next, pieces, None)
            if item is None:
                return
            position, batch, rejects = item
            if rate:
                await trio.sleep_until(start + sent_rows / rate)
                sent_rows += batch.num_rows
            await self._send(position, batch, rejects)

    async def _send(self, position: int, batch: pa.RecordBatch, rejects: Rejects | None) -> None:
        """The batch at `position`, then its rejects — an empty batch when there are none: the
        parts of a split file merge back by position, and each part must bring every one of its
        positions on both outputs, or the merge would wait on it."""
        rejected = None
        if "rejected" in self.outputs:
            schema = self.schema("rejected")
            bad = rejects.with_reasons(schema) if rejects is not None else pa.RecordBatch.from_pylist([], schema=schema)
            rejected = Envelope(bad, position, self.spec["source_id"])
        await self.emit_read(Envelope(batch, position, self.spec["source_id"]), rejected)

