"""The client library against a real congregation: submit, publish, read, stream, describe, cancel.

Once through the trio API (`Database`), once through the blocking facade (`hallelujah.connect`);
every output is compared with a pyarrow reference computed here.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import trio

import hallelujah
from hallelujah import NotFound, SchemaMismatch

from tests.integration.helpers import assert_rows_equal, wait_state

DOCUMENT = {"tradecraft": "tc", "analytics": [
    {"name": "x", "kind": "stream", "schema": {"id": "int64", "v": "float64", "tag": "string"}},
    {"name": "y", "kind": "transform", "input": "x",
     "derive": {"w": "v * 2 + 1", "big": "v > 50"}, "where": "v >= 10", "select": ["id", "tag", "w", "big"]}]}
SCHEMA = pa.schema([("id", pa.int64()), ("v", pa.float64()), ("tag", pa.string())])


def events(start: int, n: int) -> pa.Table:
    rng = np.random.default_rng(start)
    return pa.table({"id": np.arange(start, start + n, dtype=np.int64),
                     "v": rng.uniform(0, 100, n),
                     "tag": pa.array([f"t{i % 13}" for i in range(start, start + n)])}, schema=SCHEMA)


def reference(table: pa.Table) -> pa.Table:
    kept = table.filter(pc.greater_equal(table["v"], 10))
    v = kept["v"].to_numpy()
    return pa.table({"id": kept["id"], "tag": kept["tag"], "w": v * 2 + 1, "big": v > 50})


def retained(info: dict, analytic: str) -> dict:
    """The `retained` logs of one analytic in a `describe` answer."""
    return next(a["retained"] for a in info["tradecrafts"][0]["analytics"] if a["name"] == analytic)


async def test_published_stream_flows_through_a_transform_and_reads_back_streams_live_and_cancels(
        congregation):
    db = congregation.db()
    submitted = await db.submit(DOCUMENT)
    assert submitted["tradecraft"] == "tc" and "y" in submitted["outputs"]
    assert [t["name"] for t in await db.list()] == ["tc"]

    parts = [events(0, 1_000), events(1_000, 2_500), events(3_500, 1_500)]
    with trio.fail_after(20):
        assert await db.publish("tc/x", parts[0]) == 1_000
        async with db.stream("tc/x") as live:                 # from now: only what comes next
            assert await db.publish("tc/x", parts[1]) == 2_500
            assert await db.publish("tc/x", parts[2], end=True) == 1_500
            seen = [batch async for batch in live]
    assert_rows_equal(pa.Table.from_batches(seen), pa.concat_tables(parts[1:]), "live tc/x")

    everything = pa.concat_tables(parts)
    expected = reference(everything)
    with trio.fail_after(20):
        got = await db.read("tc/y")
        assert_rows_equal(got, expected, "tc/y")
        assert_rows_equal(await db.read("tc/x"), everything, "tc/x from the start")

        # a limit that ends inside a batch, one that ends on a batch edge, one past the end
        for limit in (7, 1_700, parts[0].num_rows, everything.num_rows + 10):
            assert_rows_equal(await db.read("tc/x", limit=limit), everything.slice(0, limit), f"limit {limit}")
        async with db.stream("tc/y", from_start=True, limit=5) as batches:
            first = pa.Table.from_batches([b async for b in batches])
        assert_rows_equal(first, expected.slice(0, 5), "tc/y limit 5")

    await wait_state(db, "tc")                               # its only input has ended
    info = await db.describe("tc")
    assert retained(info, "x")["x"]["rows"] == everything.num_rows
    assert retained(info, "y")["y"]["rows"] == expected.num_rows

    await db.cancel("tc")
    assert "tc" not in [t["name"] for t in await db.list()]
    with pytest.raises(NotFound):
        await db.cancel("tc")
    with pytest.raises(NotFound):
        await db.read("tc/y")


async def test_publish_with_a_mismatched_schema_is_refused_and_the_stream_keeps_its_rows(congregation):
    db = congregation.db()
    await db.submit(DOCUMENT)
    good = events(0, 3_000)
    assert await db.publish("tc/x", good) == good.num_rows
    before = retained(await db.describe("tc"), "x")

    wrong_type = good.set_column(1, "v", pc.cast(good["v"], pa.string()))     # (int64 would be cast)
    missing = good.drop_columns(["tag"])
    extra = good.append_column("more", pa.array(np.ones(good.num_rows)))
    renamed = good.rename_columns(["id", "value", "tag"])
    for bad in (wrong_type, missing, extra, renamed):
        with pytest.raises(SchemaMismatch):
            await db.publish("tc/x", bad, end=True)
    with pytest.raises(NotFound):
        await db.publish("tc/nope", good)
    with pytest.raises(NotFound):
        await db.publish("other/x", good)

    assert retained(await db.describe("tc"), "x") == before
    with trio.fail_after(20):
        assert_rows_equal(await db.read("tc/x", limit=good.num_rows), good, "tc/x after refused publishes")
    # the stream is still open: a refused `end=True` did not end it
    more = events(3_000, 500)
    await db.publish("tc/x", more, end=True)
    with trio.fail_after(20):
        assert_rows_equal(await db.read("tc/y"), reference(pa.concat_tables([good, more])), "tc/y")


def test_the_synchronous_facade_submits_publishes_reads_and_cancels(congregation):
    db = hallelujah.connect(congregation.address)
    assert db.submit(DOCUMENT)["tradecraft"] == "tc"
    parts = [events(0, 2_000), events(2_000, 1_000), events(3_000, 3_000)]
    assert db.publish("tc/x", parts[0]) == 2_000
    assert db.publish("tc/x", parts[1].to_batches()[0]) == 1_000      # a RecordBatch
    assert db.publish("tc/x", iter(parts[2].to_batches(max_chunksize=1_000)), end=True) == 3_000

    everything = pa.concat_tables(parts)
    expected = reference(everything)
    assert_rows_equal(db.read("tc/y"), expected, "tc/y")
    assert_rows_equal(db.read("tc/y", limit=123), expected.slice(0, 123), "tc/y limit 123")
    assert_rows_equal(db.stream("tc/x", from_start=True), everything, "tc/x")
    with pytest.raises(SchemaMismatch):
        db.publish("tc/x", everything.drop_columns(["tag"]))

    info = db.describe("tc")
    assert retained(info, "x")["x"]["rows"] == everything.num_rows
    assert [t["name"] for t in db.list()] == ["tc"]
    db.cancel("tc")
    assert db.list() == []
    with pytest.raises(NotFound):
        db.cancel("tc")
