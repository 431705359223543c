"""Query shapes of issue 16 §2 end to end through `hallelujah run`, checked against DuckDB.

`x in (...)` / `x not in (...)` with SQL's nulls, over a stream that declares only some of its
file's columns: each answer must be DuckDB's on the same file, row for row in file order.
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
