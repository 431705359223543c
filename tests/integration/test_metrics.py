"""Prometheus metrics: rows per analytic and role, read from the running Jahs."""
from __future__ import annotations

import socket
import urllib.request

import numpy as np
import pyarrow as pa
import trio

from tests.conftest import Daemon


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
        # describe shows each datastream end's figures, as hallelujah.datastream counts them
        jahs = {j["role"]: j for a in (await db.describe("m"))["tradecrafts"][0]["analytics"] for j in a["jahs"]}
        ends = {e["port"]: e for e in jahs["transform"]["datastreams"]}
        taken = ends["in in"]
        assert (taken["rows"], taken["stream"]) == (10_000, taken["stream"]) and taken["last_seq"] >= 0, ends
        sent = ends["out out"]
        assert sent["rows_sent"] == jahs["transform"]["rows_out"] == 5_000, ends
        assert sent["credits_used"] == sent["next_seq"] and sent["credits_left"] >= 0, sent
    finally:
        daemon.stop()
