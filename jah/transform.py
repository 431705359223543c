"""TRANSFORM: `derive`, `where`, `select` and an optional Python `udf`, one batch at a time.

Expressions run vectorized through pyarrow.compute; a row whose values make an expression (or the
UDF) fail goes to `ANALYTIC.rejected` with the error as its reason. The UDF is loaded by its file
(`hallelujah.udf`), and whatever it raises, `SystemExit` included, rejects rows: it never stops
the worker. It runs in a thread, one UDF call at a time in a worker (as on its loop: a module's
globals are never shared by two calls at once), so a slow UDF does not hold up the other Jahs of
its worker (the SINK beside it, a checkpoint's barrier, its statistics).
"""
from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import trio

from hallelujah import expressions
from hallelujah import udf as udf_files
from hallelujah.errors import HallelujahError
from hallelujah.formats import conform
from jah.base import Host, Jah
from jah.rejecting import apply_rejecting, rejected_batch

_UDF_CALLS = trio.CapacityLimiter(1)     # a worker's UDF calls, one at a time


class Transform(Jah):
    role = "transform"

    def __init__(self, jah_id: str, spec: dict[str, Any], host: Host) -> None:
        super().__init__(jah_id, spec, host)
        a = spec["analytic"]
        self.derive = [(name, expressions.parse(text)) for name, text in a.get("derive", {}).items()]
        self.where = expressions.parse(a["where"]) if a.get("where") else None
        self.select = a.get("select")
        self.udf = udf_files.load(a["udf"], a["udf_path"]) if a.get("udf") else None
        self.out_schema = self.schema("out")

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The transform of one batch; raises on a value it cannot process."""
        for name, expr in self.derive:
            value = expr.evaluate(batch)
            if isinstance(value, pa.ChunkedArray):
                value = value.combine_chunks()
            i = batch.schema.get_field_index(name)
            batch = batch.set_column(i, name, value) if i >= 0 else batch.append_column(name, value)
        if self.where is not None:
            mask = self.where.evaluate(batch)
            batch = batch.filter(mask, null_selection_behavior="drop") if not _all_true(mask) else batch
        if self.select:
            batch = batch.select(self.select)
        if self.udf is not None:
            batch = self.udf(batch)
            if isinstance(batch, pa.Table):
                batch = batch.combine_chunks().to_batches()[0] if batch.num_rows else \
                    pa.RecordBatch.from_pylist([], schema=self.out_schema)
        if batch.schema != self.out_schema:
            batch = conform(batch, self.out_schema)
        return batch

    async def run(self) -> None:
        rejected_schema = self.schema("rejected")
        async for env in self.batches():
            with self.busy():
                # A UDF is user code: whatever it raises for a row rejects that row (the
                # loaded UDF turns even SystemExit into a UdfError; a batch it returns that
                # cannot be conformed raises whatever conform meets).
                if self.udf is None:
                    good, bad = apply_rejecting(self.apply, env.batch, (HallelujahError, pa.ArrowException))
                else:
                    good, bad = await trio.to_thread.run_sync(apply_rejecting, self.apply, env.batch, (Exception,),
                                                              limiter=_UDF_CALLS)
            # One batch per origin on every port, empty or not: a SINK takes a source position
            # once, and merging parallel instances needs every position from every instance.
            out = pa.concat_batches(good) if good else _empty(self.out_schema)
            await self.emit("out", env.derive(out))
            await self.emit("rejected", env.derive(pa.concat_batches(
                [rejected_batch(rows, reason, rejected_schema) for rows, reason in bad])
                if bad else _empty(rejected_schema)))


def _all_true(mask: pa.Array) -> bool:
    return mask.null_count == 0 and pc.all(mask).as_py() is True


def _empty(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array([], f.type) for f in schema], schema=schema)
