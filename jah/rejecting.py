"""Apply a batch function, sending only the rows it cannot process to `rejected`.

The whole batch is tried first (the fast path); on failure it is halved until the failing rows
are isolated, so one bad row costs O(log n) extra calls and never loses or repeats its neighbours.
"""
from __future__ import annotations

from typing import Callable

import pyarrow as pa

from hallelujah.errors import HallelujahError

BatchFn = Callable[[pa.RecordBatch], pa.RecordBatch]
REASON = "reason"


def apply_rejecting(fn: BatchFn, batch: pa.RecordBatch,
                    errors: tuple[type[BaseException], ...] = (HallelujahError, pa.ArrowException)
                    ) -> tuple[list[pa.RecordBatch], list[tuple[pa.RecordBatch, str]]]:
    """(good output batches in input order, [(input rows, reason)])."""
    try:
        return [fn(batch)], []
    except errors as exc:
        if batch.num_rows <= 1:
            reason = str(exc) if isinstance(exc, HallelujahError) else f"{type(exc).__name__}: {exc}"
            return [], [(batch, reason)]
    half = batch.num_rows // 2
    good_a, bad_a = apply_rejecting(fn, batch.slice(0, half), errors)
    good_b, bad_b = apply_rejecting(fn, batch.slice(half), errors)
    return good_a + good_b, bad_a + bad_b


def rejected_batch(rows: pa.RecordBatch, reason: str, schema: pa.Schema) -> pa.RecordBatch:
    """The rejected rows with their reason, in the `rejected` output's schema."""
    columns = [rows.column(f.name) if f.name in rows.schema.names else pa.nulls(rows.num_rows, f.type)
               for f in schema if f.name != REASON]
    columns.append(pa.array([reason] * rows.num_rows, pa.string()))
    return pa.RecordBatch.from_arrays(columns, schema=schema)
