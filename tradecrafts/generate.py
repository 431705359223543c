"""Generate the GPS sample data of `gps.json` (deterministic): `python -m tradecrafts.generate N DIR`."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

T0_US = 1_700_000_000_000_000


def gps_positions(n: int, seed: int = 42) -> pa.Table:
    """GPS fixes; about 1 in 1000 is off the globe (|lat| > 90), which the tradecraft filters."""
    rng = np.random.default_rng(seed)
    lat = rng.uniform(-90, 90, n)
    lat[rng.random(n) < 0.001] = 95.0
    return pa.table({
        "ts": pa.array(T0_US + np.cumsum(rng.integers(1, 100, n)), pa.timestamp("us")),
        "device_id": rng.integers(0, 100_000, n),
        "lat": lat,
        "lon": rng.uniform(-180, 180, n),
    })


def write_gps(n: int, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "gps_positions.parquet"
    pq.write_table(gps_positions(n), path, row_group_size=65536)
    return path


if __name__ == "__main__":
    write_gps(int(sys.argv[1]), Path(sys.argv[2]))
