"""`python -m bench.control_latency`: how long `describe` takes while data is published at full rate.

The congregation's own trio loop carries the control plane (commands such as `describe`) and the
bytes a client publishes (its workers' LOGSOURCE reads a published stream's input log, and a SINK
writes a retained output's log, in the workers). This bench submits a pushed `stream` feeding a retained
transform, then `--publishers` separate processes publish pre-generated batches back to back (as
fast as acknowledgements allow) for `--seconds`, while this process calls `describe` (the whole
congregation and the tradecraft, in turn) every `--every` seconds and times each answer. The same
calls with nothing published are the baseline. At the end the retained output is read back and its
rows and the sum of a column are checked against what the publishers had acknowledged, so the
figures are known to come from a real run. Issue 13's aim: `describe` p99 under 50 ms at 5 M rows/s.

    python -m bench.control_latency [--publishers 2] [--seconds 10] [--results DIR] [--profile FILE]
                                    [--what-if CHANGE]

`--profile` and `--what-if` run the congregation under bench/loop_profile.py; bench/CONTROL_LATENCY.md
has the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import trio

import hallelujah
from bench.loop_profile import WHAT_IF

TRADECRAFT = "ctl"
DOCUMENT = {"tradecraft": TRADECRAFT, "analytics": [
    {"name": "ev", "kind": "stream", "schema": {"k": "int64", "x": "float64", "y": "float64"}},
    {"name": "out", "kind": "transform", "input": "ev", "derive": {"z": "x * 2 + y"}, "where": "k >= 0"}]}
POOL = 4                 # distinct batches each publisher sends in turn
DEADLINE = 300.0         # seconds for a whole run; a run past it is a failed bench
TARGET_P99_MS = 50.0     # issue 13's aim
PROFILE_WAIT = 30.0      # seconds the loop profile has to be written once it is stopped


def pool(index: int, rows: int) -> list[pa.RecordBatch]:
    """A publisher's batches, made before the clock starts (k >= 0: the transform keeps every row)."""
    rng = np.random.default_rng(index)
    return [pa.RecordBatch.from_pydict({"k": rng.integers(0, 1_000_000, rows, dtype=np.int64),
                                        "x": rng.random(rows), "y": rng.random(rows)})
            for _ in range(POOL)]


@dataclass
class Tally:
    """What a publisher handed to `publish`: all of it is acknowledged once `publish` returns."""

    rows: int = 0
    batches: int = 0
    sum_k: int = 0


def until(batches: list[pa.RecordBatch], stop_at: float, tally: Tally) -> Iterator[pa.RecordBatch]:
    sums = [int(pc.sum(b.column("k")).as_py()) for b in batches]
    while time.perf_counter() < stop_at:
        i = tally.batches % len(batches)
        tally.rows, tally.batches, tally.sum_k = tally.rows + batches[i].num_rows, tally.batches + 1, tally.sum_k + sums[i]
        yield batches[i]


def publisher(address: str, index: int, seconds: float, rows: int) -> None:
    """One publishing process: says `ready` once its batches exist, starts at `go` on stdin,
    prints what it published (one JSON line) and ends at the next line (or the end) of stdin."""
    batches = pool(index, rows)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    tally = Tally()
    start = time.perf_counter()

    async def run() -> int:
        db = hallelujah.Database([address])
        return await db.publish(f"{TRADECRAFT}/ev", until(batches, start + seconds, tally))
    acknowledged = trio.run(run)
    if acknowledged != tally.rows:
        raise SystemExit(f"publisher {index}: {acknowledged:,} rows acknowledged of {tally.rows:,} sent")
    print(json.dumps({"rows": tally.rows, "batches": tally.batches, "sum_k": tally.sum_k,
                      "seconds": round(time.perf_counter() - start, 3)}), flush=True)
    sys.stdin.readline()        # alive until the bench has read every publisher's CPU time


@dataclass
class Timings:
    """Each describe's latency (ms) by kind, with when it started (s from the phase's start)."""

    every: float
    samples: list[tuple[float, str, float]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for kind in ("all", "tradecraft", "both"):
            ms = np.array([s[2] for s in self.samples if kind == "both" or s[1] == kind])
            if len(ms):
                out[kind] = {"calls": len(ms), "p50": round(float(np.percentile(ms, 50)), 2),
                             "p99": round(float(np.percentile(ms, 99)), 2), "max": round(float(ms.max()), 2)}
        return out


async def describer(db: hallelujah.Database, timings: Timings) -> None:
    """`describe` of everything and of the tradecraft in turn, one starting every `every` s (or
    at once after one that took longer), until cancelled."""
    start = trio.current_time()
    tick = 0
    while True:
        kind = "all" if tick % 2 == 0 else "tradecraft"
        at, began = trio.current_time() - start, time.perf_counter()
        await db.describe("" if kind == "all" else TRADECRAFT)
        timings.samples.append((round(at, 3), kind, round((time.perf_counter() - began) * 1000, 2)))
        tick += 1
        await trio.sleep_until(max(trio.current_time(), start + tick * timings.every))


async def readline(proc: subprocess.Popen) -> str:
    """A line of a publisher's; the run's deadline abandons the wait (the process is then killed)."""
    assert proc.stdout is not None
    return await trio.to_thread.run_sync(proc.stdout.readline, abandon_on_cancel=True)


async def retained(db: hallelujah.Database) -> tuple[int, int]:
    """Rows and the sum of k of the whole retained output, read back a batch at a time."""
    rows = sum_k = 0
    async with db.stream(f"{TRADECRAFT}/out", from_start=True) as batches:
        async for b in batches:
            rows += b.num_rows
            sum_k += int(pc.sum(b.column("k")).as_py() or 0)
    return rows, sum_k


async def state_of(db: hallelujah.Database) -> str:
    return (await db.describe(TRADECRAFT))["tradecrafts"][0]["state"]


def cpu_seconds(congregation: int, publishers: list[int]) -> dict[str, float]:
    """Seconds so far: CPU (user + system) of the congregation's loop thread, of its other threads,
    of its workers (and their zygote), of the publishers and of this process (the describe client);
    and the time the loop thread waited, runnable, for a CPU (the kernel's schedstat): a loop that
    is slow for want of a core, not for its own work."""
    def total(p: psutil.Process) -> float:
        t = p.cpu_times()
        return t.user + t.system
    daemon = psutil.Process(congregation)
    loop = next((t.user_time + t.system_time for t in daemon.threads() if t.id == congregation), 0.0)
    try:
        with open(f"/proc/{congregation}/task/{congregation}/schedstat") as f:
            waited = int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        waited = 0.0
    return {"congregation_loop_thread": loop, "congregation_other_threads": total(daemon) - loop,
            "workers": sum(total(c) for c in daemon.children(recursive=True)),
            "publishers": sum(total(psutil.Process(p)) for p in publishers),
            "describe_client": total(psutil.Process()), "loop_thread_waiting_for_a_cpu": waited}


async def measure(address: str, pid: int, a: argparse.Namespace) -> dict[str, Any]:
    db = hallelujah.Database([address])
    await db.submit(DOCUMENT)
    procs = [subprocess.Popen([sys.executable, "-m", "bench.control_latency", "--publisher-of", address,
                               "--index", str(i), "--seconds", str(a.seconds), "--rows", str(a.rows)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for i in range(a.publishers)]
    try:
        for p in procs:
            if (await readline(p)).strip() != "ready":
                raise SystemExit(f"publisher {p.pid} did not start (exit {p.wait()})")
        baseline = Timings(a.every)
        with trio.move_on_after(a.baseline_seconds):
            await describer(db, baseline)
        if a.profile:
            os.kill(pid, signal.SIGUSR2)        # bench.loop_profile: record from now
        busy = Timings(a.every)
        results: list[dict[str, Any]] = []
        cpu_before = cpu_seconds(pid, [p.pid for p in procs])
        start = time.perf_counter()
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(describer, db, busy)
            for p in procs:
                line = await readline(p)
                if not line:
                    raise SystemExit(f"publisher {p.pid} failed (exit {p.wait()})")
                results.append(json.loads(line))
            nursery.cancel_scope.cancel()
        seconds = time.perf_counter() - start
        cpu_after = cpu_seconds(pid, [p.pid for p in procs])
        for p in procs:
            p.communicate("done\n", timeout=30)
        if a.profile:
            os.kill(pid, signal.SIGUSR2)        # … until now, and write the profile
        last = pool(a.publishers, 1)[0]
        await db.publish(f"{TRADECRAFT}/ev", last, end=True)        # the end: one row more
        ended = time.perf_counter()
        while await state_of(db) == "running":
            await trio.sleep(0.1)
        caught_up = time.perf_counter() - ended
        with trio.move_on_after(PROFILE_WAIT):
            while a.profile and not Path(a.profile).exists():
                await trio.sleep(0.05)
        if a.profile and not Path(a.profile).exists():
            raise SystemExit(f"--profile {a.profile}: not written {PROFILE_WAIT:g} s after the publishing ended")
        rows, sum_k = await retained(db)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    published = sum(r["rows"] for r in results) + 1
    published_k = sum(r["sum_k"] for r in results) + int(last.column("k")[0].as_py())
    summary = busy.summary()
    return {"publishers": a.publishers, "rows_per_batch": a.rows, "seconds": round(seconds, 3),
            "published_rows": published, "published_rows_per_s": round((published - 1) / seconds),
            "retained_rows": rows, "match": rows == published and sum_k == published_k,
            "catch_up_s": round(caught_up, 3),
            # cores busy while publishing: is the loop thread at one core, is the machine full?
            "cpu_cores": {k: round((cpu_after[k] - cpu_before[k]) / seconds, 2) for k in cpu_before},
            "every_ms": round(a.every * 1000, 1),
            "describe_ms": summary, "baseline_describe_ms": baseline.summary(),
            "target_p99_ms": TARGET_P99_MS, "met": summary.get("both", {}).get("p99", 1e9) < TARGET_P99_MS,
            "samples": busy.samples}


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.control_latency", description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--publishers", type=int, default=2, help="publishing processes")
    ap.add_argument("--seconds", type=float, default=10.0, help="of publishing")
    ap.add_argument("--baseline-seconds", type=float, default=3.0, help="of describe with nothing published")
    ap.add_argument("--rows", type=int, default=65_536, help="rows per published batch")
    ap.add_argument("--every", type=float, default=0.02, help="seconds between describe calls")
    ap.add_argument("--results", help="a directory to write control_latency.json into")
    ap.add_argument("--profile", help="a JSON profile of the congregation's trio loop while publishing, to this "
                                      "file (bench/loop_profile.py)")
    ap.add_argument("--what-if", action="append", default=[], choices=list(WHAT_IF),
                    help="a change of the congregation's, patched in by bench/loop_profile.py, to measure it")
    ap.add_argument("--publisher-of", help=argparse.SUPPRESS)
    ap.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    for flag, value, least in (("--publishers", a.publishers, 1), ("--rows", a.rows, 1), ("--workers", a.workers, 1)):
        if value < least:
            ap.error(f"{flag} {value}: must be {least} or more")
    for flag, seconds in (("--seconds", a.seconds), ("--baseline-seconds", a.baseline_seconds), ("--every", a.every)):
        if not 0 < seconds < DEADLINE:
            ap.error(f"{flag} {seconds}: must be more than 0 and less than {DEADLINE:g}")
    if a.publisher_of:
        publisher(a.publisher_of, a.index, a.seconds, a.rows)
        return
    os.environ.setdefault("HALLELUJAH_LOG_LEVEL", "error")
    if a.profile:
        a.profile = str(Path(a.profile).resolve())
        Path(a.profile).unlink(missing_ok=True)        # (its appearance says the profile is written)
        Path(a.profile).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hbench-ctl-") as tmp:
        daemon = ["congregation"]
        if a.profile or a.what_if:
            daemon = ["bench.loop_profile", *(["--out", a.profile] if a.profile else []),
                      *(f"--what-if={w}" for w in a.what_if), "--"]
        proc = subprocess.Popen([sys.executable, "-m", *daemon, "--data-dir", tmp, "--listen", "127.0.0.1:0",
                                 "--workers", str(a.workers)], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if " ready at " not in line:
                raise SystemExit(f"congregation did not start: {line!r}")
            address = line.split(" ready at ")[1].split()[0]

            async def bounded() -> dict[str, Any]:
                with trio.fail_after(DEADLINE):
                    return await measure(address, proc.pid, a)
            load = os.getloadavg()[0]
            result = {"workers": a.workers, "what_if": a.what_if, "profiled": bool(a.profile),
                      **trio.run(bounded),
                      # the machine's 1-minute load before and after: other work on it shows here
                      "load_average": [round(load, 2), round(os.getloadavg()[0], 2)]}
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    if a.results:
        Path(a.results).mkdir(parents=True, exist_ok=True)
        (Path(a.results) / "control_latency.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}))
    if not result["match"]:
        raise SystemExit(f"the retained output has {result['retained_rows']:,} rows (or another sum of k) "
                         f"for {result['published_rows']:,} published")


if __name__ == "__main__":
    main()
