"""`python -m bench.checkpoint_cost`: what checkpoints every second cost a congregation's steady state.

The bench's 1–3 s runs take 0–3 checkpoints, and sittings differ by ±8–12 %, so the cost was not
shown (CHECKPOINTS.md). Here each workload with state is fed without end: its pushed streams get
the bench's data again and again (each pass shifted in event time past the last, so windows and
joins repeat exactly and the output is a known multiple of one pass's), published at full speed
but never more than a pass ahead of what it has taken. After a warm-up, the rows its stateful
Jahs take (from `describe`) and the rows acknowledged to the publisher are sampled for
`--seconds`; the rate is the lesser of their least-squares slopes, with the CPU per row of the
congregation's processes beside it. The runs with a checkpoint
every `--every` seconds and with none alternate in the same sitting (A B, then B A, …), so a
change of load on the machine hits both alike; the checkpoints are counted from the daemon's
`checkpoint_complete` lines. Then the streams are ended, the tradecraft runs out, and its output
is checked against pyarrow on the input (and DuckDB's reference.json for one pass).

    python -m bench.checkpoint_cost [--seconds 60] [--rounds 3] [--results DIR] [--write]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import trio

import hallelujah
from bench.__main__ import ensure_data
from bench.harness import DEADLINE, compile_bytecode
from bench.workloads import WORKLOADS
from hallelujah.client import PUBLISH_BATCH_ROWS
from hallelujah.conform import publishable
from hallelujah.tradecraft_schemas import schema_to_json

HERE = Path(__file__).resolve().parent
SECTION = "## Checkpoint cost (steady state)"          # of CHECKPOINTS.md
RESULTS_SECTION = "## Checkpoint cost"                  # RESULTS.md's short one, pointing to it
# the stateful Jahs whose rows taken are counted: their role, and the figure (a dataset JOIN's
# `rows_in` counts the dataset's rows too: its stream input's alone are `stream_rows`)
COUNTED = {"clicks": ("aggregate", "rows_in"), "reqresp": ("stream_join", "rows_in"),
           "enrich": ("join", "stream_rows")}
HOUR_S, GAP_US = 3600, 2_000_000
AHEAD_ROWS = 2_000_000       # published, not yet taken: a few seconds of work at the rates seen here
CHECKPOINT_EVENT = re.compile(r'\{[^{}]*"event": "checkpoint_(?:complete|abandoned|not_kept)"[^{}]*\}')


@dataclass(frozen=True)
class Feed:
    """A workload fed without end: its tradecraft with pushed streams, each stream's data of one
    pass, and how far each pass moves event time (0: no event time)."""

    workload: str
    document: dict[str, Any]
    tables: dict[str, pa.Table]      # stream -> one pass, in the stream's schema
    shift: int                       # added to `ts` per pass, in the unit of its type
    output: str
    expected: Any                    # one pass's output: a row count, or clicks' rows by hour

    @property
    def rows(self) -> int:
        """Rows of one pass, every stream's."""
        return sum(t.num_rows for t in self.tables.values())

    def passes(self, stream: str, k: int) -> Iterator[pa.RecordBatch]:
        """Pass k of a stream's batches, its event time moved k shifts on."""
        table = self.tables[stream]
        for batch in table.to_batches(max_chunksize=PUBLISH_BATCH_ROWS):
            if self.shift and k:
                i = batch.schema.get_field_index("ts")
                ts = batch.column(i)
                moved = pc.add(ts.view(pa.int64()), k * self.shift).view(ts.type)
                batch = batch.set_column(i, batch.schema.field(i), moved)
            yield batch


def pushed(document: dict[str, Any]) -> dict[str, Any]:
    """The bench's document with its file streams made pushed ones (their schema from the file)."""
    analytics = []
    for a in document["analytics"]:
        if a["kind"] == "stream" and "source" in a:
            schema = a.get("schema") or schema_to_json(pq.read_schema(a["source"]["path"]))
            a = {k: v for k, v in a.items() if k != "source"} | {"schema": schema}
        analytics.append(a)
    return {**document, "analytics": analytics}


def feed_of(workload: str, data: Path) -> Feed:
    """The workload's pushed tradecraft, its input and one pass's expected output, by pyarrow."""
    from hallelujah.tradecraft import parse_document
    document = pushed(WORKLOADS[workload][0](data))
    tc = parse_document(document, data)
    tables = {a.name: publishable(pq.read_table(data / f"{a.name}.parquet"), a.schema)
              for a in tc.analytics if a.kind == "stream"}
    if workload == "clicks":
        ts = tables["clicks"]["ts"].cast(pa.int64())
        span = pc.max(ts).as_py() - pc.min(ts).as_py()
        return Feed(workload, document, tables, (span // HOUR_S + 2) * HOUR_S, "hourly", clicks_by_hour(tables["clicks"]))
    if workload == "reqresp":
        ts = [t["ts"].cast(pa.int64()) for t in tables.values()]
        span = max(pc.max(t).as_py() for t in ts) - min(pc.min(t).as_py() for t in ts)
        return Feed(workload, document, tables, span + GAP_US, "trips",
                    trips(tables["requests"], tables["responses"]))
    if workload == "enrich":          # no event time: every pass joins the same way
        return Feed(workload, document, tables, 0, "enriched", enriched(tables["gps_events"], data))
    raise SystemExit(f"--workload {workload}: no steady-state feed for it (there are: {', '.join(COUNTED)})")


def clicks_by_hour(t: pa.Table) -> list[list[int]]:
    """[[epoch hour, unique users, clicks, impressions], …] by hour (the aggregate's windows)."""
    hour = pc.divide(t["ts"].cast(pa.int64()), HOUR_S)
    g = pa.table({"hour": hour, "user": t["user"], "click": pc.equal(t["action"], "click"),
                  "impression": pc.equal(t["action"], "impression")})
    out = g.group_by("hour").aggregate([("user", "count_distinct"), ("click", "sum"),
                                        ("impression", "sum")]).sort_by("hour")
    return [list(r) for r in zip(*(out[c].to_pylist() for c in
                                   ("hour", "user_count_distinct", "click_sum", "impression_sum")))]


def trips(requests: pa.Table, responses: pa.Table) -> int:
    """Pairs of a request and its response within 1 s after it (the shared reference's join)."""
    keys = ["src", "dst", "msg_id"]
    j = requests.join(responses, keys, keys, right_suffix=".r")
    lag = pc.subtract(j["ts.r"].cast(pa.int64()), j["ts"].cast(pa.int64()))
    return int(pc.sum(pc.and_(pc.greater_equal(lag, 0), pc.less_equal(lag, 1_000_000))).as_py() or 0)


def enriched(gps: pa.Table, data: Path) -> int:
    """GPS events whose tile is in the tiles dataset (the inner join's rows)."""
    tile = (np.floor(gps["lat"].to_numpy() + 90) * 360 + np.floor(gps["lon"].to_numpy() + 180)).astype(np.int64)
    return int(np.isin(tile, pq.read_table(data / "tiles.parquet")["tile"].to_numpy()).sum())


def against_duckdb(feed: Feed, data: Path) -> None:
    """One pass's expected output is what DuckDB found for the whole file (reference.json), if it is there."""
    ref = data / "reference.json"
    if not ref.exists():
        return
    rows = json.loads(ref.read_text())[feed.workload]["rows"]
    if rows != feed.expected:
        raise SystemExit(f"{feed.workload}: pyarrow's reference {str(feed.expected)[:80]} is not DuckDB's "
                         f"{str(rows)[:80]} ({ref})")


# --- one run --------------------------------------------------------------------------------

@dataclass
class Sample:
    at: float          # monotonic seconds
    rows: int          # rows the stateful Jahs have taken
    checkpoint: int    # the id of the last complete checkpoint (0: none yet)
    cpu: float         # user + system seconds of the congregation's processes so far
    publisher_cpu: float    # of this one (the publisher)
    published: int     # rows acknowledged to the publisher so far


@dataclass
class Run:
    """One run's progress: the samples, the measured window once the first row is taken, the passes fed."""

    feed: Feed
    warmup: float
    seconds: float
    daemon: psutil.Process
    samples: list[Sample] = field(default_factory=list)
    window: dict[str, float] = field(default_factory=dict)
    passes: int = 0
    published: int = 0               # rows acknowledged by the publishes that have returned
    acked: dict[str, int] = field(default_factory=dict)      # stream -> by the one under way
    waited: float = 0.0              # seconds the publisher waited for room, in the window
    over: trio.Event = field(default_factory=trio.Event)

    async def sample(self, db: hallelujah.Database, every_s: float) -> None:
        """Sample until the measured window is over (it starts `warmup` s after the first row taken)."""
        counted = COUNTED[self.feed.workload]
        while not self.over.is_set():
            info = (await db.describe(self.feed.workload))["tradecrafts"][0]
            now = time.monotonic()
            rows = rows_taken(info, counted)
            last = (info["checkpoints"] or {}).get("last")
            self.samples.append(Sample(now, rows, last["id"] if last else 0, tree_cpu(self.daemon),
                                       sum(psutil.Process().cpu_times()[:2]), self.acknowledged()))
            if not self.window and rows > 0:
                wall = time.time()
                self.window = {"start": now + self.warmup, "end": now + self.warmup + self.seconds,
                               "wall_start": wall + self.warmup, "wall_end": wall + self.warmup + self.seconds}
            if self.window and now >= self.window["end"]:
                self.over.set()
            await trio.sleep(every_s)

    async def publish(self, db: hallelujah.Database) -> None:
        """Pass after pass into every stream at once (a pass of each stream before the next, so a
        join's two sides keep together in event time) until the window is over."""
        while not self.over.is_set():
            await self.room()
            async with trio.open_nursery() as nursery:
                for stream in self.feed.tables:
                    nursery.start_soon(self._publish_pass, db, stream)
            self.passes += 1

    async def _publish_pass(self, db: hallelujah.Database, stream: str) -> None:
        rows = await db.publish(f"{self.feed.workload}/{stream}", self.feed.passes(stream, self.passes),
                                schema=self.feed.tables[stream].schema,
                                progress=lambda n: self.acked.__setitem__(stream, n))
        self.published, self.acked[stream] = self.published + rows, 0     # after the await: one step

    def acknowledged(self) -> int:
        return self.published + sum(self.acked.values())

    async def room(self) -> None:
        """Wait while the streams hold more than AHEAD_ROWS (or a pass) not yet taken: the
        stateful Jahs always have work, and the backlog (which the end drains, and the data dir
        holds) does not grow for ever. The time waited in the window says the tradecraft, not the
        publisher, set the pace."""
        ahead = max(self.feed.rows, AHEAD_ROWS)
        while self.acknowledged() - (self.samples[-1].rows if self.samples else 0) > ahead and not self.over.is_set():
            started = time.monotonic()
            await trio.sleep(0.05)
            if self.window and self.window["start"] <= started <= self.window["end"]:
                self.waited += time.monotonic() - started

    def steady(self) -> list[Sample]:
        """The samples of the measured window, from the last one before it starts to the one that
        ended it (the sampling stops there): two at least, however slow `describe` is."""
        first = max(i for i, s in enumerate(self.samples) if s.at <= self.window["start"])
        return self.samples[first:]


def rows_taken(info: dict[str, Any], counted: tuple[str, str]) -> int:
    """Rows the stateful Jahs (`counted`: their role and figure) have taken, as a tradecraft's describe says."""
    role, figure = counted
    return sum(int(j.get(figure, 0)) for a in info["analytics"] for j in a["jahs"] if j["role"] == role)


def tree_cpu(proc: psutil.Process) -> float:
    """User + system seconds of a process and its children (the workers), as now."""
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += sum(p.cpu_times()[:2])
    return total


async def drive(address: str, daemon: psutil.Process, feed: Feed, a: argparse.Namespace) -> dict[str, Any]:
    """Feed the tradecraft pass after pass while sampling what it consumes; once the measured
    window is over, end the streams, wait for the output to end, and check it."""
    db = hallelujah.Database([address])
    run = Run(feed, a.warmup, a.seconds, daemon)
    with trio.fail_after(a.deadline):
        await db.submit(feed.document)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run.sample, db, a.sample)
            nursery.start_soon(run.publish, db)
        for stream, table in feed.tables.items():
            await db.publish(f"{feed.workload}/{stream}", [], end=True, schema=table.schema)
        info = await finished(db, feed.workload)
        output = next(x["retained"][feed.output] for x in info["analytics"] if feed.output in x["retained"])
        got, expected = await output_of(db, feed, output["rows"], run.passes)
    steady = run.steady()
    return {**rates(steady, run.waited / a.seconds), "window": run.window, "passes": run.passes,
            "published_rows": run.published, "taken_rows": rows_taken(info, COUNTED[feed.workload]),
            "output_rows": output["rows"], "got": got, "expected": expected, "match": got == expected,
            "scaling": len(info["scaling"])}


def rates(steady: list[Sample], waited: float) -> dict[str, Any]:
    """The window's figures. Rows go through at the least of the rate the tradecraft takes them
    and the rate they are published: in a steady state the two are one, and where the window
    still sees a warm-up's backlog drain (taken > published) or build (taken < published), the
    lesser is what the pipeline sustains. The tradecraft set the pace if the publisher had to
    wait for it, or if it took less than was published."""
    at = [s.at for s in steady]
    taken, published = slope(at, [s.rows for s in steady]), slope(at, [s.published for s in steady])
    rows = steady[-1].rows - steady[0].rows
    return {"rows_per_s": round(min(taken, published)), "taken_per_s": round(taken),
            "published_per_s": round(published), "samples": len(steady),
            # CPU per row taken in the window: the congregation's processes', and the publisher's (this one)
            "cpu_us_per_row": round((steady[-1].cpu - steady[0].cpu) / rows * 1e6, 3) if rows else None,
            "publisher_cpu_us_per_row": (round((steady[-1].publisher_cpu - steady[0].publisher_cpu) / rows * 1e6, 3)
                                         if rows else None),
            "publisher_waited": round(waited, 3),      # of the window
            "paced_by": "tradecraft" if waited > 0 or taken < published else "publisher",
            # rows published and not yet taken, as the window starts and ends
            "backlog_rows": [s.published - s.rows for s in (steady[0], steady[-1])],
            # what describe saw: the last complete checkpoint's id at the window's ends
            "checkpoint_ids": [steady[0].checkpoint, steady[-1].checkpoint]}


async def finished(db: hallelujah.Database, tradecraft: str) -> dict[str, Any]:
    """The tradecraft's describe once it is no longer running (its streams ended, its backlog drained)."""
    while True:
        info = (await db.describe(tradecraft))["tradecrafts"][0]
        if info["state"] != "running":
            if info["state"] != "finished":
                raise SystemExit(f"{tradecraft}: {info['state']}: {info['error']}")
            return info
        await trio.sleep(0.2)


async def output_of(db: hallelujah.Database, feed: Feed, rows: int, passes: int) -> tuple[Any, Any]:
    """(what came out, what `passes` passes should give): clicks' rows by hour, read back (they
    are few); the joins' row counts."""
    if feed.workload != "clicks":
        return rows, feed.expected * passes
    t = await db.read(f"{feed.workload}/{feed.output}")
    hour = pc.divide(t["window_start"].cast(pa.int64()), 3_600_000_000).to_pylist()
    got = sorted(map(list, zip(hour, *(t[c].to_pylist() for c in ("users", "clicks", "impressions")))))
    step = feed.shift // HOUR_S
    return got, sorted([h + k * step, *rest] for k in range(passes) for h, *rest in feed.expected)


def slope(at: list[float], rows: list[int]) -> float:
    """Rows per second: the least-squares slope of rows over time (workers report every 0.5 s,
    so a line through every sample, not the two ends, is what the window's rate is)."""
    if len(at) < 2:
        raise SystemExit(f"{len(at)} samples in the measured window: too few for a rate")
    t = np.array(at)
    return float(np.polyfit(t - t[0], np.array(rows, dtype=float), 1)[0])


def checkpoints_in(log: Path, window: dict[str, float]) -> dict[str, Any]:
    """Completed checkpoints (the daemon's `checkpoint_complete` lines): all of the run's, those in
    the measured window, their mean duration and size; abandoned or not kept ones. The workers
    share the log file, so a line may hold the end of another: the events are found, not split."""
    done, other = [], {"abandoned": 0, "not_kept": 0}
    for found in CHECKPOINT_EVENT.finditer(log.read_text()):
        event = json.loads(found.group(0))
        if event["event"] == "checkpoint_complete":
            done.append((datetime.fromisoformat(event["timestamp"]).timestamp(), event["seconds"], event["bytes"]))
        else:
            other[event["event"].removeprefix("checkpoint_")] += 1
    inside = [d for d in done if window["wall_start"] <= d[0] <= window["wall_end"]]
    return {"completed": len(done), "in_window": len(inside),
            "mean_seconds": round(statistics.fmean(d[1] for d in inside), 4) if inside else None,
            "max_seconds": round(max(d[1] for d in inside), 4) if inside else None,
            "mean_bytes": round(statistics.fmean(d[2] for d in inside)) if inside else None, **other}


def one_run(feed: Feed, data: Path, every: float, a: argparse.Namespace) -> dict[str, Any]:
    """A fresh congregation (checkpoints every `every` s, 0: none) fed to a steady state and measured."""
    with tempfile.TemporaryDirectory(prefix="hbench-cp-") as tmp:
        log = Path(tmp) / "congregation.log"
        with log.open("a") as err:     # appended: the workers share it
            proc = psutil.Popen(
                [sys.executable, "-m", "congregation", "--data-dir", str(Path(tmp) / "data"), "--listen",
                 "127.0.0.1:0", "--workers", str(a.workers), "--checkpoint-every", str(every),
                 "--source-root", str(data)],
                stdout=subprocess.PIPE, stderr=err, text=True,
                env={**os.environ, "HALLELUJAH_LOG_LEVEL": os.environ.get("HALLELUJAH_LOG_LEVEL", "info")})
            try:
                assert proc.stdout is not None
                line = proc.stdout.readline()
                if " ready at " not in line:
                    raise SystemExit(f"congregation did not start: {line!r}; {log.read_text()[-2000:]}")
                result = trio.run(drive, line.split(" ready at ")[1].split()[0], proc, feed, a)
            except trio.TooSlowError:
                proc.send_signal(signal.SIGUSR1)      # every process dumps its tasks and datastreams
                time.sleep(5)
                kept = Path(a.logs or tempfile.gettempdir()) / f"hbench-cp-stall-{feed.workload}-{every:g}.log"
                kept.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(log, kept)
                raise SystemExit(f"{feed.workload}, checkpoints every {every:g} s: no end after {a.deadline:g} s "
                                 f"(a stall: the congregation's log, with its dump, is {kept})") from None
            finally:
                proc.terminate()
                proc.wait(timeout=30)
        if a.logs:
            Path(a.logs).mkdir(parents=True, exist_ok=True)
            shutil.copy(log, Path(a.logs) / f"{feed.workload}-every-{every:g}-{time.strftime('%H%M%S')}.log")
        return {"checkpoints": checkpoints_in(log, result["window"]), **result,
                "load": round(os.getloadavg()[0], 2)}


# --- the sitting ----------------------------------------------------------------------------

def modes(every: float) -> dict[str, float]:
    return {f"every {every:g} s": every, "none": 0.0}


def sitting(a: argparse.Namespace) -> dict[str, Any]:
    """Every workload in both modes, `--rounds` times, the first mode alternating between rounds."""
    data = Path(a.data)
    ensure_data(data, a.n)
    feeds = {w: feed_of(w, data) for w in a.workload}
    for feed in feeds.values():
        against_duckdb(feed, data)
    runs = []
    before = os.getloadavg()
    for r in range(a.rounds):
        for workload, feed in feeds.items():
            order = list(modes(a.every).items())
            for mode, every in (order if r % 2 == 0 else order[::-1]):
                run = {"workload": workload, "mode": mode, "round": r + 1, "checkpoint_every": every,
                       **one_run(feed, data, every, a)}
                run.pop("window")
                run["rows_per_s"] = round(run["rows_per_s"])
                runs.append(run)
                print(json.dumps({k: v for k, v in run.items() if k not in ("got", "expected")}), flush=True)
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit(),
            "command": " ".join(["python -m bench.checkpoint_cost", *sys.argv[1:]]),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "n": a.n, "seconds": a.seconds, "warmup": a.warmup, "rounds": a.rounds, "workers": a.workers,
            "load": {"before": round(before[0], 2), "after": round(os.getloadavg()[0], 2),
                     "during": [r["load"] for r in runs]},
            "runs": [{k: v for k, v in r.items() if k not in ("got", "expected")} for r in runs],
            "summary": summary(runs, a.every)}


def summary(runs: list[dict[str, Any]], every: float) -> list[dict[str, Any]]:
    """Per workload: each mode's median rate and CPU per row, with their spread; the cost — one
    minus the ratio of the rates of a round's two runs (its median, least and greatest over the
    rounds) — and the CPU per row's rise the same way; the checkpoints of the checkpointed runs."""
    out = []
    on, off = modes(every)
    for workload in dict.fromkeys(r["workload"] for r in runs):
        mine = [r for r in runs if r["workload"] == workload]
        rates = {m: [r["rows_per_s"] for r in mine if r["mode"] == m] for m in (on, off)}
        cpu = {m: [r["cpu_us_per_row"] for r in mine if r["mode"] == m] for m in (on, off)}
        cps = [r["checkpoints"] for r in mine if r["mode"] == on]
        out.append({
            "workload": workload,
            **{m: {**spread(rates[m]), "cpu_us_per_row": spread(cpu[m])} for m in (on, off)},
            "cost": spread([1 - a / b for a, b in zip(rates[on], rates[off])]),
            "cpu_rise": spread([a / b - 1 for a, b in zip(cpu[on], cpu[off])]),
            "checkpoints_in_window": [c["in_window"] for c in cps],
            "checkpoint_mean_seconds": _mean([c["mean_seconds"] for c in cps]),
            "checkpoint_mean_bytes": _mean([c["mean_bytes"] for c in cps]),
            "none_checkpoints": sum(r["checkpoints"]["completed"] for r in mine if r["mode"] == off),
            "publisher_waited": statistics.median(r["publisher_waited"] for r in mine),
            "paced_by": {p: sum(r["paced_by"] == p for r in mine) for p in ("tradecraft", "publisher")},
            "match": all(r["match"] for r in mine)})
    return out


def spread(values: list[float]) -> dict[str, float]:
    """Median, least, greatest, and half the range over the median (the ± of the table)."""
    mid = statistics.median(values)
    return {"median": round(mid, 4), "min": round(min(values), 4), "max": round(max(values), 4),
            "spread": round((max(values) - min(values)) / 2 / abs(mid), 4) if mid else None}


def _mean(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return round(statistics.fmean(got), 4) if got else None


def table(result: dict[str, Any], every: float) -> list[str]:
    """The summary as a Markdown table: rates, their cost, CPU per row, the checkpoints taken."""
    on, off = modes(every)
    lines = [(f"| workload | {off}: rows/s | {on}: rows/s | cost (range over rounds) | CPU µs/row, {off} → {on} "
              f"| checkpoints in each window | mean duration | mean size | paced by | output |"),
             "|---|---:|---:|---:|---:|---|---:|---:|---|---|"]
    for s in result["summary"]:
        cost, rise = s["cost"], s["cpu_rise"]
        waited = s["publisher_waited"]
        lines.append(
            f"| {s['workload']} | {_rate(s[off])} | {_rate(s[on])} "
            f"| {cost['median'] * 100:+.1f} % ({cost['min'] * 100:+.1f} to {cost['max'] * 100:+.1f}) "
            f"| {s[off]['cpu_us_per_row']['median']:.2f} → {s[on]['cpu_us_per_row']['median']:.2f} "
            f"({rise['median'] * 100:+.1f} %, {rise['min'] * 100:+.1f} to {rise['max'] * 100:+.1f}) "
            f"| {', '.join(map(str, s['checkpoints_in_window']))} "
            f"| {_ms(s['checkpoint_mean_seconds'])} | {_bytes(s['checkpoint_mean_bytes'])} "
            f"| {_paced(s['paced_by'])} (publisher waited {waited * 100:.0f} %) "
            f"| {'MATCH' if s['match'] else 'MISMATCH'} |")
    return lines


def _paced(runs: dict[str, int]) -> str:
    return ", ".join(f"{who} in {n} run{'s' * (n > 1)}" for who, n in runs.items() if n)


def _rate(s: dict[str, Any]) -> str:
    return f"{s['median']:,.0f} (±{(s['spread'] or 0) * 100:.1f} %)"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _bytes(n: float | None) -> str:
    return "-" if n is None else f"{n / 1024:,.1f} kB"


def section(result: dict[str, Any], every: float) -> list[str]:
    """CHECKPOINTS.md's section: the table, how it was made, and the load it was made under."""
    load = result["load"]
    how = (f"`{result['command']}` on {result['date']}, commit {result['commit']}, {result['machine']}; "
           f"{result['workers']} workers, N = {result['n']:,} rows a pass, {result['rounds']} round{'s' * (result['rounds'] > 1)} of "
           f"{result['warmup']:g} s warm-up and {result['seconds']:g} s measured per run. Load average (1 min) "
           f"{load['before']} before, {load['after']} after, {min(load['during'])}–{max(load['during'])} at "
           f"the runs' ends.")
    method = ("Each run is a fresh congregation whose pushed streams get the bench's data pass after pass at "
              "full speed (each pass moved past the last in event time), at most a pass (or 2 M rows) "
              "more than what the tradecraft has taken. The rate is the lesser of two slopes "
              "through the samples of the measured window: the rows the stateful Jahs take (the aggregate's, "
              "the stream join's, from `describe`) and the rows acknowledged to the publisher. In a steady "
              "state they are one; where a warm-up's backlog still drains or builds, the lesser is what the "
              "pipeline sustains. The modes alternate within each round, and the first one alternates between rounds. "
              "± is half the range over the rounds. The cost is 1 − (the checkpointed run's rate ÷ the other's) "
              "within a round: its median and range over the rounds. CPU µs/row is the user and system time "
              "of the congregation's processes over the rows taken in the window (less sensitive to other "
              "load on the machine than the rate), compared the same way. *Paced by*: the tradecraft when the "
              "publisher had to wait for it during the window or the rows published and not yet taken grew, "
              "else the publish path (the congregation's log, validation and fsync: then the rate is what "
              "publishing allows, and a checkpoint's cost shows only as far as it slows that path). Checkpoints are counted "
              "from the daemon's `checkpoint_complete` lines. The output of every run is checked against "
              "pyarrow on the input: the passes × one pass's rows, and clicks' hourly rows in full.")
    return [SECTION, "", how, "", method, "", *table(result, every), ""]


def results_section(result: dict[str, Any], every: float) -> list[str]:
    """The short section RESULTS.md may hold: each workload's cost, and where the rest is."""
    on, _ = modes(every)
    costs = "; ".join(f"{s['workload']} {s['cost']['median'] * 100:+.1f} % ({s['cost']['min'] * 100:+.1f} to "
                      f"{s['cost']['max'] * 100:+.1f}), CPU per row {s['cpu_rise']['median'] * 100:+.1f} %"
                      for s in result["summary"])
    text = (f"Throughput lost with checkpoints {on} against none, in a congregation's steady state "
            f"(`{result['command']}`, {result['date']}, commit {result['commit']}, {result['rounds']} A/B "
            f"round{'s' * (result['rounds'] > 1)} of {result['seconds']:g} s): {costs}. The table, the checkpoints taken and the method: "
            f"[CHECKPOINTS.md](CHECKPOINTS.md#checkpoint-cost-steady-state).")
    return [RESULTS_SECTION, "", text, ""]


def kept_section(path: Path, heading: str = RESULTS_SECTION) -> list[str]:
    """A section of `path` as it is, from its heading to the next `## ` one (for a writer of the
    rest of the file to keep it); none if it is not there."""
    lines = path.read_text().splitlines() if path.exists() else []
    if heading not in lines:
        return []
    start = lines.index(heading)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start:end]


def write_section(path: Path, lines: list[str]) -> None:
    """Replace the section `lines` heads in `path` (up to the next `## ` heading), or add it at the end."""
    old = path.read_text().splitlines() if path.exists() else []
    kept = kept_section(path, lines[0])
    if kept:
        start = old.index(lines[0])
        new = old[:start] + lines + old[start + len(kept):]
    else:
        new = old + ([""] if old and old[-1] else []) + lines
    path.write_text("\n".join(new).rstrip("\n") + "\n")


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True,
                          check=False)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "bench", "congregation", "jah", "hallelujah"],
                           cwd=HERE.parent, capture_output=True, text=True, check=False).stdout.strip()
    return (done.stdout.strip() or "unknown") + (" (with uncommitted changes)" if dirty else "")


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.checkpoint_cost", description=__doc__.splitlines()[0])
    ap.add_argument("--workload", nargs="+", choices=list(COUNTED), default=["clicks", "reqresp"])
    ap.add_argument("--seconds", type=float, default=60.0, help="measured steady state of each run")
    ap.add_argument("--warmup", type=float, default=10.0, help="seconds left out from the first row consumed")
    ap.add_argument("--rounds", type=int, default=3, help="A/B pairs per workload")
    ap.add_argument("--every", type=float, default=1.0, help="seconds between checkpoints in the checkpointed mode")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sample", type=float, default=0.5, help="seconds between describe samples")
    ap.add_argument("--n", type=int, default=2_000_000, help="events of the generated data (one pass)")
    ap.add_argument("--data", default=os.environ.get("HBENCH_DATA", "/tmp/hbench-data"))
    ap.add_argument("--results", help="write DIR/checkpoint_cost.json")
    ap.add_argument("--deadline", type=float, default=DEADLINE, help="seconds a run may take in all")
    ap.add_argument("--logs", help="keep each run's congregation log in DIR")
    ap.add_argument("--write", action="store_true", help=f"replace bench/CHECKPOINTS.md's '{SECTION}'")
    a = ap.parse_args()
    for name in ("seconds", "warmup", "every", "sample"):
        if not 0 < getattr(a, name) < 3600:
            ap.error(f"--{name} {getattr(a, name)}: must be more than 0 and less than 3600")
    for name, low, high in (("rounds", 1, 100), ("n", 1, 10**9), ("workers", 1, 64), ("deadline", 1, 86400)):
        if not low <= getattr(a, name) <= high:
            ap.error(f"--{name} {getattr(a, name)}: must be {low:,} to {high:,}")
    compile_bytecode()
    result = sitting(a)
    lines = table(result, a.every)
    print("\n".join(lines))
    if a.results:
        Path(a.results).mkdir(parents=True, exist_ok=True)
        (Path(a.results) / "checkpoint_cost.json").write_text(json.dumps(result, indent=1))
        # RESULTS.md's short section, for whoever writes RESULTS.md (bench/__main__.py) to take in
        (Path(a.results) / "checkpoint_cost_results.md").write_text("\n".join(results_section(result, a.every)))
    if a.write:
        write_section(HERE / "CHECKPOINTS.md", section(result, a.every))
    if not all(s["match"] for s in result["summary"]):
        raise SystemExit("an output did not match pyarrow's reference: see `match` in the runs above")


if __name__ == "__main__":
    main()
