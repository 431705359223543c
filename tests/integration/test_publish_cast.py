"""`Database.publish` of a pyarrow Table or RecordBatch whose types differ from the stream's:
cast safely to the stream's schema (pyarrow's safe cast), or refused naming the field, with
nothing kept. Checked through a real congregation against pyarrow's own cast of the same data."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import trio

from hallelujah import SchemaMismatch
from tests.conftest import Daemon
from tests.integration.helpers import assert_rows_equal, read

DOCUMENT = {"tradecraft": "casts", "analytics": [
    {"name": "x", "kind": "stream",
     "schema": {"id": "int64", "v": "float64", "tag": "string", "ts": "timestamp[ms]"}}]}
SCHEMA = pa.schema([("id", pa.int64()), ("v", pa.float64()), ("tag", pa.string()), ("ts", pa.timestamp("ms"))])


def narrow(start: int, n: int) -> pa.Table:
    """Rows as an application may hold them: int32 ids, int64 values for the float64 field,
    second timestamps, its columns in another order than the stream's."""
    rng = np.random.default_rng(start)
    return pa.table({
        "tag": pa.array([f"t{i % 7}" for i in range(start, start + n)]),
        "v": pa.array(rng.integers(-2**40, 2**40, n), pa.int64()),
        "ts": pa.array(np.arange(start, start + n) + 1_700_000_000, pa.timestamp("s")),
        "id": pa.array(np.arange(start, start + n), pa.int32()),
    })


async def test_a_table_or_batch_of_other_types_is_cast_safely_or_refused_naming_the_field(
        congregation: Daemon) -> None:
    db = congregation.db()
    table, batch = narrow(0, 5_000), narrow(5_000, 3_000).to_batches()[0]
    too_fine = narrow(8_000, 10).set_column(1, "v", pa.array([2**53 + 1] * 10, pa.int64()))
    text = narrow(8_000, 10).set_column(1, "v", pa.array(["1.5"] * 10))
    with trio.fail_after(30):
        await db.submit(DOCUMENT)
        assert await db.publish("casts/x", table) == 5_000
        with pytest.raises(SchemaMismatch, match=r'^field "v": expected float64, got int64 '):
            await db.publish("casts/x", too_fine)       # 2**53 + 1 is no float64: a safe cast refuses it
        with pytest.raises(SchemaMismatch, match=r'^field "v": expected float64, got string$'):
            await db.publish("casts/x", text)
        assert await db.publish("casts/x", batch, end=True) == 3_000
        got = await read(db, "casts/x")
    expected = pa.concat_tables([table, pa.Table.from_batches([batch])]).select(SCHEMA.names).cast(SCHEMA)
    assert_rows_equal(got, expected, "casts/x")
    assert got.schema.equals(SCHEMA)
