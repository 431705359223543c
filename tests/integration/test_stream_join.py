"""The join of two streams within a time window, through a real daemon, against DuckDB: inner and
left results exact on data with missing, duplicate and out-of-window partners; the rows it holds
stay bounded by the window while a long stream passes."""
from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import trio

from tests.integration.helpers import read

T0 = 1_700_000_000_000_000
WINDOW_US = 1_000_000


def requests_and_responses(n: int, seed: int, start: int = T0) -> tuple[pa.Table, pa.Table]:
    """Requests ~10k/s; 90 % answered 0..1.5 s later (some outside the 1 s window), a few answers
    to nothing, and some message ids used twice."""
    rng = np.random.default_rng(seed)
    ts = start + np.cumsum(rng.integers(1, 200, n))
    src = rng.integers(0, 50, n).astype(np.int32)
    dst = rng.integers(0, 50, n).astype(np.int32)
    msg = rng.integers(0, n // 2 + 1, n) * 7 + seed      # duplicates on purpose
    answered = rng.random(n) < 0.9
    r_ts = ts + rng.integers(0, 1_500_000, n)
    r_msg = np.where(rng.random(n) < 0.02, msg + 1, msg)  # answers to nothing
    order = np.argsort(r_ts[answered], kind="stable")
    req = pa.table({"ts": pa.array(ts, pa.timestamp("us")), "src": src, "dst": dst, "msg_id": msg})
    resp = pa.table({"ts": pa.array(r_ts[answered][order], pa.timestamp("us")), "src": src[answered][order],
                     "dst": dst[answered][order], "msg_id": r_msg[answered][order],
                     "code": rng.integers(200, 600, int(answered.sum())).astype(np.int32)})
    return req, resp


def reference(req: pa.Table, resp: pa.Table, how: str) -> list[tuple]:
    con = duckdb.connect()
    con.register("q", req)
    con.register("r", resp)
    return sorted(tuple(x) for x in con.execute(f"""
        SELECT q.ts, q.src, q.dst, q.msg_id, r.ts, r.code FROM q {how.upper()} JOIN r
          ON q.src = r.src AND q.dst = r.dst AND q.msg_id = r.msg_id
         AND abs(epoch_us(r.ts) - epoch_us(q.ts)) <= {WINDOW_US}""").fetchall())


def document(req: str | None, resp: str | None, how: str) -> dict:
    def stream(name: str, path: str | None, schema: dict) -> dict:
        s = {"name": name, "kind": "stream", "time": "ts", "schema": schema}
        return s | ({"source": {"path": path}} if path else {})
    base = {"ts": "timestamp[us]", "src": "int32", "dst": "int32", "msg_id": "int64"}
    return {"tradecraft": "rr", "analytics": [
        stream("requests", req, base), stream("responses", resp, base | {"code": "int32"}),
        {"name": "trips", "kind": "join", "stream": "requests", "with": "responses",
         "on": {"src": "src", "dst": "dst", "msg_id": "msg_id"}, "time": {"stream": "ts", "with": "ts"},
         "window": "1s", "how": how}]}


def got_rows(t: pa.Table) -> list[tuple]:
    names = ["ts", "src", "dst", "msg_id", "responses.ts", "code"]
    return sorted(zip(*(t.column(n).to_pylist() for n in names)), key=lambda r: tuple((x is None, x) for x in r))


@pytest.mark.parametrize("how", ["inner", "left"])
async def test_round_trips_match_duckdb(daemon_factory, tmp_path, how):
    req, resp = requests_and_responses(120_000, seed=4)
    pq.write_table(req, tmp_path / "req.parquet", row_group_size=16_384)
    pq.write_table(resp, tmp_path / "resp.parquet", row_group_size=16_384)
    db = daemon_factory(workers=2).db()
    await db.submit(document(str(tmp_path / "req.parquet"), str(tmp_path / "resp.parquet"), how))
    got = await read(db, "rr/trips", timeout=60)
    expected = reference(req, resp, how)
    assert len(expected) > 50_000
    exp = sorted(expected, key=lambda r: tuple((x is None, x) for x in r))
    assert got_rows(got) == exp
    assert (await read(db, "rr/trips.rejected")).num_rows == 0


async def held_once_taken(db, rows: int) -> int:
    """The rows the STREAM_JOINs hold, read once their statistics show `rows` taken in."""
    with trio.fail_after(30):
        while True:
            joins = [j for a in (await db.describe("rr"))["tradecrafts"][0]["analytics"]
                     for j in a["jahs"] if j["role"] == "stream_join"]
            if sum(j.get("rows_in", 0) for j in joins) >= rows:
                return sum(j.get("state_rows", 0) for j in joins)
            await trio.sleep(0.05)


async def test_rows_held_stay_bounded_by_the_window_while_a_long_stream_passes(congregation):
    db = congregation.db()
    await db.submit(document(None, None, "inner"))
    held, reqs, resps = [], [], []
    for i in range(12):          # 12 × 20k requests, ~2 s of event time each, 4 s apart; the window is 1 s
        req, resp = requests_and_responses(20_000, seed=10 + i, start=T0 + i * 4_000_000)
        reqs.append(req)
        resps.append(resp)
        await db.publish("rr/requests", req, end=i == 11)
        await db.publish("rr/responses", resp, end=i == 11)
        if i < 11:     # once the JOINs have taken what was published: what they hold
            held.append(await held_once_taken(db, sum(t.num_rows for t in reqs + resps)))
    got = await read(db, "rr/trips", timeout=60)
    assert got_rows(got) == sorted(reference(pa.concat_tables(reqs), pa.concat_tables(resps), "inner"))
    assert (await read(db, "rr/trips.rejected")).num_rows == 0
    # at most about two publishes' worth (one pending on each side) plus the window: never the stream
    assert 0 < max(held) < 3 * 20_000 * 2, held


async def test_late_partners_go_to_rejected_and_the_rest_join_exactly(congregation):
    db = congregation.db()
    await db.submit(document(None, None, "left"))
    reqs, resps, stragglers = [], [], []
    for i in range(6):
        req, resp = requests_and_responses(5_000, seed=40 + i, start=T0 + i * 4_000_000)
        reqs.append(req)
        resps.append(resp)
        await db.publish("rr/requests", req, end=i == 5)
        await db.publish("rr/responses", resp)
        if i >= 2:     # answers to requests two publishes back: far behind the watermark
            old = resps[i - 2].slice(0, 300)
            stragglers.append(old)
            await db.publish("rr/responses", old)
    final = requests_and_responses(1, seed=99, start=T0 + 30_000_000)[1]     # ends the responses
    await db.publish("rr/responses", final, end=True)
    got = await read(db, "rr/trips", timeout=60)
    rejected = await read(db, "rr/trips.rejected")
    late = pa.concat_tables(stragglers)
    assert sorted(rejected.column("msg_id").to_pylist()) == sorted(late.column("msg_id").to_pylist())
    assert set(rejected.column("reason").to_pylist()) == {"late: event time is before the watermark"}
    expected = reference(pa.concat_tables(reqs), pa.concat_tables([*resps, final]), "left")
    assert got_rows(got) == sorted(expected, key=lambda r: tuple((x is None, x) for x in r))
