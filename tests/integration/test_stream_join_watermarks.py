"""Windows after a stream join close while the streams still flow: the join passes watermarks on.

Requests and responses are published a chunk at a time and never ended until the last; after
each chunk the per-second counts over the joined trips are read as they stand. Against DuckDB:
what is there is always the first windows of the final answer, never a window the join could
still add to, and every window the previous chunk closed; the aggregate rejects no joined row as
late (a watermark ahead of a row would); at the end the whole answer, row for row, in order.
An output after a stream join shows its rows per checkpoint (exactly-once), so the congregation
here checkpoints every half second.
"""
from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import trio

from tests.conftest import Daemon, sandbox
from tests.integration.helpers import assert_rows_equal, read
from tests.integration.test_stream_join import (
    T0,
    WINDOW_US,
    document,
    requests_and_responses,
)

CHUNKS = 6


@pytest.fixture
def congregation(tmp_path):
    daemon = Daemon(tmp_path / "data", extra=[*sandbox(tmp_path), "--checkpoint-every", "0.5"]).start()
    yield daemon
    daemon.stop()

SECOND = 1_000_000
COLUMNS = ["window_start", "src", "trips", "top_code"]


def per_second(how: str) -> dict:
    doc = document(None, None, how)
    doc["analytics"].append({"name": "per_second", "kind": "aggregate", "input": "trips", "time": "ts",
                             "window": "1s", "group": ["src"], "measures": {"trips": "count()", "top_code": "max(code)"}})
    return doc


def expected_windows(req: pa.Table, resp: pa.Table, how: str) -> pa.Table:
    con = duckdb.connect()
    con.register("q", req)
    con.register("r", resp)
    return con.sql(f"""
        WITH trips AS (SELECT q.ts, q.src, r.code FROM q {how.upper()} JOIN r
               ON q.src = r.src AND q.dst = r.dst AND q.msg_id = r.msg_id
              AND abs(epoch_us(r.ts) - epoch_us(q.ts)) <= {WINDOW_US})
        SELECT (epoch_us(ts) // {SECOND}) * {SECOND} AS window_start, src, count(*) AS trips, max(code) AS top_code
          FROM trips GROUP BY ALL ORDER BY window_start, src""").to_arrow_table()


def as_compared(got: pa.Table) -> pa.Table:
    return got.select(COLUMNS).set_column(0, "window_start", got.column("window_start").cast(pa.int64()))


def top(t: pa.Table) -> int:
    return pc.max(t.column("ts")).cast(pa.int64()).as_py()


def closed_by(expected: pa.Table, promise: int) -> int:
    """How many of the expected rows are of windows that end at or before `promise`."""
    return sum(1 for s in expected.column("window_start").to_pylist() if s + SECOND <= promise)


async def rows_held(db, ref: str, at_least: int, when: str) -> pa.Table:
    """The rows `ref` holds now, once it holds `at_least`; fails saying how many after 20 s."""
    seen = [0]
    with trio.move_on_after(20):
        while (now := await db.read(ref, follow=False)).num_rows < at_least:
            seen[0] = now.num_rows
            await trio.sleep(0.05)
        return now
    raise AssertionError(f"{when}: {ref} holds {seen[0]} rows after 20 s, expected {at_least} at least")


@pytest.mark.parametrize("how", ["inner", "left"])
async def test_windows_after_a_stream_join_close_before_the_input_ends(congregation, how):
    chunks = [requests_and_responses(6_000, seed=70 + i, start=T0 + i * 3 * SECOND) for i in range(CHUNKS)]
    req = pa.concat_tables([q for q, _ in chunks])
    resp = pa.concat_tables([r for _, r in chunks])
    expected = expected_windows(req, resp, how)
    db = congregation.db()
    await db.submit(per_second(how))
    # What the join can promise once it has taken chunks 0..i (the streams' lateness is 0).
    tops = [(top(q), top(r)) for q, r in chunks]
    promises = [min(max(a for a, _ in tops[:i + 1]), max(b for _, b in tops[:i + 1])) - WINDOW_US
                for i in range(CHUNKS)]
    with trio.fail_after(90):
        for i, (q, r) in enumerate(chunks):
            last = i == CHUNKS - 1
            await db.publish("rr/requests", q.to_batches(max_chunksize=1_500), end=last)
            await db.publish("rr/responses", r.to_batches(max_chunksize=1_500), end=last)
            if last:
                break
            must = closed_by(expected, promises[i - 1]) if i else 0
            may = closed_by(expected, promises[i])
            now = await rows_held(db, "rr/per_second", must, f"after chunk {i}, the streams still open")
            assert now.num_rows <= may, f"after chunk {i}: {now.num_rows} rows, the join can close only {may}"
            assert_rows_equal(as_compared(now), expected.slice(0, now.num_rows), f"after chunk {i}")
        assert now.num_rows > 0          # windows went out while the streams were still open
    got = await read(db, "rr/per_second", timeout=30)
    assert_rows_equal(as_compared(got), expected, "at the end")
    assert (await read(db, "rr/per_second.rejected")).num_rows == 0
    assert (await read(db, "rr/trips.rejected")).num_rows == 0
