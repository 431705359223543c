"""Checkpoints: barriers flow with the data through every Jah, are lined up where datastreams
merge, and complete while the stream keeps flowing; the output stays exact."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request

import duckdb
import numpy as np
import pyarrow as pa
import trio

from tests.conftest import Daemon, sandbox
from tests.integration.helpers import assert_rows_equal, killed_after_a_checkpoint, read, read_by_logsource
from tests.integration.test_metrics import free_port

T0 = 1_700_006_400


def events(n: int, start: int = 0, seed: int = 5) -> pa.Table:
    """Sorted event times over an hour, a skewed user, a few actions."""
    rng = np.random.default_rng(seed + start)
    ts = T0 + (np.arange(start, start + n) * 3_600 // 400_000)
    users = np.char.mod("u%05d", np.floor(20_000 * rng.random(n) ** 3).astype(np.int64)).astype(object)
    action = np.where(rng.random(n) < 0.2, "click", "view").astype(object)
    return pa.table({"ts": pa.array(ts, pa.timestamp("s")), "user": users, "action": action})


DOCUMENT = {"tradecraft": "cp", "analytics": [
    {"name": "ev", "kind": "stream", "time": "ts",
     "schema": {"ts": "timestamp[s]", "user": "string", "action": "string"}},
    {"name": "clicks", "kind": "transform", "input": "ev", "where": "action == 'click'"},
    {"name": "per5m", "kind": "aggregate", "input": "ev", "time": "ts", "window": "5m",
     "group": ["action"], "measures": {"n": "count()", "users": "count_distinct(user)"}},
    {"name": "kept", "kind": "transform", "input": "clicks", "select": ["ts", "user"], "output": True}]}


def reference(data: pa.Table) -> pa.Table:
    con = duckdb.connect()
    con.register("d", data)
    return con.sql("""SELECT time_bucket(INTERVAL 5 minute, ts) AS window_start, action,
                                 count(*) AS n, count(DISTINCT "user") AS users
                          FROM d GROUP BY ALL ORDER BY window_start, action""").to_arrow_table()


async def test_checkpoints_complete_while_a_published_stream_flows_and_the_output_stays_exact(tmp_path):
    port = free_port()
    daemon = Daemon(tmp_path / "data", workers=2, extra=[*sandbox(tmp_path), "--checkpoint-every", "0.05",
                                                         "--metrics", f"127.0.0.1:{port}"]).start()
    try:
        db = daemon.db()
        await db.submit(DOCUMENT)
        parts = [events(50_000, start=i * 50_000) for i in range(8)]
        seen: set[int] = set()
        with trio.fail_after(60):
            for part in parts:
                await db.publish("cp/ev", part)
                cp = (await db.describe("cp"))["tradecrafts"][0]["checkpoints"]
                if cp["last"]:
                    seen.add(cp["last"]["id"])
                await trio.sleep(0.1)
            done = subprocess.run([sys.executable, "-m", "hallelujah", "--at", daemon.address, "checkpoint", "cp",
                                   "--json"], capture_output=True, text=True, timeout=30, check=False)
            assert done.returncode == 0, done.stderr
            taken = json.loads(done.stdout)
            assert taken["tradecraft"] == "cp" and taken["id"] > max(seen, default=0), (taken, seen)
            assert re.search(r"tradecraft cp: running.*; checkpoint \d+ complete \d+s ago \([\d,]+ bytes",
                             await db.debug("cp")), "the stall dump names the last checkpoint"
            metrics = await trio.to_thread.run_sync(
                lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode())
            assert re.search(r'hallelujah_checkpoint_bytes\{tradecraft="cp"\} [1-9]', metrics), metrics
            assert 'hallelujah_checkpoint_age_seconds{tradecraft="cp"}' in metrics
            await db.publish("cp/ev", [], end=True, schema=parts[0].schema)
            data = pa.concat_tables(parts)
            got = await read(db, "cp/per5m", timeout=60)
            assert_rows_equal(got.select(["window_start", "action", "n", "users"]), reference(data), "cp/per5m")
            # each Jah reports the watermark it has passed: an aggregate's is within the data's times
            jahs = [j for a in (await db.describe("cp"))["tradecrafts"][0]["analytics"] for j in a["jahs"]]
            marks = [j["watermark"] for j in jahs if j["role"] == "merge" and j.get("watermark") is not None]
            assert marks and T0 * 1_000_000 <= marks[0] <= (T0 + 3_600) * 1_000_000, jahs
            kept = data.filter(pa.compute.equal(data.column("action"), "click")).select(["ts", "user"])
            assert_rows_equal(await read(db, "cp/kept"), kept, "cp/kept")
        assert len(seen) >= 3, f"checkpoints seen complete while publishing: {sorted(seen)}"
    finally:
        daemon.stop()


HOURLY = {"tradecraft": "hr", "analytics": [
    {"name": "ev", "kind": "stream", "time": "ts",
     "schema": {"ts": "timestamp[s]", "user": "string", "action": "string"}},
    {"name": "hourly", "kind": "aggregate", "input": "ev", "time": "ts", "window": "1h",
     "group": ["action"], "measures": {"n": "count()", "users": "count_distinct(user)"}}]}


def hourly_reference(data: pa.Table) -> pa.Table:
    return duckdb.connect().sql("""SELECT time_bucket(INTERVAL 1 hour, ts) AS window_start, action,
                                          count(*) AS n, count(DISTINCT "user") AS users
                                   FROM data GROUP BY ALL ORDER BY window_start, action""").to_arrow_table()


async def test_a_congregation_killed_after_a_checkpoint_restores_it_and_replays_only_what_came_after(tmp_path):
    """One open hour holds every row: without the checkpoint a restart would replay them all."""
    parts = [events(40_000, start=i * 40_000) for i in range(8)]
    data = pa.concat_tables(parts)
    got, taken, info = await killed_after_a_checkpoint(tmp_path / "data", sandbox(tmp_path), HOURLY, "hr/ev",
                                                       parts, 4, "hr/hourly")
    assert taken["bytes"] > 0, taken
    assert_rows_equal(got.select(["window_start", "action", "n", "users"]), hourly_reference(data),
                      "hr/hourly after a kill -9 and a restore")
    restored = [e for e in info["events"] if e["kind"] == "restored"]
    assert [e["checkpoint"] for e in restored] == [taken["id"]], info["events"]
    # replayed: the batch after the checkpoint (5), then what came after the restart (6, 7)
    assert read_by_logsource(info) == 3 * 40_000


async def test_a_documents_checkpoint_period_overrides_the_congregations(tmp_path):
    """`"checkpoint": "0.1s"` in the document: its tradecraft takes checkpoints though the
    congregation takes none by default (`--checkpoint-every 0`); one without it takes none."""
    daemon = Daemon(tmp_path / "data", workers=1, extra=[*sandbox(tmp_path), "--checkpoint-every", "0"]).start()
    try:
        db = daemon.db()
        await db.submit({**DOCUMENT, "checkpoint": "0.1s"})
        await db.submit({**DOCUMENT, "tradecraft": "none"})
        data = events(40_000)
        with trio.fail_after(60):
            for name in ("cp", "none"):
                await db.publish(f"{name}/ev", data)
            while not (cp := (await db.describe("cp"))["tradecrafts"][0]["checkpoints"])["last"]:
                await trio.sleep(0.05)
            assert cp["every"] == 0.1, cp
            for name in ("cp", "none"):
                await db.publish(f"{name}/ev", [], end=True, schema=data.schema)
                got = await read(db, f"{name}/per5m", timeout=60)
                assert_rows_equal(got.select(["window_start", "action", "n", "users"]), reference(data), name)
            none = (await db.describe("none"))["tradecrafts"][0]["checkpoints"]
            assert none["every"] == 0 and none["last"] is None, none
    finally:
        daemon.stop()
