"""Query shapes of issue 16 §2 end to end through `hallelujah run`, checked against DuckDB.

`x in (...)` / `x not in (...)` with SQL's nulls, over a stream that declares only some of its
file's columns: each answer must be DuckDB's on the same file, row for row in file order. An
aggregate's `top` rows per window (top-N, arg-max with ties, Nexmark q5 and q7): DuckDB's
`ROW_NUMBER()` / `RANK()` over the same windows, row for row in the documented order.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from tests.integration.helpers import assert_rows_equal

HALLELUJAH = Path(sys.executable).with_name("hallelujah")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
ROWS = 120_000


def wide_bids(n: int) -> pa.Table:
    """Bids with nulls in both filtered fields and columns the stream does not declare."""
    rng = np.random.default_rng(16)
    auction = rng.choice(np.array([1007, 1020, 2001, 5, 6, 7, 8, 9]), n)
    country = rng.choice(np.array(["NL", "BE", "DE", "FR", "US"]), n)
    return pa.table({
        "bidder": pa.array(rng.integers(0, 10_000, n)),
        "auction": pa.array(auction, mask=rng.random(n) < 0.05),
        "extra": pa.array([f"x{i % 1000}" for i in range(n)]),
        "country": pa.array(country, mask=rng.random(n) < 0.05),
        "price": rng.random(n) * 100,
    })


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_in_and_not_in_over_declared_columns_match_duckdb(tmp_path: Path, fmt: str) -> None:
    table = wide_bids(ROWS)
    path = tmp_path / f"bids.{fmt}"
    if fmt == "parquet":
        pq.write_table(table, path, row_group_size=ROWS // 4)  # row groups: read in parts, merged in order
    else:
        pa_csv.write_csv(table, path)
    doc = tmp_path / "doc.json"
    doc.write_text(json.dumps({"tradecraft": "tc", "analytics": [
        {"name": "bids", "kind": "stream", "source": {"path": path.name},
         "schema": {"auction": "int64", "country": "string", "price": "float64"}},
        {"name": "picked", "kind": "transform", "input": "bids",
         "where": "auction in (1007, 1020, 2001) and country not in ('NL', 'BE')"},
        {"name": "flagged", "kind": "transform", "input": "bids",
         "derive": {"hit": "auction in (1007, 2001, null)", "away": "country not in ['NL']"}},
    ]}))
    out = tmp_path / "out"
    done = subprocess.run([str(HALLELUJAH), "run", str(doc), "--workers", "2", "--output-dir", str(out),
                           "--format", "parquet"], cwd=tmp_path, capture_output=True, text=True, timeout=180,
                          env=ENV, check=False)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr

    reader = f"read_parquet('{path}', file_row_number = true)" if fmt == "parquet" else \
        f"(SELECT *, row_number() OVER () AS file_row_number FROM read_csv('{path}', header = true))"
    con = duckdb.connect()
    picked = con.sql(f"SELECT auction, country, price FROM {reader} WHERE auction IN (1007, 1020, 2001) "
                         "AND country NOT IN ('NL', 'BE') ORDER BY file_row_number").to_arrow_table()
    flagged = con.sql(f"SELECT auction, country, price, auction IN (1007, 2001, NULL) AS hit, "
                          f"country NOT IN ('NL') AS away FROM {reader} ORDER BY file_row_number"
                          ).to_arrow_table()
    assert 0 < picked.num_rows < ROWS // 4
    assert flagged["hit"].null_count > 0 and flagged["away"].null_count > 0  # the null cases are exercised
    for name, expected in (("picked", picked), ("flagged", flagged)):
        got = pq.read_table(out / f"{name}.parquet")
        assert got.column_names == expected.column_names, (name, got.column_names)
        assert_rows_equal(got, expected.cast(got.schema), name)


# ---- top-N and arg-max (Nexmark q5, q7) --------------------------------------------------------

def bids(n: int) -> pa.Table:
    """Bids over two minutes, in time order: few distinct prices (ties), some null prices."""
    rng = np.random.default_rng(7)
    return pa.table({
        "ts": pa.array(np.sort(rng.integers(0, 120_000, n)) + 1_700_000_000_000, pa.timestamp("ms")),
        "auction": pa.array(rng.integers(1000, 1040, n)),
        "bidder": pa.array(rng.integers(0, 500, n)),
        "price": pa.array(rng.integers(1, 60, n) * 10, mask=rng.random(n) < 0.02),
        "channel": pa.array(rng.choice(np.array(["web", "app", "api"]), n)),
    })


# Per 10 s window: q7's highest bids (every bid at the window's maximum: rank 1 with ties), the
# three highest bids per auction (ties ordered by time, then bidder, then channel), and q5's
# hottest auctions (most bids over 10 s windows sliding by 2 s), ranked over the counts' rows:
# each count window ends on a 2 s boundary, so ranking by `window_end` in 2 s windows ranks each
# count window's rows together, and their own bounds come out as counts.window_start/_end.
TOP_DOCUMENT = {"tradecraft": "nexmark", "analytics": [
    {"name": "bids", "kind": "stream", "time": "ts", "source": {"path": "bids.parquet"}},
    {"name": "highest", "kind": "aggregate", "input": "bids", "time": "ts", "window": "10s",
     "top": {"n": 1, "by": "price", "with_ties": True}},
    {"name": "top3", "kind": "aggregate", "input": "bids", "time": "ts", "window": "10s", "group": ["auction"],
     "top": {"n": 3, "by": "price"}},
    {"name": "counts", "kind": "aggregate", "input": "bids", "time": "ts", "window": "10s", "hop": "2s",
     "group": ["auction"], "measures": {"num": "count()"}, "output": True},
    {"name": "hot", "kind": "aggregate", "input": "counts", "time": "window_end", "window": "2s",
     "top": {"n": 1, "by": "num", "order": "desc", "with_ties": True}},
]}
W10 = "time_bucket(INTERVAL 10 second, ts)"
TOP_SQL = {
    "highest": f"""SELECT {W10} AS window_start, {W10} + INTERVAL 10 second AS window_end, ts, auction, bidder,
                   price, channel, rank() OVER (PARTITION BY {W10} ORDER BY price DESC) AS rank
                   FROM bids WHERE price IS NOT NULL QUALIFY rank <= 1
                   ORDER BY window_start, rank, price DESC, ts, auction, bidder, channel""",
    "top3": f"""SELECT {W10} AS window_start, {W10} + INTERVAL 10 second AS window_end, auction, ts, bidder, price,
                channel, row_number() OVER (PARTITION BY {W10}, auction
                                            ORDER BY price DESC, ts, bidder, channel) AS rank
                FROM bids WHERE price IS NOT NULL QUALIFY rank <= 3
                ORDER BY window_start, auction, rank""",
    "hot": """WITH windows AS (SELECT DISTINCT time_bucket(INTERVAL 2 second, ts) - INTERVAL (2 * k) second AS ws
                               FROM bids, range(5) AS r(k)),
                   counts AS (SELECT ws, ws + INTERVAL 10 second AS we, auction, count(*) AS num FROM windows
                              JOIN bids ON bids.ts >= ws AND bids.ts < ws + INTERVAL 10 second GROUP BY ws, auction)
              SELECT we AS window_start, we + INTERVAL 2 second AS window_end, ws AS "counts.window_start",
                     we AS "counts.window_end", auction, num, rank() OVER (PARTITION BY we ORDER BY num DESC) AS rank
              FROM counts QUALIFY rank <= 1 ORDER BY window_start, rank, "counts.window_start", auction""",
}


def test_top_n_and_arg_max_per_window_match_duckdb_row_for_row(tmp_path: Path) -> None:
    table = bids(60_000)
    pq.write_table(table, tmp_path / "bids.parquet", row_group_size=15_000)
    doc = tmp_path / "top.json"
    doc.write_text(json.dumps(TOP_DOCUMENT))
    out = tmp_path / "out"
    done = subprocess.run([str(HALLELUJAH), "run", str(doc), "--workers", "2", "--output-dir", str(out),
                           "--format", "parquet"], cwd=tmp_path, capture_output=True, text=True, timeout=180,
                          env=ENV, check=False)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    con = duckdb.connect()
    con.register("bids", table)
    con.execute("SET TimeZone = 'UTC'")
    for name, sql in TOP_SQL.items():
        got = pq.read_table(out / f"{name}.parquet")
        expected = con.sql(sql).to_arrow_table()
        assert got.column_names == expected.column_names, (name, got.column_names, expected.column_names)
        assert_rows_equal(got, expected.cast(got.schema), name)
    highest = pq.read_table(out / "highest.parquet")
    assert highest.num_rows > pa.compute.count_distinct(highest["window_start"]).as_py()   # ties were kept
