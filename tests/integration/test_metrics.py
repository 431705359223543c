"""Prometheus metrics: rows per analytic and role, read from the running Jahs."""
from __future__ import annotations

import socket
import urllib.request

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import trio

from tests.conftest import Daemon
from tests.integration.helpers import read, wait_state


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_metrics_count_the_rows_each_analytic_has_taken(tmp_path):
    port = free_port()
    daemon = Daemon(tmp_path / "data", extra=["--metrics", f"127.0.0.1:{port}"]).start()
    try:
        db = daemon.db()
        await db.submit({"tradecraft": "m", "analytics": [
            {"name": "s", "kind": "stream", "schema": {"x": "int64"}},
            {"name": "t", "kind": "transform", "input": "s", "where": "x % 2 == 0"}]})
        await db.publish("m/s", pa.table({"x": np.arange(10_000)}))
        await db.read("m/t", limit=5_000)
        with trio.fail_after(10):
            while True:
                text = await trio.to_thread.run_sync(
                    lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode())
                line = [ln for ln in text.splitlines()
                        if ln.startswith('hallelujah_rows_in_total{analytic="t",role="transform",tradecraft="m"}')]
                if line and float(line[0].split()[-1]) == 10_000:
                    break
                await trio.sleep(0.2)
        assert "hallelujah_workers 2.0" in text
        assert 'hallelujah_in_flight_batches{analytic="t",role="transform",tradecraft="m"}' in text
        # a chain in one worker: LOGSOURCE -> transform -> SINK through memory, no socket
        jahs = {j["role"]: j for a in (await db.describe("m"))["tradecrafts"][0]["analytics"] for j in a["jahs"]}
        ends = {e["port"]: e for e in jahs["transform"]["datastreams"]}
        assert ends["in in"]["in_process"] and ends["in in"]["messages"] >= 1 and ends["out out"]["in_process"], ends
        assert jahs["logsource"]["worker"] == jahs["transform"]["worker"] == jahs["sink"]["worker"] >= 0, jahs
    finally:
        daemon.stop()


async def test_describe_shows_each_datastream_ends_figures_between_workers(congregation, tmp_path):
    """A file of two row groups is read by two sources, each with its transform in its own worker;
    the SINK lives beside the first, so the second's batches cross a socket: both ends' figures,
    as hallelujah.datastream counts them, are in describe (also once the Jahs have finished)."""
    pq.write_table(pa.table({"x": np.arange(10_000)}), tmp_path / "s.parquet", row_group_size=5_000)
    db = congregation.db()
    with trio.fail_after(30):
        await db.submit({"tradecraft": "m", "analytics": [
            {"name": "s", "kind": "stream", "source": {"path": str(tmp_path / "s.parquet")}},
            {"name": "t", "kind": "transform", "input": "s", "where": "x % 2 == 0", "output": True}]})
        await read(db, "m/t")
        await wait_state(db, "m")
        jahs = {j["id"].split("/", 1)[1]: j for a in (await db.describe("m"))["tradecrafts"][0]["analytics"]
                for j in a["jahs"]}
    second, sink = jahs["t/transform#1"], jahs["t/sink"]
    assert {second["worker"], sink["worker"]} == {0, 1}, jahs
    sent = next(e for e in second["datastreams"] if e["port"] == "out out")
    taken = next(e for e in sink["datastreams"] if e.get("stream") == sent["stream"])
    assert sent["rows_sent"] == second["rows_out"] == taken["rows"] == 2_500, (sent, taken)
    assert sent["credits_used"] == sent["next_seq"] == taken["messages"] == taken["last_seq"] + 1, (sent, taken)
    local = next(e for e in sink["datastreams"] if e.get("in_process"))
    assert local["messages"] >= 1, sink
