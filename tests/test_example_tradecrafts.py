"""The example tradecrafts in tradecrafts/ run with `hallelujah run` from another directory, and every
output they write matches DuckDB computing the same thing over the bundled sample files; the sample
files are exactly what tradecrafts/generate.py produces, so they cannot drift from it."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tradecrafts import HERE
from tradecrafts.generate import SAMPLES


def run(name: str, tmp_path: Path) -> dict[str, pa.Table]:
    """`hallelujah run tradecrafts/NAME.json` from an unrelated cwd; its outputs by analytic name."""
    out = tmp_path / "out"
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "hallelujah", "run", str(HERE / f"{name}.json"), "--output-dir", str(out),
         "--format", "parquet", "--workers", "2"],
        cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "rejected" not in proc.stderr, proc.stderr
    tables = {p.name[: -len(".parquet")]: pq.read_table(p) for p in out.glob("*.parquet")}
    for ref, table in tables.items():       # a rejected output, if one is written, must be empty
        if ref.endswith(".rejected"):
            assert table.num_rows == 0, (ref, table.slice(0, 5).to_pylist())
    return {ref: t for ref, t in tables.items() if not ref.endswith(".rejected")}


def duck(sql: str, **files: str) -> list[tuple]:
    """Rows of `sql`, where each keyword names a view over a bundled sample file."""
    con = duckdb.connect()
    for view, file in files.items():
        con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet('{HERE / file}')")
    return [tuple(r) for r in con.execute(sql).fetchall()]


def rows(table: pa.Table, *names: str) -> list[tuple]:
    return list(zip(*(table.column(n).to_pylist() for n in names)))


def nulls_last(row: tuple) -> tuple:
    return tuple((x is None, x) for x in row)


def same(got: list[tuple], expected: list[tuple]) -> None:
    """Row lists equal, floats within 1e-9 relative."""
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert len(g) == len(e)
        for a, b in zip(g, e):
            if isinstance(a, float) or isinstance(b, float):
                assert a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), (g, e)
            else:
                assert a == b, (g, e)


def windows(table: pa.Table, length: timedelta) -> None:
    assert all(e - s == length for s, e in rows(table, "window_start", "window_end"))


def test_clicks_hourly_unique_users_clicks_and_impressions(tmp_path: Path) -> None:
    CHECKS["clicks"](run("clicks", tmp_path))


def check_clicks(out: dict[str, pa.Table]) -> None:
    """Its outputs, by analytic name, against DuckDB over the sample files."""
    assert set(out) == {"hourly"}
    hourly = out["hourly"].sort_by("window_start")
    windows(hourly, timedelta(hours=1))
    # the hashed (user, hour) id is one per user within an hour: as many as the distinct users
    expected = duck("""SELECT time_bucket(INTERVAL 1 hour, ts), count(DISTINCT "user"),
                              count(*) FILTER (WHERE action = 'click'), count(*) FILTER (WHERE action = 'impression')
                       FROM c GROUP BY 1 ORDER BY 1""", c="clicks.parquet")
    assert len(expected) == 24
    assert rows(hourly, "window_start", "users", "clicks", "impressions") == expected
    assert sum(r[2] + r[3] for r in expected) == 100_000


def test_roundtrips_left_join_within_a_second_with_latency(tmp_path: Path) -> None:
    CHECKS["roundtrips"](run("roundtrips", tmp_path))


def check_roundtrips(out: dict[str, pa.Table]) -> None:
    """Its outputs, by analytic name, against DuckDB over the sample files."""
    assert set(out) == {"latencies"}
    names = ["ts", "src", "dst", "msg_id", "responses.ts", "answered", "latency_ms"]
    got = sorted(rows(out["latencies"], *names), key=lambda r: (r[3], nulls_last(r)))
    expected = duck("""
        SELECT q.ts, q.src, q.dst, q.msg_id, r.ts, r.ts IS NOT NULL, (epoch_us(r.ts) - epoch_us(q.ts)) / 1000.0
          FROM q LEFT JOIN r
            ON q.src = r.dst AND q.dst = r.src AND q.msg_id = r.msg_id
           AND abs(epoch_us(r.ts) - epoch_us(q.ts)) <= 1000000
         ORDER BY q.msg_id, r.ts NULLS LAST""", q="requests.parquet", r="responses.parquet")
    assert len(expected) == 50_000
    answered = sum(r[5] for r in expected)
    assert 0.92 * 50_000 < answered < 0.95 * 50_000          # ~95 % answered, ~1 % of those too late
    same(got, expected)


def test_vitals_per_minute_and_alerts(tmp_path: Path) -> None:
    CHECKS["vitals"](run("vitals", tmp_path))


def check_vitals(out: dict[str, pa.Table]) -> None:
    """Its outputs, by analytic name, against DuckDB over the sample files."""
    assert set(out) == {"per_minute", "alerts"}
    per_minute = """
        SELECT time_bucket(INTERVAL 1 minute, ts) AS w, w + INTERVAL 1 minute AS e, patient, count(*) AS n,
               avg(heart_rate) AS hr_mean, min(heart_rate), max(heart_rate) AS hr_max,
               avg(systolic), min(systolic), max(systolic) AS sys_max,
               avg(diastolic), min(diastolic), max(diastolic) AS dia_max
          FROM v GROUP BY w, patient"""
    names = ["window_start", "window_end", "patient", "readings", "hr_mean", "hr_min", "hr_max",
             "sys_mean", "sys_min", "sys_max", "dia_mean", "dia_min", "dia_max"]
    got = sorted(rows(out["per_minute"], *names), key=lambda r: (r[0], r[2]))
    expected = duck(per_minute + " ORDER BY w, patient", v="vitals.parquet")
    assert len(expected) == 200 * 180
    same(got, expected)

    alert_names = ["window_start", "window_end", "patient", "reason", "hr_mean", "hr_max", "sys_max", "dia_max"]
    got_alerts = sorted(rows(out["alerts"], *alert_names), key=lambda r: (r[0], r[2]))
    expected_alerts = duck(f"""
        WITH m AS ({per_minute})
        SELECT w, e, patient,
               CASE WHEN hr_mean > 120 AND sys_max > 180 THEN 'tachycardia+hypertension'
                    WHEN hr_mean > 120 THEN 'tachycardia' ELSE 'hypertension' END,
               hr_mean, hr_max, sys_max, dia_max
          FROM m WHERE hr_mean > 120 OR sys_max > 180 ORDER BY w, patient""", v="vitals.parquet")
    reasons = {r[3] for r in expected_alerts}
    assert {"tachycardia", "hypertension"} <= reasons, reasons
    assert len({r[2] for r in expected_alerts}) >= 6
    same(got_alerts, expected_alerts)


def test_gps_countries_hourly_fixes_and_devices_per_country(tmp_path: Path) -> None:
    CHECKS["gps_countries"](run("gps_countries", tmp_path))


def check_gps_countries(out: dict[str, pa.Table]) -> None:
    """Its outputs, by analytic name, against DuckDB over the sample files."""
    assert set(out) == {"hourly"}
    hourly = out["hourly"]
    windows(hourly, timedelta(hours=1))
    got = sorted(rows(hourly, "window_start", "country", "fixes", "devices"), key=nulls_last)
    expected = duck("""
        WITH tiled AS (SELECT *, CAST(floor(lat + 90) * 360 + floor(lon + 180) AS BIGINT) AS tile
                         FROM p WHERE abs(lat) <= 90 AND abs(lon) <= 180)
        SELECT time_bucket(INTERVAL 1 hour, ts), t.country, count(*), count(DISTINCT device_id)
          FROM tiled LEFT JOIN t USING (tile)
         GROUP BY ALL ORDER BY 1, 2 NULLS LAST""", p="gps_positions.parquet", t="tiles.parquet")
    assert any(r[1] is None for r in expected) and len(expected) == 31      # 30 countries and the sea
    assert sum(r[2] for r in expected) > 19_900                            # only the off-globe ~20 dropped
    assert got == expected


CHECKS = {"clicks": check_clicks, "roundtrips": check_roundtrips, "vitals": check_vitals,
          "gps_countries": check_gps_countries}


@pytest.mark.parametrize("tradecraft", sorted(SAMPLES))
def test_bundled_samples_are_what_the_generator_writes(tradecraft: str, tmp_path: Path) -> None:
    written = SAMPLES[tradecraft](tmp_path)
    assert written
    for path in written:
        bundled = pq.read_table(HERE / path.name)
        fresh = pq.read_table(path)
        assert bundled.schema == fresh.schema, path.name
        assert bundled.equals(fresh), path.name
        assert (HERE / path.name).stat().st_size < 1_500_000


def test_every_example_document_has_a_description_and_its_sample_files() -> None:
    for name in ["gps", *(s for s in SAMPLES if s != "gps")]:
        document: dict[str, Any] = json.loads((HERE / f"{name}.json").read_text())
        assert document["tradecraft"] == name and document["description"]
        for analytic in document["analytics"]:
            if "source" in analytic:
                assert (HERE / analytic["source"]["path"]).is_file(), (name, analytic["source"])
