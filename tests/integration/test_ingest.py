"""INGEST: a dataset loaded once, again on a quantized timer, and when its file changes."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import trio

from jah.ingest import next_fire
from tests.integration.helpers import wait_state


def tiles(n: int, label: str) -> pa.Table:
    return pa.table({"tile": np.arange(n, dtype=np.int64), "country": [f"{label}{i % 7}" for i in range(n)]})


def test_the_timer_fires_on_multiples_of_its_period_plus_offset():
    assert next_fire(3599.0, 3600, 0) == 3600
    assert next_fire(3600.0, 3600, 0) == 7200
    assert next_fire(10.0, 3600, 60) == 60
    assert next_fire(61.0, 3600, 60) == 3660


async def test_an_ingest_without_every_loads_once_and_its_document_finishes(congregation, tmp_path):
    table = tiles(5_000, "C")
    pq.write_table(table, tmp_path / "tiles.parquet")
    db = congregation.db()
    await db.submit({"tradecraft": "geo", "analytics": [
        {"name": "tiles", "kind": "ingest", "source": {"path": str(tmp_path / "tiles.parquet")}}]})
    got = await db.read("geo/tiles")
    assert got.to_pydict() == table.to_pydict()
    await wait_state(db, "geo")                # the output ends, then the tradecraft is finished
    info = (await db.describe("geo"))["tradecrafts"][0]
    assert [(e["version"], e["rows"]) for e in info["events"] if e["kind"] == "dataset_version"] == [(1, 5_000)]


async def test_a_changed_file_is_loaded_again_as_a_new_version(congregation, tmp_path):
    path = tmp_path / "tiles.parquet"
    first, second = tiles(3_000, "A"), tiles(4_000, "B")
    pq.write_table(first, path)
    db = congregation.db()
    await db.submit({"tradecraft": "geo", "analytics": [
        {"name": "tiles", "kind": "ingest", "every": "1h", "source": {"path": str(path)}}]})
    with trio.fail_after(20):
        async with db.stream("geo/tiles", from_start=True) as batches:
            seen = 0
            got = []
            async for batch in batches:
                got.append(batch)
                seen += batch.num_rows
                if seen == first.num_rows:
                    await trio.sleep(0.05)
                    pq.write_table(second, path)       # a new version of the dataset
                if seen == first.num_rows + second.num_rows:
                    break
    assert pa.Table.from_batches(got).to_pydict() == pa.concat_tables([first, second]).to_pydict()
    info = (await db.describe("geo"))["tradecrafts"][0]
    versions = [(e["version"], e["rows"], e["reason"]) for e in info["events"] if e["kind"] == "dataset_version"]
    assert versions == [(1, 3_000, "start"), (2, 4_000, "file changed")]


async def test_a_file_caught_half_written_is_no_version_and_the_whole_one_loads_once_written(congregation, tmp_path):
    """The file is rewritten in place, slowly: the INGEST sees it half written (no parquet
    footer yet), keeps version 1 without failing anything, and loads the whole file as version 2
    once it is complete: never a version of half a file."""
    path = tmp_path / "tiles.parquet"
    first, second = tiles(3_000, "A"), tiles(40_000, "B")
    pq.write_table(first, path)
    sink = pa.BufferOutputStream()
    pq.write_table(second, sink)
    whole = sink.getvalue().to_pybytes()
    db = congregation.db()
    await db.submit({"tradecraft": "geo", "analytics": [
        {"name": "tiles", "kind": "ingest", "every": "1h", "source": {"path": str(path)}}]})
    got: list[pa.RecordBatch] = []
    with trio.fail_after(30):
        async with db.stream("geo/tiles", from_start=True) as batches:
            async for batch in batches:
                got.append(batch)
                if sum(b.num_rows for b in got) == first.num_rows:
                    break
        with open(path, "r+b") as f:                         # in place: truncated, half, then a pause
            f.truncate(0)
            f.write(whole[: len(whole) // 2])
            f.flush()
            await trio.sleep(2.5)                            # the watcher looks (every second) meanwhile
            f.write(whole[len(whole) // 2:])
        async with db.stream("geo/tiles", from_start=True) as batches:
            got = []
            async for batch in batches:
                got.append(batch)
                if sum(b.num_rows for b in got) == first.num_rows + second.num_rows:
                    break
        await trio.sleep(1.5)                                # a third version, if any, would be there by now
        info = (await db.describe("geo"))["tradecrafts"][0]
    assert pa.Table.from_batches(got).to_pydict() == pa.concat_tables([first, second]).to_pydict()
    assert info["state"] == "running"
    versions = [(e["version"], e["rows"], e["reason"]) for e in info["events"] if e["kind"] == "dataset_version"]
    assert versions == [(1, 3_000, "start"), (2, 40_000, "file changed")]
    assert sum(log["rows"] for a in info["analytics"] for log in a["retained"].values()) == 43_000
