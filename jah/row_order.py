"""Row numbers that let a split dataset join keep its stream's order, row for row.

PREJOIN splits a position (one source batch) by partition among the JOINs; each part carries, as
its last column, its rows' indices in the position (int32, increasing). A JOIN keeps the column on
every row it emits (0..n rows per stream row, in order), and POSTJOIN puts the parts of a position
back in the position's row order with one counting sort and one `take`, then drops the column. With
one JOIN the numbers are a zero-copy slice of a shared range and POSTJOIN only drops them, so the
unsplit path pays no copy. The column is found by position (always last), never by name, so a
user's field of the same name cannot be mistaken for it.

No Numba here: the planner imports this to declare the internal datastreams' schemas.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

ROW = "__row"
ROW_TYPE = pa.int32()

_range = pa.array(np.arange(1 << 16, dtype=np.int32))


def with_row_numbers(schema: pa.Schema) -> pa.Schema:
    """The schema of a datastream between PREJOIN, JOIN and POSTJOIN: `schema` and the numbers."""
    return schema.append(pa.field(ROW, ROW_TYPE, nullable=False))


def carries_row_numbers(schema: pa.Schema) -> bool:
    return len(schema) > 0 and schema.field(len(schema) - 1).name == ROW and schema.types[-1] == ROW_TYPE


def numbered(batch: pa.RecordBatch, rows: pa.Array | None = None) -> pa.RecordBatch:
    """`batch` with its rows' numbers in the position appended: `rows`, or 0..n-1 (no copy)."""
    global _range
    if rows is None:
        if batch.num_rows > len(_range):
            _range = pa.array(np.arange(batch.num_rows, dtype=np.int32))
        rows = _range.slice(0, batch.num_rows)
    return batch.append_column(pa.field(ROW, ROW_TYPE, nullable=False), rows)


def split_off(batch: pa.RecordBatch) -> tuple[pa.RecordBatch, pa.Array]:
    """(`batch` without its numbers, the numbers), neither copied."""
    last = batch.num_columns - 1
    return batch.select(list(range(last))), batch.column(last)
