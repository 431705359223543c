"""Generate the sample data of the example tradecrafts (deterministic).

    python -m tradecrafts.generate N DIR      GPS fixes of `gps.json` (N rows) into DIR
    python -m tradecrafts.generate all [DIR]  every bundled sample file (default: this directory)

Each sample comes from a seeded generator below, so the files in this directory are exactly what
`write_all` writes (tests/test_example_tradecrafts.py checks that they have not drifted).
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

T0_US = 1_700_000_000_000_000
DAY_S = 1_700_006_400          # 2023-11-15 00:00:00 UTC, an hour (and day) boundary, in seconds
GPS_ROWS = 20_000              # rows of the bundled gps_positions.parquet


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


def clicks(n: int = 100_000, seed: int = 7) -> pa.Table:
    """A day of clicks and impressions (`clicks.json`): times in order but up to 5 s out of it (the
    document allows 10 s of lateness), users skewed (u000000 is very hot, most are rare), about one
    event in ten a click."""
    rng = np.random.default_rng(seed)
    ts = np.sort(DAY_S + rng.integers(0, 86_400, n)) + rng.integers(-5, 1, n)
    ts = np.clip(ts, DAY_S, None)
    user = np.char.mod("u%06d", np.floor(50_000 * rng.random(n) ** 3).astype(np.int64)).astype(object)
    action = np.where(rng.random(n) < 0.1, "click", "impression").astype(object)
    return pa.table({"ts": pa.array(ts, pa.timestamp("s")), "user": pa.array(user, pa.string()),
                     "action": pa.array(action, pa.string())})


def roundtrips(n: int = 50_000, seed: int = 11) -> tuple[pa.Table, pa.Table]:
    """Requests between 40 hosts at ~1000/s (`roundtrips.json`), and their responses: a response
    goes back from the request's dst to its src with the same msg_id. About 95 % are answered,
    most within tens of milliseconds, a few only after 1-2 s (outside the join's 1 s window)."""
    rng = np.random.default_rng(seed)
    ts = T0_US + np.cumsum(rng.integers(1, 2_000, n))
    src = rng.integers(0, 40, n).astype(np.int32)
    dst = ((src + rng.integers(1, 40, n)) % 40).astype(np.int32)        # never to itself
    msg_id = 1_000_000 + np.arange(n, dtype=np.int64)
    answered = rng.random(n) < 0.95
    latency = np.minimum(rng.exponential(30_000, n).astype(np.int64) + 200, 900_000)
    slow = rng.random(n) < 0.01
    latency = np.where(slow, rng.integers(1_000_001, 2_000_000, n), latency)
    r_ts = (ts + latency)[answered]
    order = np.argsort(r_ts, kind="stable")
    requests = pa.table({"ts": pa.array(ts, pa.timestamp("us")), "src": src, "dst": dst, "msg_id": msg_id})
    responses = pa.table({"ts": pa.array(r_ts[order], pa.timestamp("us")), "src": dst[answered][order],
                          "dst": src[answered][order], "msg_id": msg_id[answered][order]})
    return requests, responses


def vitals(patients: int = 200, hours: int = 3, seed: int = 5) -> pa.Table:
    """Bedside monitors (`vitals.json`): each patient read about every 10 s for `hours` hours,
    in time order. Most are stable; ten go into distress for 10-40 minutes (five with a
    racing heart, five with a hypertensive crisis), so the alerts are not empty."""
    rng = np.random.default_rng(seed)
    span = hours * 3600
    parts = []
    for p in range(patients):
        t = np.arange(rng.integers(0, 10), span, 10)
        t = np.clip(t + rng.integers(-2, 3, t.size), 0, span - 1)
        k = t.size
        hr = rng.normal(rng.uniform(60, 95), 6, k)
        sys_ = rng.normal(rng.uniform(105, 145), 8, k)
        dia = rng.normal(rng.uniform(65, 90), 5, k)
        if p % 40 == 3:        # tachycardia episodes: patients 3, 43, 83, ...
            start, length = rng.integers(0, span - 2400), rng.integers(600, 2400)
            hr = np.where((t >= start) & (t < start + length), rng.normal(138, 8, k), hr)
        if p % 40 == 17:       # hypertensive crises: patients 17, 57, 97, ...
            start, length = rng.integers(0, span - 2400), rng.integers(600, 2400)
            during = (t >= start) & (t < start + length)
            sys_ = np.where(during, rng.normal(188, 7, k), sys_)
            dia = np.where(during, rng.normal(118, 6, k), dia)
        parts.append((DAY_S + t, np.full(k, f"p{p:03d}", dtype=object), hr, sys_, dia))
    ts, patient, hr, sys_, dia = (np.concatenate(c) for c in zip(*parts))
    order = np.argsort(ts, kind="stable")
    hr, sys_, dia = (np.rint(x[order]).astype(np.int32) for x in (hr, sys_, dia))
    return pa.table({"ts": pa.array(ts[order], pa.timestamp("s")), "patient": pa.array(patient[order], pa.string()),
                     "heart_rate": hr, "systolic": sys_, "diastolic": dia})


def tiles(seed: int = 3) -> pa.Table:
    """A made-up world map at 1-degree tiles (`gps_countries.json`): tile = (lat+90)*360 + (lon+180)
    over 0..64799. The globe is cut into 10x10-degree blocks; about a third are sea (their tiles are
    not in the table), the rest belong to 30 imaginary countries, each a Voronoi cell of blocks
    around a seed block. Country codes are two letters: "QA".."QZ", "RA".."RD"."""
    rng = np.random.default_rng(seed)
    by, bx = np.divmod(np.arange(18 * 36), 36)
    seeds = rng.choice(18 * 36, 30, replace=False)
    sy, sx = np.divmod(seeds, 36)
    dx = np.abs(bx[:, None] - sx[None, :])
    dist = (by[:, None] - sy[None, :]) ** 2 + np.minimum(dx, 36 - dx) ** 2          # wraps at 180°
    block_country = np.argmin(dist, axis=1)
    land = rng.random(18 * 36) >= 0.35
    codes = np.array([chr(ord("Q") + i // 26) + chr(ord("A") + i % 26) for i in range(30)], dtype=object)
    tile = np.arange(64_800, dtype=np.int64)
    lat_i, lon_i = np.divmod(tile, 360)
    block = (lat_i // 10) * 36 + lon_i // 10
    keep = land[block]
    return pa.table({"tile": tile[keep], "country": pa.array(codes[block_country[block[keep]]], pa.string())})


def _write(table: pa.Table, path: Path, row_group_size: int) -> Path:
    pq.write_table(table, path, row_group_size=row_group_size, compression="zstd")
    return path


def write_clicks(directory: Path) -> list[Path]:
    return [_write(clicks(), directory / "clicks.parquet", 16_384)]


def write_roundtrips(directory: Path) -> list[Path]:
    requests, responses = roundtrips()
    return [_write(requests, directory / "requests.parquet", 16_384),
            _write(responses, directory / "responses.parquet", 16_384)]


def write_vitals(directory: Path) -> list[Path]:
    return [_write(vitals(), directory / "vitals.parquet", 32_768)]


def write_tiles(directory: Path) -> list[Path]:
    return [_write(tiles(), directory / "tiles.parquet", 65_536)]


def write_gps_sample(directory: Path) -> list[Path]:
    return [write_gps(GPS_ROWS, directory)]


# tradecraft -> the writer of its sample files
SAMPLES: dict[str, Callable[[Path], list[Path]]] = {
    "gps": write_gps_sample,
    "clicks": write_clicks,
    "roundtrips": write_roundtrips,
    "vitals": write_vitals,
    "gps_countries": lambda d: write_gps_sample(d) + write_tiles(d),
}


def write_all(directory: Path) -> list[Path]:
    """Every bundled sample file, into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    return sorted({p for write in SAMPLES.values() for p in write(directory)})


if __name__ == "__main__":
    if sys.argv[1:2] == ["all"]:
        for written in write_all(Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).resolve().parent):
            print(written)
    else:
        write_gps(int(sys.argv[1]), Path(sys.argv[2]))
