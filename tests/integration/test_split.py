"""A dataset JOIN that splits itself under congestion while the stream flows (DESIGN Fig 3),
through a real daemon, against DuckDB: the output is exact and each key keeps its order."""
from __future__ import annotations

import os
import signal

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import trio

from tests.integration.helpers import read


def events(n: int) -> pa.Table:
    rng = np.random.default_rng(21)
    return pa.table({"id": np.arange(n, dtype=np.int64), "tile": rng.integers(0, 5_000, n)})


def tiles() -> pa.Table:
    t = np.arange(4_800, dtype=np.int64)                 # tiles 4800..4999 are missing
    return pa.table({"tile": t, "country": pa.array([f"C{x % 90}" for x in t])})


def assert_per_key_order(ids: list[int], keys: list[int]) -> None:
    """Each key's rows in their source order (ids grow with the source position)."""
    by_key: dict[int, list[int]] = {}
    for i, key in zip(ids, keys):
        by_key.setdefault(key, []).append(i)
    assert all(seen == sorted(seen) for seen in by_key.values())


def filed(tmp_path, name: str, how: str, rate: int) -> tuple[pa.Table, pa.Table, dict]:
    """2 M events replayed at `rate` rows/s, joined with the tiles; congested at once."""
    stream, data = events(2_000_000), tiles()
    pq.write_table(stream, tmp_path / "events.parquet", row_group_size=50_000)
    pq.write_table(data, tmp_path / "tiles.parquet")
    return stream, data, {"tradecraft": name, "congestion": {"busy": 0.001, "for": "1ms"}, "analytics": [
        {"name": "ev", "kind": "stream", "source": {"path": str(tmp_path / "events.parquet"), "rate": rate}},
        {"name": "tiles", "kind": "ingest", "source": {"path": str(tmp_path / "tiles.parquet")}},
        {"name": "named", "kind": "join", "stream": "ev", "dataset": "tiles", "on": {"tile": "tile"},
         "fields": ["country"], "how": how}]}


async def test_a_congested_join_splits_repeatedly_mid_stream_and_the_output_stays_exact(daemon_factory, tmp_path):
    stream, data, doc = filed(tmp_path, "sp", "left", 400_000)
    db = daemon_factory(workers=2).db()
    await db.submit(doc)
    got = await read(db, "sp/named", timeout=90)
    con = duckdb.connect()
    con.register("s", stream)
    con.register("d", data)
    expected = con.execute("SELECT s.id, s.tile, d.country FROM s LEFT JOIN d ON s.tile = d.tile ORDER BY s.id").fetchall()
    rows = list(zip(got["id"].to_pylist(), got["tile"].to_pylist(), got["country"].to_pylist()))
    assert sorted(rows) == [tuple(r) for r in expected]          # nothing lost, nothing repeated
    assert_per_key_order([r[0] for r in rows], [r[1] for r in rows])
    info = (await db.describe("sp"))["tradecrafts"][0]
    splits = info["scaling"]
    assert len(splits) >= 2, info["events"]
    assert splits[0]["partitions"] == [256, 128, 128]
    assert any(s["partitions"] == [128, 64, 64] for s in splits[1:]), (splits, info["events"])     # a half split again
    assert all(s["kind"] == "split" and s["partitions"][0] == sum(s["partitions"][1:]) for s in splits)
    assert {w["worker"] for s in splits for w in s["into"]} == {0, 1}


async def test_a_split_pair_that_goes_idle_merges_back_and_nothing_is_lost(congregation, tmp_path):
    pq.write_table(tiles(), tmp_path / "tiles.parquet")
    doc = {"tradecraft": "mg", "congestion": {"busy": 0.001, "for": "200ms"}, "analytics": [
        {"name": "ev", "kind": "stream", "schema": {"id": "int64", "tile": "int64"}},
        {"name": "tiles", "kind": "ingest", "source": {"path": str(tmp_path / "tiles.parquet")}},
        {"name": "named", "kind": "join", "stream": "ev", "dataset": "tiles", "on": {"tile": "tile"},
         "fields": ["country"], "how": "inner"}]}
    db = congregation.db()
    await db.submit(doc)
    stream = events(1_000_000)

    async def scaling() -> list[dict]:
        return (await db.describe("mg"))["tradecrafts"][0]["scaling"]

    sent = 0
    with trio.fail_after(30):
        while not await scaling():            # busy until it splits
            await db.publish("mg/ev", stream.slice(sent, 5_000))
            sent += 5_000
            await trio.sleep(0.01)
        while not any(s["kind"] == "merge" for s in await scaling()):    # then idle until it merges
            await trio.sleep(0.2)
    await db.publish("mg/ev", stream.slice(sent), end=True)
    got = await read(db, "mg/named", timeout=60)
    data = tiles()
    keep = pc.is_in(stream["tile"], value_set=data["tile"])
    ids = got["id"].to_pylist()
    assert sorted(ids) == stream.filter(keep)["id"].to_pylist()
    assert_per_key_order(ids, got["tile"].to_pylist())
    history = await scaling()
    merged = next(s for s in history if s["kind"] == "merge")
    pairs = [sorted(j["jah"] for j in s["into"]) for s in history if s["kind"] == "split"]
    assert sorted(merged["jahs"]) in pairs                        # the two halves of one split
    assert merged["partitions"][0] == sum(merged["partitions"][1:])


async def test_a_worker_killed_during_splits_loses_and_repeats_nothing(daemon_factory, tmp_path):
    stream, data, doc = filed(tmp_path, "kx", "inner", 300_000)
    db = daemon_factory(workers=2).db()
    await db.submit(doc)
    with trio.fail_after(30):
        while not (info := await db.describe("kx"))["tradecrafts"][0]["scaling"]:
            await trio.sleep(0.05)
    worker = info["tradecrafts"][0]["scaling"][0]["into"][0]["worker"]
    os.kill(next(w["pid"] for w in info["workers"] if w["worker"] == worker), signal.SIGKILL)
    got = await read(db, "kx/named", timeout=90)
    keep = pc.is_in(stream["tile"], value_set=data["tile"])
    ids = got["id"].to_pylist()
    assert sorted(ids) == stream.filter(keep)["id"].to_pylist()      # none lost, none twice
    assert_per_key_order(ids, got["tile"].to_pylist())
    events_seen = (await db.describe("kx"))["tradecrafts"][0]["events"]
    assert any(e["kind"] == "restart" for e in events_seen)


async def test_a_new_dataset_version_mid_stream_joins_each_event_with_exactly_one_version(congregation, tmp_path):
    n = 600_000
    stream = events(n)
    pq.write_table(stream, tmp_path / "events.parquet", row_group_size=20_000)

    def labelled(label: str) -> pa.Table:
        t = np.arange(5_000, dtype=np.int64)
        return pa.table({"tile": t, "country": pa.array([f"{label}{x % 90}" for x in t])})

    pq.write_table(labelled("A"), tmp_path / "tiles.parquet")
    doc = {"tradecraft": "ver", "analytics": [
        {"name": "ev", "kind": "stream", "source": {"path": str(tmp_path / "events.parquet"), "rate": 150_000}},
        {"name": "tiles", "kind": "ingest", "source": {"path": str(tmp_path / "tiles.parquet")}},
        {"name": "named", "kind": "join", "stream": "ev", "dataset": "tiles", "on": {"tile": "tile"},
         "fields": ["country"], "how": "inner"}]}
    db = congregation.db()
    await db.submit(doc)
    await trio.sleep(1.5)                                   # about a third of the stream has passed
    pq.write_table(labelled("B"), tmp_path / "tiles.parquet")
    got = await read(db, "ver/named", timeout=60)
    assert got["id"].to_pylist() == list(range(n))          # every event once, in order
    first = pc.utf8_slice_codeunits(got["country"], 0, 1).to_pylist()
    swap = first.index("B")
    assert 0 < swap < n and set(first[:swap]) == {"A"} and set(first[swap:]) == {"B"}   # never mixed
    assert [f"{first[i]}{t % 90}" for i, t in enumerate(got["tile"].to_pylist())] == got["country"].to_pylist()
    versions = [e for e in (await db.describe("ver"))["tradecrafts"][0]["events"] if e["kind"] == "dataset_version"]
    assert [(v["version"], v["reason"]) for v in versions] == [(1, "start"), (2, "file changed")]
