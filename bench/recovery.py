"""Recovery time against history: a congregation SIGKILLed after 1 minute and after 1 hour of a
stream (at 1,000 events/s, published at full speed), with the same state (one open day-long
window of 100 groups), restarted on its data dir; timed from the restart until a query of the
open window counts every event plus one published after the restart. With a checkpoint taken
just before the kill the restart replays nothing; without one it replays the whole history.

    python -m bench.recovery [--rate 1000] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import trio

import hallelujah

DOCUMENT = {"tradecraft": "rec", "analytics": [
    {"name": "ev", "kind": "stream", "time": "ts", "schema": {"ts": "timestamp[ms]", "k": "int64", "x": "float64"}},
    {"name": "daily", "kind": "aggregate", "input": "ev", "time": "ts", "window": "1d", "group": ["k"],
     "measures": {"n": "count()", "s": "sum(x)"}}]}
T0_MS = 1_699_920_000_000     # a day boundary (UTC)
DEADLINE = 300.0


def events(start: int, n: int, rate: int) -> pa.Table:
    i = np.arange(start, start + n)
    return pa.table({"ts": pa.array(T0_MS + i * 1000 // rate, pa.timestamp("ms")), "k": i % 100, "x": i * 0.5})


class Congregation:
    def __init__(self, data_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "congregation", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0",
             "--workers", "2", "--checkpoint-every", "0"], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if " ready at " not in line:
            raise RuntimeError(f"congregation did not start: {line!r}")
        self.address = line.split(" ready at ")[1].split()[0]

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


async def counted(db: hallelujah.Database) -> int:
    try:
        table = await db.query("rec/daily")
    except hallelujah.HallelujahError:
        return -1
    return int(pa.compute.sum(table.column("n")).as_py() or 0) if table.num_rows else 0


async def one(history_s: int, rate: int, checkpoint: bool) -> float:
    """Seconds from the restart until every event, and one more, is counted again."""
    with tempfile.TemporaryDirectory(prefix="hbench-rec-") as tmp:
        first = Congregation(Path(tmp))
        db = hallelujah.Database([first.address])
        n = history_s * rate
        with trio.fail_after(DEADLINE):
            await db.submit(DOCUMENT)
            for start in range(0, n, 500_000):
                await db.publish("rec/ev", events(start, min(500_000, n - start), rate))
            while await counted(db) < n:
                await trio.sleep(0.05)
            if checkpoint:
                await db.checkpoint("rec")
        first.kill()
        started = time.perf_counter()
        again = Congregation(Path(tmp))
        db = hallelujah.Database([again.address])
        with trio.fail_after(DEADLINE):
            await db.publish("rec/ev", events(n, 1, rate))
            while await counted(db) < n + 1:
                await trio.sleep(0.01)
        seconds = time.perf_counter() - started
        again.kill()
        return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=1000, help="events per second of history")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each case; the median is shown")
    args = ap.parse_args()
    os.environ.setdefault("HALLELUJAH_LOG_LEVEL", "error")
    print("| history | events | restart to caught up, checkpoint before the kill | without a checkpoint |")
    print("|---|---|---|---|")
    for label, seconds in (("1 minute", 60), ("1 hour", 3600)):
        with_cp = sorted(trio.run(one, seconds, args.rate, True) for _ in range(args.repeat))
        without = sorted(trio.run(one, seconds, args.rate, False) for _ in range(args.repeat))
        print(f"| {label} | {seconds * args.rate:,} | {with_cp[len(with_cp) // 2]:.2f} s | "
              f"{without[len(without) // 2]:.2f} s |", flush=True)


if __name__ == "__main__":
    main()
