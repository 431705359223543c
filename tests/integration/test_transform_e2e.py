"""A file-sourced stream through a transform, checked against a pyarrow reference."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def events(n: int, seed: int = 1) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({"ts": np.arange(n, dtype=np.int64), "device_id": rng.integers(0, 1000, n),
                     "lat": rng.uniform(-95, 95, n), "lon": rng.uniform(-180, 180, n)})


def document(path: str) -> dict:
    return {"tradecraft": "gps", "analytics": [
        {"name": "positions", "kind": "stream", "source": {"path": path}},
        {"name": "tiled", "kind": "transform", "input": "positions",
         "derive": {"tile": "floor(lat + 90) * 360 + floor(lon + 180)"},
         "where": "abs(lat) <= 90", "select": ["ts", "device_id", "tile"]}]}


async def test_file_stream_through_transform_matches_pyarrow(congregation, tmp_path):
    table = events(300_000)
    pq.write_table(table, tmp_path / "events.parquet")
    db = congregation.db()
    await db.submit(document(str(tmp_path / "events.parquet")))
    got = await db.read("gps/tiled")
    kept = table.filter(pc.less_equal(pc.abs(table["lat"]), 90))
    tile = pc.add(pc.multiply(pc.floor(pc.add(kept["lat"], 90)), 360), pc.floor(pc.add(kept["lon"], 180)))
    assert got.column_names == ["ts", "device_id", "tile"]
    assert got["ts"].to_pylist() == kept["ts"].to_pylist()
    assert got["tile"].to_pylist() == tile.to_pylist()
    assert got["device_id"].to_pylist() == kept["device_id"].to_pylist()
