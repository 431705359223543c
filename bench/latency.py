"""`python -m bench.latency`: end-to-end latency at a fixed publish rate, on a running congregation.

A pushed stream feeds a transform whose output a `stream` client follows. First the maximum
rate is measured (publishing as fast as acknowledgements allow); then batches are published every
`--tick` seconds at half of it, each batch's rows stamped with its batch number; the time from a
batch's acknowledgement (and from its send) to its arrival at the stream client gives p50/p99/max.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import trio

import hallelujah

DOCUMENT = {"tradecraft": "lat", "analytics": [
    {"name": "ev", "kind": "stream", "schema": {"batch": "int64", "v": "float64"}},
    {"name": "out", "kind": "transform", "input": "ev", "derive": {"w": "v * 2 + 1"}, "where": "v >= 0"}]}


def batch(number: int, rows: int) -> pa.Table:
    return pa.table({"batch": np.full(rows, number, dtype=np.int64), "v": np.random.default_rng(abs(number)).random(rows)})


async def max_rate(db: hallelujah.Database, seconds: float, rows: int) -> float:
    """Rows/s acknowledged when publishing back to back, one batch after another."""
    sent, start, n = 0, time.perf_counter(), -1
    while time.perf_counter() - start < seconds:
        sent += await db.publish("lat/ev", batch(n, rows))
        n -= 1
    return sent / (time.perf_counter() - start)


async def measure(address: str, seconds: float, tick: float, rows: int, fraction: float = 0.5) -> dict:
    db = hallelujah.Database([address])
    await db.submit(DOCUMENT)
    top = await max_rate(db, 2.0, rows)
    per_tick = max(1, int(top * fraction * tick))
    sent_at: dict[int, float] = {}
    acked_at: dict[int, float] = {}
    arrived_at: dict[int, float] = {}
    count = int(seconds / tick)
    async with db.stream("lat/out") as live:
        async def publisher() -> None:
            start = time.perf_counter()
            for i in range(count):
                await trio.sleep_until(trio.current_time() + max(0.0, start + i * tick - time.perf_counter()))
                sent_at[i] = time.perf_counter()
                await db.publish("lat/ev", batch(i, per_tick), end=i == count - 1)
                acked_at[i] = time.perf_counter()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(publisher)
            async for got in live:
                now = time.perf_counter()
                for b in np.unique(got.column("batch").to_numpy()).tolist():
                    if b >= 0:
                        arrived_at.setdefault(b, now)
                if len(arrived_at) == count:
                    break
    from_ack = np.array([arrived_at[i] - acked_at[i] for i in range(count)]) * 1000
    from_send = np.array([arrived_at[i] - sent_at[i] for i in range(count)]) * 1000
    return {"max_rows_per_s": round(top), "rate_rows_per_s": round(per_tick / tick), "batches": count,
            "rows_per_batch": per_tick,
            "from_ack_ms": {q: round(float(np.percentile(from_ack, p)), 2) for q, p in (("p50", 50), ("p99", 99))}
            | {"max": round(float(from_ack.max()), 2)},
            "from_send_ms": {q: round(float(np.percentile(from_send, p)), 2) for q, p in (("p50", 50), ("p99", 99))}
            | {"max": round(float(from_send.max()), 2)}}


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--tick", type=float, default=0.02, help="seconds between publishes")
    ap.add_argument("--rows", type=int, default=65_536, help="rows per batch when measuring the maximum")
    ap.add_argument("--fraction", type=float, default=0.5, help="of the maximum rate to publish at")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen([sys.executable, "-m", "congregation", "--data-dir", tmp, "--listen", "127.0.0.1:0",
                                 "--workers", str(a.workers)], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            address = proc.stdout.readline().split(" ready at ")[1].split()[0]
            result = trio.run(measure, address, a.seconds, a.tick, a.rows, a.fraction)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(json.dumps({"workers": a.workers, **result}))


if __name__ == "__main__":
    main()
