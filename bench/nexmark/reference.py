"""The Nexmark queries in DuckDB: the standard SQL (Flink's Nexmark suite), translated, as the reference.

    python -m bench.nexmark.reference --data /tmp/nexmark-data --query q5 [--out q5.arrow] [--threads 2]

Each query reads the generator's Parquet files and its whole answer is fetched as Arrow (and, with
`--out`, written as an Arrow IPC file, as `hallelujah run` writes its output), so the time is that
of the same work. Translations: Flink's `TUMBLE`/`HOP` table functions become window starts computed
from the event time in ms (windows aligned to the epoch, as Flink's and Hallelujah's are); q1
multiplies in float64 (`price * 0.908` as DOUBLE), as the document does until a decimal type
exists (Flink's result is DECIMAL(23, 3)); q2 is Flink's modulus form, not the original auction
list. Column names are those of the documents' outputs.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import duckdb
import pyarrow as pa

FILES = ("person", "auction", "bid")


def _window(size_ms: int, column: str = "dateTime", back: str = "0") -> str:
    """The start (a TIMESTAMP) of the `size_ms` window holding `column`, `back` windows earlier."""
    return f"epoch_ms((epoch_ms({column}) // {size_ms} - {back}) * {size_ms})"


SQL = {
    "q0": "SELECT auction, bidder, price, dateTime, extra FROM {bid}",
    "q1": "SELECT auction, bidder, price::DOUBLE * 0.908::DOUBLE AS price, dateTime, extra FROM {bid}",
    "q2": "SELECT auction, price FROM {bid} WHERE auction % 123 = 0",
    "q3": """
        SELECT P.name, P.city, P.state, A.id
        FROM {auction} AS A INNER JOIN {person} AS P ON A.seller = P.id
        WHERE A.category = 10 AND (P.state = 'OR' OR P.state = 'ID' OR P.state = 'CA')""",
    "q4": """
        SELECT Q.category, AVG(Q.final) AS final
        FROM (SELECT MAX(B.price) AS final, A.category
              FROM {auction} A, {bid} B
              WHERE A.id = B.auction AND B.dateTime BETWEEN A.dateTime AND A.expires
              GROUP BY A.id, A.category) Q
        GROUP BY Q.category""",
    "q5": f"""
        WITH hop AS (SELECT auction, {_window(2000, back="k")} AS starttime
                     FROM {{bid}}, range(0, 5) AS r(k)),
             AuctionBids AS (SELECT auction, count(*) AS num, starttime FROM hop GROUP BY auction, starttime),
             MaxBids AS (SELECT max(num) AS maxn, starttime FROM AuctionBids GROUP BY starttime)
        SELECT AuctionBids.auction, AuctionBids.num
        FROM AuctionBids JOIN MaxBids
          ON AuctionBids.starttime = MaxBids.starttime AND AuctionBids.num >= MaxBids.maxn""",
    "q7": f"""
        SELECT B.auction, B.bidder, B.price, B.dateTime, B.extra
        FROM {{bid}} B
        JOIN (SELECT MAX(price) AS maxprice, {_window(10000, back="-1")} AS dateTime
              FROM {{bid}} GROUP BY 2) B1
          ON B.price = B1.maxprice
        WHERE B.dateTime BETWEEN B1.dateTime - INTERVAL 10 SECOND AND B1.dateTime""",
    "q8": f"""
        SELECT P.id, P.name, P.starttime
        FROM (SELECT id, name, {_window(10000)} AS starttime FROM {{person}} GROUP BY id, name, starttime) P
        JOIN (SELECT seller, {_window(10000)} AS starttime FROM {{auction}} GROUP BY seller, starttime) A
          ON P.id = A.seller AND P.starttime = A.starttime""",
}


SQL["q5_join"], SQL["q7_join"] = SQL["q5"], SQL["q7"]   # the same queries, said otherwise (queries.py)


def sql(query: str, data: Path) -> str:
    """The query's SQL over the files in `data`."""
    return SQL[query].format(**{kind: f"read_parquet('{data / (kind + '.parquet')}')" for kind in FILES})


def answer(query: str, data: Path, threads: int = 2) -> pa.Table:
    """DuckDB's whole answer to `query` as an Arrow table."""
    con = duckdb.connect(config={"threads": threads})
    try:
        con.execute("SET enable_progress_bar = false")
        return con.sql(sql(query, data)).to_arrow_table()
    finally:
        con.close()


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.nexmark.reference", description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="/tmp/nexmark-data")
    ap.add_argument("--query", choices=list(SQL), required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", help="write the answer here as an Arrow IPC file")
    a = ap.parse_args()
    start = time.perf_counter()
    table = answer(a.query, Path(a.data), a.threads)
    if a.out:
        with pa.ipc.new_file(a.out, table.schema) as f:
            f.write_table(table)
    seconds = time.perf_counter() - start
    print("RESULT " + json.dumps({"query": a.query, "rows": table.num_rows, "seconds_in_process": round(seconds, 4)}))


if __name__ == "__main__":
    main()
