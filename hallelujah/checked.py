"""A batch body checked in full against a stream's exact schema before anything uses it.

Arrow trusts a body's offsets and lengths: a string column whose offsets go backwards or past
its data crashes whatever reads it (a segfault, not an exception). `validate(full=True)` checks
every offset, every UTF-8 string and every null count: O(bytes), and without the GIL.
"""
from __future__ import annotations

import pyarrow as pa

from hallelujah.errors import SchemaMismatch
from hallelujah.frames import open_batch


def checked_batch(stream: str, seq: int, body: pa.Buffer | bytearray | bytes, schema: pa.Schema) -> pa.RecordBatch:
    """The batch of `body` as `schema`, or SchemaMismatch naming the stream, the batch and the fault."""
    try:
        batch = open_batch(body, schema)
        batch.validate(full=True)
    except (pa.ArrowException, OSError, ValueError) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
        raise SchemaMismatch(f"{stream}: batch {seq} is not a valid batch of the stream's schema "
                             f"({', '.join(f'{f.name} {f.type}' for f in schema)}): {reason}") from None
    for field, column in zip(schema, batch.columns):
        if not field.nullable and column.null_count:
            raise SchemaMismatch(f'{stream}: batch {seq}: field "{field.name}" has {column.null_count} '
                                 f'nulls, and the stream declares it not null')
    return batch
