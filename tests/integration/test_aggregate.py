"""Aggregates through a real daemon, against DuckDB computing the same windows over the same rows:
hourly unique users, clicks and impressions on skewed data split over two workers; grouped hopping
windows with several measures; late events counted in `rejected`; a query of the open windows."""
from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import trio

from hallelujah import TradecraftError

from tests.integration.helpers import read

T0 = 1_700_006_400       # an hour boundary, in seconds


def clicks(n: int, seed: int = 3) -> pa.Table:
    """Like the bench's clicks: a day of sorted times, users skewed (a few are very hot)."""
    rng = np.random.default_rng(seed)
    ts = np.sort(T0 + rng.integers(0, 86_400, n))
    users = np.char.mod("u%06d", np.floor(200_000 * rng.random(n) ** 3).astype(np.int64)).astype(object)
    action = np.where(rng.random(n) < 0.1, "click", "impression").astype(object)
    return pa.table({"ts": pa.array(ts, pa.timestamp("s")), "user": users, "action": action})


def duck(sql: str, **tables: pa.Table) -> list[tuple]:
    con = duckdb.connect()
    for name, table in tables.items():
        con.register(name, table)
    return [tuple(r) for r in con.execute(sql).fetchall()]


def rows_of(table: pa.Table, *names: str) -> list[tuple]:
    return list(zip(*(table.column(n).to_pylist() for n in names)))


async def test_hourly_unique_users_clicks_and_impressions_are_exact_on_skewed_data(daemon_factory, tmp_path):
    data = clicks(400_000)
    pq.write_table(data, tmp_path / "clicks.parquet", row_group_size=25_000)
    doc = {"tradecraft": "web", "analytics": [
        {"name": "clicks", "kind": "stream", "source": {"path": str(tmp_path / "clicks.parquet")},
         "time": "ts"},
        {"name": "hourly", "kind": "aggregate", "input": "clicks", "time": "ts", "window": "1h",
         "measures": {"users": "count_distinct(user)", "clicks": "count_if(action == 'click')",
                      "impressions": "count_if(action == 'impression')"}}]}
    db = daemon_factory(workers=2).db()
    await db.submit(doc)
    got = await read(db, "web/hourly", timeout=60)
    expected = duck("""SELECT time_bucket(INTERVAL 1 hour, ts) AS w, count(DISTINCT "user"),
                              count(*) FILTER (WHERE action = 'click'), count(*) FILTER (WHERE action = 'impression')
                       FROM c GROUP BY 1 ORDER BY 1""", c=data)
    assert len(expected) == 24
    assert rows_of(got, "window_start", "users", "clicks", "impressions") == expected
    assert [e - s for s, e in rows_of(got, "window_start", "window_end")] == [np.timedelta64(1, "h").item()] * 24
    assert (await read(db, "web/hourly.rejected")).num_rows == 0
    info = await db.describe("web")
    roles = {j["role"] for a in info["tradecrafts"][0]["analytics"] for j in a.get("jahs", [])}
    assert {"exchange", "aggregate", "merge"} <= roles, roles


async def test_grouped_hopping_windows_with_several_measures_match_duckdb(congregation, tmp_path):
    rng = np.random.default_rng(11)
    n = 60_000
    ms = np.sort(rng.integers(0, 3_600_000, n)) + T0 * 1000
    x = pa.array(rng.integers(-50, 1000, n), mask=rng.random(n) < 0.05)
    data = pa.table({
        "ts": pa.array(ms, pa.timestamp("ms")),
        "country": pa.array([f"C{int(c)}" for c in rng.integers(0, 7, n)], mask=rng.random(n) < 0.02),
        "level": pa.array(rng.integers(0, 3, n), pa.int32()),
        "x": x, "y": rng.normal(50, 20, n)})
    pq.write_table(data, tmp_path / "m.parquet", row_group_size=8_000)
    doc = {"tradecraft": "m", "analytics": [
        {"name": "m", "kind": "stream", "source": {"path": str(tmp_path / "m.parquet")}, "time": "ts"},
        {"name": "w", "kind": "aggregate", "input": "m", "time": "ts", "window": "10m", "hop": "5m",
         "group": ["country", "level"],
         "measures": {"n": "count()", "total": "sum(x)", "lo": "min(y)", "hi": "max(y)", "avg": "mean(y)",
                      "big": "count_if(y > 70)", "xs": "count_distinct(x)"}}]}
    db = congregation.db()
    await db.submit(doc)
    got = await read(db, "m/w", timeout=60)
    expected = duck("""
        WITH r AS (SELECT *, unnest([0, 1]) AS k FROM d),
             s AS (SELECT *, time_bucket(INTERVAL 5 minute, ts) - k * INTERVAL 5 minute AS w FROM r)
        SELECT w, country, level, count(*), sum(x), min(y), max(y), avg(y),
               count(*) FILTER (WHERE y > 70), count(DISTINCT x)
        FROM s GROUP BY ALL ORDER BY w, country NULLS LAST, level""", d=data)
    names = ["window_start", "country", "level", "n", "total", "lo", "hi", "avg", "big", "xs"]
    got_rows = sorted(rows_of(got, *names), key=lambda r: (r[0], r[1] is None, r[1] or "", r[2]))
    assert len(got_rows) == len(expected)
    for g, e in zip(got_rows, expected):
        assert g[:5] == e[:5] and g[8:] == e[8:], (g, e)
        assert np.allclose(g[5:8], e[5:8]), (g, e)


def straggling(rng: np.random.Generator, rows: int, users: int, actions: np.ndarray | None = None,
               lateness: int = 30) -> tuple[list[pa.Table], list[pa.Table], list[pa.Table]]:
    """12 batches (ts in s, user, action), each a minute on, a tenth of them stragglers up to 150 s
    back; and per batch the rows before the watermark (the latest time before it - lateness), late,
    and the rest, kept."""
    batches, late, kept = [], [], []
    top = None
    for b in range(12):
        ts = T0 + b * 60 + rng.integers(0, 60, rows)
        stragglers = rng.random(rows) < 0.1
        ts = np.where(stragglers, ts - rng.integers(0, 150, rows), ts)
        table = pa.table({"ts": pa.array(ts, pa.timestamp("s")),
                          "user": np.char.mod("u%d", rng.integers(0, users, rows)).astype(object),
                          "action": np.full(rows, "click", dtype=object) if actions is None
                          else rng.choice(actions, rows)})
        is_late = ts < (top - lateness) if top is not None else np.zeros(rows, dtype=bool)
        late.append(table.filter(pa.array(is_late)))
        kept.append(table.filter(pa.array(~is_late)))
        top = max(top or ts.max(), ts.max())
        batches.append(table)
    return batches, late, kept


async def test_late_events_go_to_rejected_counted_and_the_windows_hold_the_rest(congregation):
    doc = {"tradecraft": "late", "analytics": [
        {"name": "ev", "kind": "stream", "schema": {"ts": "timestamp[s]", "user": "string", "action": "string"},
         "time": "ts", "lateness": "30s"},
        {"name": "per_min", "kind": "aggregate", "input": "ev", "time": "ts", "window": "1m",
         "measures": {"n": "count()", "users": "count_distinct(user)"}}]}
    db = congregation.db()
    await db.submit(doc)
    batches, late, kept = straggling(np.random.default_rng(5), 500, 80)
    for i, table in enumerate(batches):
        await db.publish("late/ev", table, end=i == len(batches) - 1)
    rejected = await read(db, "late/per_min.rejected")
    expected_late = pa.concat_tables(late)
    assert expected_late.num_rows > 50
    assert sorted(rows_of(rejected, "ts", "user")) == sorted(rows_of(expected_late, "ts", "user"))
    assert set(rejected.column("reason").to_pylist()) == {"late: event time is before the watermark"}
    got = await read(db, "late/per_min")
    expected = duck("""SELECT time_bucket(INTERVAL 1 minute, ts), count(*), count(DISTINCT "user")
                       FROM k GROUP BY 1 ORDER BY 1""", k=pa.concat_tables(kept))
    assert rows_of(got, "window_start", "n", "users") == expected


async def test_a_query_mid_stream_returns_the_open_windows_partial_values(congregation):
    doc = {"tradecraft": "q", "analytics": [
        {"name": "ev", "kind": "stream", "schema": {"ts": "timestamp[s]", "country": "string", "user": "string"},
         "time": "ts"},
        {"name": "hourly", "kind": "aggregate", "input": "ev", "time": "ts", "window": "1h", "group": ["country"],
         "measures": {"n": "count()", "users": "count_distinct(user)"}}]}
    db = congregation.db()
    await db.submit(doc)
    rng = np.random.default_rng(9)
    n = 20_000
    first = pa.table({"ts": pa.array(np.sort(T0 + rng.integers(0, 5_400, n)), pa.timestamp("s")),
                      "country": np.char.mod("C%d", rng.integers(0, 4, n)).astype(object),
                      "user": np.char.mod("u%d", rng.integers(0, 3_000, n)).astype(object)})
    await db.publish("q/ev", first)
    # the first hour closed when the watermark passed it; the second is open, its rows so far:
    expected = duck("""SELECT time_bucket(INTERVAL 1 hour, ts) AS w, country, count(*), count(DISTINCT "user")
                       FROM f WHERE ts >= TIMESTAMP '2023-11-15 01:00:00' GROUP BY ALL ORDER BY w, country""", f=first)
    got: list[tuple] = []
    with trio.move_on_after(20):
        while got != expected:
            got = rows_of(await db.query("q/hourly"), "window_start", "country", "n", "users")
            await trio.sleep(0.1)
    assert got == expected
    one = await db.query("q/hourly", group={"country": "C2"})
    assert rows_of(one, "window_start", "country", "n", "users") == [r for r in expected if r[1] == "C2"]
    rest = pa.table({"ts": pa.array(np.sort(T0 + rng.integers(5_400, 9_000, n)), pa.timestamp("s")),
                     "country": np.char.mod("C%d", rng.integers(0, 4, n)).astype(object),
                     "user": np.char.mod("u%d", rng.integers(0, 3_000, n)).astype(object)})
    await db.publish("q/ev", rest, end=True)
    final = await read(db, "q/hourly")
    everything = duck("""SELECT time_bucket(INTERVAL 1 hour, ts) AS w, country, count(*), count(DISTINCT "user")
                         FROM f GROUP BY ALL ORDER BY w, country""", f=pa.concat_tables([first, rest]))
    assert rows_of(final, "window_start", "country", "n", "users") == everything
    assert (await db.query("q/hourly")).num_rows == 0        # nothing is open once the stream ended


async def test_a_congested_aggregate_splits_at_a_window_boundary_and_every_window_stays_exact(
        daemon_factory, tmp_path):
    rng = np.random.default_rng(17)
    n = 1_200_000
    ts = np.sort(T0 + rng.integers(0, 3_600, n))                     # an hour of one-minute windows
    data = pa.table({"ts": pa.array(ts, pa.timestamp("s")),
                     "user": np.char.mod("u%d", np.floor(40_000 * rng.random(n) ** 2).astype(np.int64)).astype(object)})
    pq.write_table(data, tmp_path / "hits.parquet", row_group_size=40_000)
    doc = {"tradecraft": "sa", "congestion": {"busy": 0.001, "for": "1ms"}, "analytics": [
        {"name": "hits", "kind": "stream", "source": {"path": str(tmp_path / "hits.parquet"), "rate": 250_000},
         "time": "ts"},
        {"name": "per_min", "kind": "aggregate", "input": "hits", "time": "ts", "window": "1m",
         "measures": {"n": "count()", "users": "count_distinct(user)"}}]}
    db = daemon_factory(workers=2).db()
    await db.submit(doc)
    got = await read(db, "sa/per_min", timeout=90)
    expected = duck("""SELECT time_bucket(INTERVAL 1 minute, ts), count(*), count(DISTINCT "user")
                       FROM h GROUP BY 1 ORDER BY 1""", h=data)
    assert rows_of(got, "window_start", "n", "users") == expected
    info = (await db.describe("sa"))["tradecrafts"][0]
    splits = [s for s in info["scaling"] if s["kind"] == "split"]
    assert splits and all(s["boundary_us"] % 60_000_000 == 0 for s in splits), info["events"]
    assert (await read(db, "sa/per_min.rejected")).num_rows == 0


async def test_a_bad_session_gap_or_a_session_top_is_refused_at_submit_naming_the_field(congregation):
    """Session windows run (tests/integration/test_session_windows.py); a bad one is refused whole."""
    db = congregation.db()
    visits = {"name": "visits", "kind": "aggregate", "input": "ev", "time": "ts", "session": "soon",
              "group": ["user"], "measures": {"n": "count()"}}
    for change, path, says in [({}, "analytics[1].session", '"soon"'),
                               ({"session": "30s", "measures": None, "top": {"n": 1, "by": "ts"}}, "analytics[1].top",
                                'session windows take "measures", not "top"')]:
        analytic = {k: v for k, v in {**visits, **change}.items() if v is not None}
        doc = {"tradecraft": "ses", "analytics": [
            {"name": "ev", "kind": "stream", "schema": {"ts": "timestamp[s]", "user": "string"}, "time": "ts"},
            analytic]}
        with pytest.raises(TradecraftError) as refused:
            await db.submit(doc)
        assert refused.value.path == path and says in str(refused.value)
    assert await db.list() == []


async def test_top_rows_per_window_and_group_through_a_congregation_with_a_query_of_the_open_window(congregation):
    doc = {"tradecraft": "auctions", "analytics": [
        {"name": "bids", "kind": "stream", "time": "ts",
         "schema": {"ts": "timestamp[ms]", "auction": "int64", "price": "float64", "bidder": "string"}},
        {"name": "best", "kind": "aggregate", "input": "bids", "time": "ts", "window": "1m", "group": ["auction"],
         "top": {"n": 2, "by": "price"}}]}
    rng = np.random.default_rng(16)

    def bids(start_s: int, end_s: int, n: int) -> pa.Table:
        return pa.table({"ts": pa.array(np.sort(rng.integers(start_s * 1000, end_s * 1000, n)) + T0 * 1000,
                                        pa.timestamp("ms")),
                         "auction": rng.integers(0, 6, n), "price": np.round(rng.random(n) * 50) * 2,
                         "bidder": np.char.mod("b%d", rng.integers(0, 40, n)).astype(object)})

    def top2(table: pa.Table, where: str = "") -> list[tuple]:
        return duck(f"""SELECT time_bucket(INTERVAL 1 minute, ts) AS w, auction, ts, price, bidder,
                               row_number() OVER (PARTITION BY w, auction ORDER BY price DESC, ts, bidder) AS r
                        FROM b {where} QUALIFY r <= 2 ORDER BY w, auction, r""", b=table)

    db = congregation.db()
    first, rest = bids(0, 90, 6_000), bids(90, 240, 9_000)
    with trio.fail_after(40):
        await db.submit(doc)
        await db.publish("auctions/bids", first)
        # the first minute closed when the watermark passed it; the second is open, its best rows so far
        expected = top2(first, "WHERE ts >= TIMESTAMP '2023-11-15 00:01:00'")
        got: list[tuple] = []
        with trio.move_on_after(20):
            while got != expected:
                got = rows_of(await db.query("auctions/best"), "window_start", "auction", "ts", "price", "bidder",
                              "rank")
                await trio.sleep(0.1)
        assert got == expected and len(expected) == 12
        await db.publish("auctions/bids", rest, end=True)
        final = await read(db, "auctions/best")
    assert final.column_names == ["window_start", "window_end", "auction", "ts", "price", "bidder", "rank"]
    assert rows_of(final, "window_start", "auction", "ts", "price", "bidder", "rank") == \
        top2(pa.concat_tables([first, rest]))
