"""The session-window state (`jah.sessions`) against DuckDB sessionizing the same rows with window
functions (LAG per group, a new session when the gap is reached, GROUP BY), row for row in the
output's order: window_end, the group fields (nulls last), window_start."""
from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from congregation.partitioned import AggregateHallelu
from hallelujah.tradecraft import parse_document
from jah.sessions import SessionMerge, Sessions
from jah.watermarks import END_OF_TIME

US = pa.timestamp("us")
T0 = 1_700_006_400_000          # ms
SPEC = {"name": "visits", "kind": "aggregate", "input": "ev", "time": "ts", "session": "10s", "group": ["g"],
        "measures": {"n": "count()", "total": "sum(x)", "lo": "min(x)", "hi": "max(x)", "avg": "mean(x)",
                     "big": "count_if(x > 5)", "users": "count_distinct(u)"}}
OUT = pa.schema([("window_start", US), ("window_end", US), ("g", pa.string()), ("n", pa.int64()),
                 ("total", pa.int64()), ("lo", pa.int64()), ("hi", pa.int64()), ("avg", pa.float64()),
                 ("big", pa.int64()), ("users", pa.int64())])
DUCK = """
    WITH o AS (SELECT *, ts - lag(ts) OVER (PARTITION BY g ORDER BY ts) AS since FROM t),
         s AS (SELECT *, sum(CASE WHEN since IS NULL OR since >= INTERVAL {gap} THEN 1 ELSE 0 END)
                         OVER (PARTITION BY g ORDER BY ts ROWS UNBOUNDED PRECEDING) AS sid FROM o)
    SELECT min(ts)::TIMESTAMP, (max(ts) + INTERVAL {gap})::TIMESTAMP AS we, g, count(*), sum(x), min(x), max(x),
           avg(x), count(*) FILTER (WHERE x > 5), count(DISTINCT u)
    FROM s GROUP BY g, sid ORDER BY we, g NULLS LAST, min(ts)"""


def sessionized(table: pa.Table, gap: str = "'10 seconds'") -> list[tuple]:
    con = duckdb.connect()
    con.register("t", table)
    return [tuple(r) for r in con.execute(DUCK.format(gap=gap)).fetchall()]


def events(n: int, seed: int, span_s: int = 2_400) -> pa.Table:
    rng = np.random.default_rng(seed)
    ms = T0 + rng.integers(0, span_s * 1000, n)
    return pa.table({
        "ts": pa.array(ms, pa.timestamp("ms")),
        "g": pa.array(np.char.mod("g%d", rng.integers(0, 60, n)).astype(object), mask=rng.random(n) < 0.03),
        "x": pa.array(rng.integers(0, 10, n), mask=rng.random(n) < 0.05),
        "u": np.char.mod("u%d", rng.integers(0, 6, n)).astype(object)})


def rows(table: pa.Table) -> list[tuple]:
    return list(zip(*(c.to_pylist() for c in table.columns)))


def fold(sessions: Sessions, table: pa.Table, batches: int, closes: bool = True) -> list[pa.Table]:
    """Fold `table` (sorted by time) in batches, closing at each batch's least time (a watermark
    no later row is before)."""
    out = []
    for part in np.array_split(np.arange(table.num_rows), batches):
        batch = table.take(pa.array(part))
        sessions.add(batch)
        if closes and part.size:
            out.append(sessions.close(int(batch.column("ts").cast(pa.int64())[0].as_py()) * 1000))
    return out


def finished(parts: list[pa.Table]) -> list[tuple]:
    merge = SessionMerge(SPEC, OUT, parts[0].schema)
    for p in parts:
        merge.add(p)
    return rows(merge.close(END_OF_TIME))


def test_sessions_folded_batch_by_batch_match_duckdb_row_for_row() -> None:
    data = events(6_000, 1).sort_by("ts")
    s = Sessions(SPEC, data.schema, OUT)
    parts = fold(s, data, 17)
    parts.append(s.close(END_OF_TIME))
    expected = sessionized(data)
    assert len(expected) > 300 and finished(parts) == expected
    assert s.rows_held == 0 and s.rows_dropped == 0


def test_unordered_batches_merge_sessions_that_a_later_row_bridges() -> None:
    # every row of a group 12 s apart: alone they are sessions of one; the odd rows, coming later
    # (no watermark between), bridge each pair of neighbours into one session
    ms = T0 + np.arange(0, 40) * 6_000
    data = pa.table({"ts": pa.array(ms, pa.timestamp("ms")), "g": ["a"] * 40, "x": list(range(40)),
                     "u": [f"u{i % 7}" for i in range(40)]})
    s = Sessions(SPEC, data.schema, OUT)
    s.add(data.take(pa.array(np.arange(0, 40, 2))))
    assert s.open.num_rows == 20
    s.add(data.take(pa.array(np.arange(1, 40, 2)[::-1])))
    assert s.open.num_rows == 1
    got = rows(s.close(END_OF_TIME).drop_columns(["__window"]))
    assert got == sessionized(data) and got[0][3] == 40 and got[0][-1] == 7


def test_random_order_within_the_open_sessions_matches_duckdb() -> None:
    data = events(3_000, 2)
    s = Sessions(SPEC, data.schema, OUT)
    fold(s, data, 9, closes=False)       # unsorted batches: sessions open, merge, extend both ways
    assert finished([s.close(END_OF_TIME)]) == sessionized(data)


def test_small_batches_leave_the_other_groups_sessions_as_they_are() -> None:
    data = events(2_000, 6)
    s = Sessions(SPEC, data.schema, OUT)
    parts = fold(s, data.slice(0, 1_000), 2, closes=False)    # many sessions open, in every group
    assert s.open.num_rows > 200
    parts += fold(s, data.slice(1_000), 100, closes=False)    # 10 rows a batch: a few groups each
    assert finished([*parts, s.close(END_OF_TIME)]) == sessionized(data)


def test_a_snapshot_restored_into_a_fresh_state_goes_on_as_if_never_stopped() -> None:
    data = events(4_000, 3).sort_by("ts")
    half = data.num_rows // 2
    whole = Sessions(SPEC, data.schema, OUT)
    expected = fold(whole, data, 8) + [whole.close(END_OF_TIME)]
    first = Sessions(SPEC, data.schema, OUT)
    parts = fold(first, data.slice(0, half), 4)
    tables, closed = first.snapshot()
    assert tables["sessions"].num_rows > 0 and tables["distinct0"].num_rows > 0
    again = Sessions(SPEC, data.schema, OUT)
    again.restore(tables, closed)
    parts += fold(again, data.slice(half), 4) + [again.close(END_OF_TIME)]
    assert finished(parts) == finished(expected) == sessionized(data)


def test_a_merge_snapshot_keeps_the_sessions_not_yet_out() -> None:
    data = events(2_000, 4).sort_by("ts")
    s = Sessions(SPEC, data.schema, OUT)
    parts = fold(s, data, 5) + [s.close(END_OF_TIME)]
    merge = SessionMerge(SPEC, OUT, parts[0].schema)
    for p in parts:
        merge.add(p)
    early = merge.close(T0 * 1000 + 1_200_000_000)
    again = SessionMerge(SPEC, OUT, parts[0].schema)
    again.restore(*merge.snapshot())
    assert rows(early) + rows(again.close(END_OF_TIME)) == sessionized(data)


def test_rows_before_a_closed_watermark_and_null_times_are_dropped_not_folded() -> None:
    data = events(500, 5).sort_by("ts")
    s = Sessions(SPEC, data.schema, OUT)
    s.add(data)
    s.close(T0 * 1000 + 1_200_000_000)
    old = pa.table({"ts": pa.array([T0, None], pa.timestamp("ms")), "g": ["g1", "g1"], "x": [1, 2], "u": ["a", "b"]})
    before = s.rows_held
    s.add(old)
    assert s.rows_dropped == 2 and s.rows_held == before


def test_a_session_aggregate_refuses_top() -> None:
    with pytest.raises(ValueError, match="measures, not top"):
        Sessions({**SPEC, "top": {"n": 1, "by": "x"}}, events(1, 0).schema, OUT)


def test_the_plan_routes_by_group_to_instances_that_name_no_partitions(tmp_path) -> None:
    """Each group's sessions in one AGGREGATE; no partitions named, so no congestion split (at a
    time boundary) can cut a session in two."""
    tc = parse_document({"tradecraft": "s", "analytics": [
        {"name": "ev", "kind": "stream", "time": "ts",
         "schema": {"ts": "timestamp[ms]", "g": "string", "x": "int64", "u": "string"}}, SPEC]}, tmp_path)
    plans = AggregateHallelu(tc, tc.analytic("visits"), [1], 2).plan(lambda j: j)
    assert sorted(p.role for p in plans) == ["aggregate", "aggregate", "exchange", "merge"]
    assert [p.spec["keys"] for p in plans if p.role == "exchange"] == [["g"]]
    assert not any("partitions" in p.spec for p in plans if p.role == "aggregate")
    alone = AggregateHallelu(tc, tc.analytic("visits"), [2], 1).plan(lambda j: j)
    assert sorted(p.role for p in alone) == ["aggregate", "merge"]     # one instance takes both parts
