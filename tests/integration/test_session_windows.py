"""Session windows (`"session": gap`) end to end, against DuckDB sessionizing the same rows with
window functions (LAG per group, a new session when the gap is reached, then GROUP BY), row for
row in the documented order: window_end, the group fields (nulls last), window_start.

Through `hallelujah run` with 2 workers (every measure, two group fields, nulls), and through a
running congregation with 2 workers, whose EXCHANGE splits the groups over two AGGREGATEs, with
stragglers: those before the watermark go to `rejected`, the rest make exactly DuckDB's sessions
of the rows kept; a query mid-stream shows the sessions still open. Open sessions survive a kill
through a checkpoint."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import trio

from tests.conftest import sandbox
from tests.integration.helpers import killed_after_a_checkpoint, read, read_by_logsource
from tests.integration.test_aggregate import straggling

HALLELUJAH = Path(sys.executable).with_name("hallelujah")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def sessionized(table: pa.Table, gap: str, group: list[str], measures: str) -> list[tuple]:
    """DuckDB's sessions of `table` (ts, the group fields): the reference, in the output's order."""
    by = ", ".join(f'"{g}"' for g in group)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("t", table)
    sql = f"""
        WITH o AS (SELECT *, ts - lag(ts) OVER (PARTITION BY {by} ORDER BY ts) AS since FROM t),
             s AS (SELECT *, sum(CASE WHEN since IS NULL OR since >= INTERVAL '{gap}' THEN 1 ELSE 0 END)
                             OVER (PARTITION BY {by} ORDER BY ts ROWS UNBOUNDED PRECEDING) AS sid FROM o)
        SELECT min(ts)::TIMESTAMP, (max(ts) + INTERVAL '{gap}')::TIMESTAMP AS we, {by}, {measures}
        FROM s GROUP BY {by}, sid ORDER BY we, {", ".join(f'"{g}" NULLS LAST' for g in group)}, min(ts)"""
    return [tuple(r) for r in con.execute(sql).fetchall()]


def rows_of(table: pa.Table) -> list[tuple]:
    return list(zip(*(c.to_pylist() for c in table.columns)))


def test_sessions_through_run_with_two_workers_match_duckdb_row_for_row(tmp_path: Path) -> None:
    rng = np.random.default_rng(21)
    n = 40_000
    ms = np.sort(rng.integers(0, 6 * 3_600_000, n)) + 1_700_006_400_000
    table = pa.table({
        "ts": pa.array(ms, pa.timestamp("ms")),
        "user": pa.array(np.char.mod("u%d", rng.integers(0, 400, n)).astype(object), mask=rng.random(n) < 0.01),
        "level": pa.array(rng.integers(0, 2, n), pa.int32()),
        "x": pa.array(rng.integers(-20, 100, n), mask=rng.random(n) < 0.05),
        "page": np.char.mod("p%d", rng.integers(0, 9, n)).astype(object)})
    pq.write_table(table, tmp_path / "ev.parquet", row_group_size=10_000)
    doc = tmp_path / "sessions.json"
    doc.write_text(json.dumps({"tradecraft": "ses", "analytics": [
        {"name": "ev", "kind": "stream", "source": {"path": "ev.parquet"}, "time": "ts"},
        {"name": "visits", "kind": "aggregate", "input": "ev", "time": "ts", "session": "90s",
         "group": ["user", "level"],
         "measures": {"n": "count()", "total": "sum(x)", "lo": "min(x)", "hi": "max(x)", "avg": "mean(x)",
                      "big": "count_if(x > 50)", "pages": "count_distinct(page)"}}]}))
    out = tmp_path / "out"
    done = subprocess.run([str(HALLELUJAH), "run", str(doc), "--workers", "2", "--output-dir", str(out),
                           "--format", "parquet"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env=ENV, check=False)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    got = pq.read_table(out / "visits.parquet")
    assert got.column_names == ["window_start", "window_end", "user", "level", "n", "total", "lo", "hi", "avg",
                                "big", "pages"]
    expected = sessionized(table, "90 seconds", ["user", "level"],
                           "count(*), sum(x), min(x), max(x), avg(x), count(*) FILTER (WHERE x > 50), "
                           "count(DISTINCT page)")
    assert len(expected) > 10_000
    got_rows = rows_of(got)
    assert [r[:-3] + r[-2:] for r in got_rows] == [r[:-3] + r[-2:] for r in expected]
    assert np.allclose(np.array([r[-3] for r in got_rows], dtype=float),    # a mean: up to rounding
                       np.array([r[-3] for r in expected], dtype=float), rtol=1e-12, equal_nan=True)


async def test_sessions_through_a_congregation_with_late_rows_to_rejected(daemon_factory) -> None:
    doc = {"tradecraft": "visits", "analytics": [
        {"name": "ev", "kind": "stream", "schema": {"ts": "timestamp[s]", "user": "string", "action": "string"},
         "time": "ts", "lateness": "30s"},
        {"name": "visits", "kind": "aggregate", "input": "ev", "time": "ts", "session": "40s", "group": ["user"],
         "measures": {"n": "count()", "clicks": "count_if(action == 'click')", "kinds": "count_distinct(action)"}}]}
    batches, late, kept = straggling(np.random.default_rng(8), 400, 150,
                                     np.array(["click", "view", "buy"], dtype=object))
    measures = "count(*), count(*) FILTER (WHERE action = 'click'), count(DISTINCT action)"
    db = daemon_factory(workers=2).db()
    with trio.fail_after(60):
        await db.submit(doc)
        info = (await db.describe("visits"))["tradecrafts"][0]
        roles = [j["role"] for a in info["analytics"] for j in a.get("jahs", [])]
        assert roles.count("aggregate") == 2 and "exchange" in roles and roles.count("merge") == 1, roles
        for table in batches[:6]:
            await db.publish("visits/ev", table)
        # mid-stream, a query shows the sessions not out yet: those ending after the watermark
        so_far = pa.concat_tables(kept[:6])
        watermark = pc.max(pa.concat_tables(batches[:6])["ts"]).as_py() - timedelta(seconds=30)
        open_now = [r for r in sessionized(so_far, "40 seconds", ["user"], measures) if r[1] > watermark]
        shown: list[tuple] = []
        with trio.move_on_after(20):
            while shown != open_now:
                shown = rows_of(await db.query("visits/visits"))
                await trio.sleep(0.1)
        assert shown == open_now and len(open_now) > 50
        for i, table in enumerate(batches[6:], 6):
            await db.publish("visits/ev", table, end=i == len(batches) - 1)
        rejected = await read(db, "visits/visits.rejected", timeout=30)
        got = await read(db, "visits/visits", timeout=30)
    expected_late = pa.concat_tables(late)
    assert expected_late.num_rows > 50
    assert sorted(zip(rejected["ts"].to_pylist(), rejected["user"].to_pylist())) == \
        sorted(zip(expected_late["ts"].to_pylist(), expected_late["user"].to_pylist()))
    assert set(rejected.column("reason").to_pylist()) == {"late: event time is before the watermark"}
    expected = sessionized(pa.concat_tables(kept), "40 seconds", ["user"], measures)
    assert len(expected) > 500
    assert rows_of(got) == expected


VISITS = {"tradecraft": "vs", "analytics": [
    {"name": "ev", "kind": "stream", "time": "ts", "schema": {"ts": "timestamp[ms]", "user": "string", "x": "int64"}},
    {"name": "visits", "kind": "aggregate", "input": "ev", "time": "ts", "session": "45s", "group": ["user"],
     "measures": {"n": "count()", "total": "sum(x)", "xs": "count_distinct(x)"}}]}


async def test_open_sessions_are_kept_at_a_checkpoint_and_restored_after_a_kill(tmp_path) -> None:
    """Sessions open at the checkpoint (and their distinct sets) come back after a kill -9: the
    output is DuckDB's over every row, and only what came after the checkpoint is replayed."""
    rng = np.random.default_rng(30)
    n, parts_of = 8_000, 6
    ms = np.sort(rng.integers(0, parts_of * 120_000, n * parts_of)) + 1_700_006_400_000
    data = pa.table({"ts": pa.array(ms, pa.timestamp("ms")),
                     "user": np.char.mod("u%d", rng.integers(0, 2_500, n * parts_of)).astype(object),
                     "x": rng.integers(0, 20, n * parts_of)})
    parts = [data.slice(i * n, n) for i in range(parts_of)]
    got, taken, info = await killed_after_a_checkpoint(tmp_path / "data", sandbox(tmp_path), VISITS, "vs/ev",
                                                       parts, 2, "vs/visits", timeout=60)
    assert taken["bytes"] > 0, taken
    assert [e["checkpoint"] for e in info["events"] if e["kind"] == "restored"] == [taken["id"]], info["events"]
    assert read_by_logsource(info) == 3 * n            # parts 3, 4 and 5 replayed or new
    expected = sessionized(data, "45 seconds", ["user"], "count(*), sum(x), count(DISTINCT x)")
    assert len(expected) > 5_000
    assert rows_of(got) == expected
