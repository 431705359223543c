"""Crashes lose nothing and repeat nothing: a killed worker, a SIGKILLed congregation."""
from __future__ import annotations

import os
import signal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import trio

PUSHED = {"tradecraft": "pay", "analytics": [
    {"name": "payments", "kind": "stream",
     "schema": {"id": "int64", "amount": "float64", "user": "string"}},
    {"name": "large", "kind": "transform", "input": "payments",
     "derive": {"cents": "cast(amount * 100, 'int64')"}, "where": "amount > 10"}]}


def payments(start: int, n: int) -> pa.Table:
    rng = np.random.default_rng(start)
    return pa.table({"id": np.arange(start, start + n, dtype=np.int64),
                     "amount": rng.uniform(0, 100, n).round(2),
                     "user": pa.array([f"u{i % 97}" for i in range(start, start + n)])})


def reference(table: pa.Table) -> pa.Table:
    kept = table.filter(pc.greater(table["amount"], 10))
    return kept.append_column("cents", pc.cast(pc.multiply(kept["amount"], 100), pa.int64(), safe=False))


def filed(tmp_path, name: str, rows: int, rate: int) -> tuple[pa.Table, dict]:
    """A parquet file of payments and a document that replays it at `rate` rows/s."""
    table = payments(0, rows)
    pq.write_table(table, tmp_path / "payments.parquet", row_group_size=10_000)
    return table, {"tradecraft": name, "analytics": [
        {"name": "payments", "kind": "stream",
         "source": {"path": str(tmp_path / "payments.parquet"), "rate": rate}},
        PUSHED["analytics"][1]]}


def assert_exact(got: pa.Table, expected: pa.Table) -> None:
    assert got["id"].to_pylist() == expected["id"].to_pylist()
    assert got["cents"].to_pylist() == expected["cents"].to_pylist()


async def wait_for_rows(db, ref: str, rows: int, timeout: float = 30) -> None:
    with trio.fail_after(timeout):
        while True:
            info = await db.describe(ref.split("/")[0])
            retained = {k: v for a in info["tradecrafts"][0]["analytics"] for k, v in a["retained"].items()}
            if retained.get(ref.split("/")[1], {}).get("rows", 0) >= rows:
                return
            await trio.sleep(0.05)


async def test_sigkilled_congregation_restarts_without_losing_or_repeating_acknowledged_rows(
        daemon_factory, tmp_path):
    daemon = daemon_factory()
    db = daemon.db()
    await db.submit(PUSHED)
    published = []
    for i in range(6):
        part = payments(i * 20_000, 20_000)
        assert await db.publish("pay/payments", part) == part.num_rows
        published.append(part)
    daemon.kill()                                   # mid-flight: output may lag the input log
    daemon = daemon_factory(data_dir=daemon.data_dir)
    db = daemon.db()
    for i in range(6, 9):
        part = payments(i * 20_000, 20_000)
        await db.publish("pay/payments", part, end=(i == 8))
        published.append(part)
    assert_exact(await db.read("pay/large"), reference(pa.concat_tables(published)))


async def test_sigkill_during_a_file_stream_resumes_where_the_output_stopped(daemon_factory, tmp_path):
    table, doc = filed(tmp_path, "filed", 400_000, rate=200_000)
    daemon = daemon_factory()
    db = daemon.db()
    await db.submit(doc)
    await wait_for_rows(db, "filed/large", 50_000)
    daemon.kill()
    daemon = daemon_factory(data_dir=daemon.data_dir)
    assert_exact(await daemon.db().read("filed/large"), reference(table))


async def test_a_killed_worker_is_replaced_and_the_output_is_still_exact(congregation, tmp_path):
    table, doc = filed(tmp_path, "w", 300_000, rate=150_000)
    db = congregation.db()
    await db.submit(doc)
    await wait_for_rows(db, "w/large", 30_000)
    info = await db.describe("w")
    workers = {w["worker"]: w["pid"] for w in info["workers"]}
    transform = next(j for a in info["tradecrafts"][0]["analytics"] for j in a["jahs"]
                     if j["role"] == "transform")
    victim = workers[transform["worker"]]
    os.kill(victim, signal.SIGKILL)
    assert_exact(await db.read("w/large"), reference(table))
    info = await db.describe("w")
    assert victim not in {w["pid"] for w in info["workers"]}
    assert any(e["kind"] == "restart" for e in info["tradecrafts"][0]["events"])


async def test_parallel_parts_with_rejections_in_one_part_only_still_finish_exactly(congregation, tmp_path):
    # Every row of the even row groups fails its cast, none of the odd ones: one part of the
    # split source rejects everything and the other nothing, and the ordered merges of `out`
    # and `rejected` must not wait on each other.
    n, group = 80_000, 4_000
    bad_ids = [i for i in range(n) if (i // group) % 2 == 0]
    good_ids = [i for i in range(n) if (i // group) % 2 == 1]
    text = pa.array(["x" if (i // group) % 2 == 0 else str(i) for i in range(n)])
    table = pa.table({"id": np.arange(n, dtype=np.int64), "text": text})
    pq.write_table(table, tmp_path / "skewed.parquet", row_group_size=group)
    db = congregation.db()
    await db.submit({"tradecraft": "skew", "analytics": [
        {"name": "rows", "kind": "stream", "source": {"path": str(tmp_path / "skewed.parquet")}},
        {"name": "parsed", "kind": "transform", "input": "rows", "derive": {"v": "cast(text, 'int64')"}}]})
    with trio.fail_after(60):
        good = await db.read("skew/parsed")
        bad = await db.read("skew/parsed.rejected")
    assert good["id"].to_pylist() == good_ids
    assert good["v"].to_pylist() == good_ids
    assert bad["id"].to_pylist() == bad_ids


async def test_sigkilled_congregation_emits_each_window_of_an_aggregate_once_and_complete(daemon_factory):
    """The open windows are rebuilt by a replay from the oldest position they hold: no window is
    lost, repeated, or missing the rows it had before the crash."""
    import duckdb
    doc = {"tradecraft": "win", "analytics": [
        {"name": "ev", "kind": "stream", "schema": {"ts": "timestamp[s]", "user": "string"}, "time": "ts"},
        {"name": "per30m", "kind": "aggregate", "input": "ev", "time": "ts", "window": "30m",
         "measures": {"n": "count()", "users": "count_distinct(user)"}}]}
    rng = np.random.default_rng(12)

    def part(i: int) -> pa.Table:            # ten minutes of events per publish
        ts = np.sort(1_700_006_400 + i * 600 + rng.integers(0, 600, 4_000))
        return pa.table({"ts": pa.array(ts, pa.timestamp("s")),
                         "user": np.char.mod("u%d", rng.integers(0, 900, 4_000)).astype(object)})

    daemon = daemon_factory()
    db = daemon.db()
    await db.submit(doc)
    published = [part(i) for i in range(10)]
    for p in published:
        await db.publish("win/ev", p)
    await wait_for_rows(db, "win/per30m", 2)       # some windows out, the next one open
    daemon.kill()
    daemon = daemon_factory(data_dir=daemon.data_dir)
    db = daemon.db()
    rest = [part(i) for i in range(10, 14)]
    for i, p in enumerate(rest):
        await db.publish("win/ev", p, end=i == len(rest) - 1)
    got = await db.read("win/per30m")
    con = duckdb.connect()
    con.register("e", pa.concat_tables(published + rest))
    expected = con.execute("""SELECT time_bucket(INTERVAL 30 minute, ts), count(*), count(DISTINCT "user")
                              FROM e GROUP BY 1 ORDER BY 1""").fetchall()
    assert list(zip(got["window_start"].to_pylist(), got["n"].to_pylist(), got["users"].to_pylist())) == \
        [tuple(r) for r in expected]


async def test_a_restarted_congregation_numbers_dataset_versions_on(daemon_factory, tmp_path):
    pq.write_table(pa.table({"user": [f"u{i}" for i in range(97)], "tier": [i % 3 for i in range(97)]}),
                   tmp_path / "tiers.parquet")
    doc = {"tradecraft": "tier", "analytics": [
        PUSHED["analytics"][0],
        {"name": "tiers", "kind": "ingest", "source": {"path": str(tmp_path / "tiers.parquet")}},
        {"name": "tiered", "kind": "join", "stream": "payments", "dataset": "tiers", "on": {"user": "user"},
         "fields": ["tier"], "how": "inner"}]}
    daemon = daemon_factory()
    db = daemon.db()
    await db.submit(doc)
    await db.publish("tier/payments", payments(0, 1_000))
    await wait_for_rows(db, "tier/tiered", 1_000)
    with trio.fail_after(10):              # the version is recorded (it is, shortly after loading)
        while not [e for e in (await db.describe("tier"))["tradecrafts"][0]["events"]
                   if e["kind"] == "dataset_version"]:
            await trio.sleep(0.05)
    daemon.kill()
    daemon = daemon_factory(data_dir=daemon.data_dir)
    db = daemon.db()
    await db.publish("tier/payments", payments(1_000, 1_000), end=True)
    assert (await db.read("tier/tiered")).num_rows == 2_000

    async def versions() -> list[int]:
        events = (await db.describe("tier"))["tradecrafts"][0]["events"]
        return [e["version"] for e in events if e["kind"] == "dataset_version"]
    with trio.move_on_after(10):           # recorded shortly after loading, maybe after the end
        while len(await versions()) < 2:
            await trio.sleep(0.05)
    assert await versions() == [1, 2]
