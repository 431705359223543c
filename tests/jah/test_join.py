"""JOIN with a dataset, through a real daemon, against DuckDB computing the same join."""
from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest


def events(n: int) -> pa.Table:
    rng = np.random.default_rng(7)
    return pa.table({"id": np.arange(n, dtype=np.int64), "tile": rng.integers(0, 1_200, n),
                     "code": pa.array([f"k{int(x)}" for x in rng.integers(0, 300, n)])})


def dataset() -> pa.Table:
    # tiles 0..999 once, 1000..1099 twice (duplicates), 1100..1199 missing
    tile = np.concatenate([np.arange(1_000), np.arange(1_000, 1_100), np.arange(1_000, 1_100)])
    return pa.table({"tile": tile.astype(np.int64),
                     "country": pa.array([f"C{t % 50}" for t in tile]),
                     "code": pa.array([f"k{t % 300}" for t in tile]),
                     "rank": np.arange(tile.size, dtype=np.int64)})


def reference(stream: pa.Table, data: pa.Table, keys: dict[str, str], how: str) -> list[tuple]:
    con = duckdb.connect()
    con.register("s", stream)
    con.register("d", data)
    on = " AND ".join(f"s.{a} = d.{b}" for a, b in keys.items())
    rows = con.execute(f"SELECT s.id, d.country, d.rank FROM s {how.upper()} JOIN d ON {on} "
                       f"ORDER BY s.id, d.rank").fetchall()
    return [tuple(r) for r in rows]


@pytest.mark.parametrize("how", ["left", "inner"])
@pytest.mark.parametrize("keys", [{"tile": "tile"}, {"code": "code"}, {"tile": "tile", "code": "code"}],
                         ids=["int", "string", "two-fields"])
async def test_join_with_a_dataset_matches_duckdb(congregation, tmp_path, how, keys):
    stream, data = events(60_000), dataset()
    pq.write_table(stream, tmp_path / "events.parquet", row_group_size=10_000)
    pq.write_table(data, tmp_path / "tiles.parquet")
    db = congregation.db()
    await db.submit({"tradecraft": "j", "analytics": [
        {"name": "events", "kind": "stream", "source": {"path": str(tmp_path / "events.parquet")}},
        {"name": "tiles", "kind": "ingest", "source": {"path": str(tmp_path / "tiles.parquet")}},
        {"name": "located", "kind": "join", "stream": "events", "dataset": "tiles", "on": keys,
         "fields": ["country", "rank"], "how": how}]})
    got = await db.read("j/located")
    # row for row: the stream's order, a row's several matches in dataset order
    rows = list(zip(got["id"].to_pylist(), got["country"].to_pylist(), got["rank"].to_pylist()))
    assert rows == reference(stream, data, keys, how)


async def test_a_field_on_both_sides_comes_out_prefixed_with_the_dataset_name(congregation, tmp_path):
    stream, data = events(5_000), dataset()
    pq.write_table(stream, tmp_path / "events.parquet")
    pq.write_table(data, tmp_path / "tiles.parquet")
    db = congregation.db()
    await db.submit({"tradecraft": "p", "analytics": [
        {"name": "events", "kind": "stream", "source": {"path": str(tmp_path / "events.parquet")}},
        {"name": "tiles", "kind": "ingest", "source": {"path": str(tmp_path / "tiles.parquet")}},
        {"name": "located", "kind": "join", "stream": "events", "dataset": "tiles",
         "on": {"tile": "tile"}, "fields": ["code", "country"], "how": "inner"}]})
    got = await db.read("p/located")
    assert got.column_names == ["id", "tile", "code", "tiles.code", "country"]
    lookup = {t: c for t, c in zip(data["tile"].to_pylist(), data["code"].to_pylist())}
    assert got["tiles.code"].to_pylist() == [lookup[t] for t in got["tile"].to_pylist()]


async def test_a_join_over_its_congestion_threshold_is_recorded_as_congested(congregation, tmp_path):
    stream, data = events(400_000), dataset()
    pq.write_table(stream, tmp_path / "events.parquet", row_group_size=10_000)
    pq.write_table(data, tmp_path / "tiles.parquet")
    db = congregation.db()
    await db.submit({"tradecraft": "c", "congestion": {"busy": 0.001, "for": "500ms"}, "analytics": [
        {"name": "events", "kind": "stream",
         "source": {"path": str(tmp_path / "events.parquet"), "rate": 200_000}},
        {"name": "tiles", "kind": "ingest", "source": {"path": str(tmp_path / "tiles.parquet")}},
        {"name": "located", "kind": "join", "stream": "events", "dataset": "tiles",
         "on": {"tile": "tile"}, "fields": ["country"], "how": "left"}]})
    got = await db.read("c/located")
    assert got.num_rows == reference_rows(stream, data)
    events_seen = (await db.describe("c"))["tradecrafts"][0]["events"]
    congested = [e for e in events_seen if e["kind"] == "congested"]
    assert len(congested) == 1                     # one episode, recorded once
    assert congested[0]["jah"] == "c/located/join"
    assert congested[0]["busy"] >= 0.001 and congested[0]["for_seconds"] == 0.5


def reference_rows(stream: pa.Table, data: pa.Table) -> int:
    return len(reference(stream, data, {"tile": "tile"}, "left"))
