"""The Window Interface's screens against a real congregation: what they show is compared with
figures computed here with pyarrow from the rows the test published."""
from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import trio
import urwid

from hallelujah import Database
from jah.streams import CREDITS
from sheets.analytic import TAIL_ROWS
from tests.conftest import Daemon
from tests.integration.helpers import wait_state
from tests.sheets.screen import SIZES, Driver, driven, line_of, row

DOCUMENT = {"tradecraft": "tc", "analytics": [
    {"name": "x", "kind": "stream", "schema": {"id": "int64", "v": "float64"}},
    {"name": "y", "kind": "transform", "input": "x", "where": "v >= 50"}]}
SCHEMA = pa.schema([("id", pa.int64()), ("v", pa.float64())])


def rows(start: int, n: int) -> pa.Table:
    rng = np.random.default_rng(start)
    return pa.table({"id": np.arange(start, start + n, dtype=np.int64),
                     "v": rng.integers(0, 100, n).astype(np.float64)}, schema=SCHEMA)


def mebibytes(shown: str) -> float:
    """A memory size as the screen shows it ("120.7MiB") in MiB."""
    value = re.fullmatch(r"([\d.]+)(KiB|MiB|GiB)", shown)
    assert value is not None, shown
    return float(value[1]) * {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024}[value[2]]


def resident(pids: list[int]) -> float:
    """MiB resident of the processes `pids`, as /proc/PID/status says (VmRSS, in kB)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return total / 1024


def kept(table: pa.Table) -> pa.Table:
    return table.filter(pc.greater_equal(table["v"], 50))


async def started(db, *tables: pa.Table) -> pa.Table:
    await db.submit(DOCUMENT)
    for t in tables:
        await db.publish("tc/x", t)
    return pa.concat_tables(tables)


@asynccontextmanager
async def showing_tc(congregation, n: int = 10, **more) -> AsyncIterator[tuple[Database, Driver]]:
    """tc running with `n` rows published, and a Window Interface whose list shows them."""
    db = congregation.db()
    with trio.fail_after(60):
        out = kept(await started(db, rows(0, n))).num_rows
        async with driven(db, **more) as wi:
            await wi.until(lambda s: line_of(s, "tc") is not None and row(s, "tc")[4] == f"{out:,}", "tc's rows")
            yield db, wi


@pytest.mark.parametrize("size", SIZES)
async def test_tradecrafts_screen_shows_totals_and_rates(congregation, size):
    db = congregation.db()
    with trio.fail_after(60):
        published = await started(db, rows(0, 1_000))
        out = kept(published).num_rows
        # (a refresh each 0.5 s: a moving rate stays on screen long enough to be seen under load)
        async with driven(db, every=0.5) as wi:
            shown = await wi.until(lambda s: "tc " in s and f" {out:,} " in s, "tc's rows", size=size)
            assert row(shown, "tradecraft")[:6] == ["tradecraft", "state", "rows", "in", "in/s", "rows"]
            assert row(shown, "tc")[:3] == ["tc", "running", "1,000"]
            assert row(shown, "tc")[4] == f"{out:,}"
            assert "congregation" in shown.split("\n")[0] and "2 workers" in shown.split("\n")[0]
            # more rows: the rate is seen moving, then the totals settle on the new figures
            more = rows(1_000, 3_000)
            await db.publish("tc/x", more)
            total_out = out + kept(more).num_rows
            moving = await wi.until(lambda s: row(s, "tc")[3] not in ("0/s", "-"), "a rate", size=size)
            assert row(moving, "tc")[3].endswith("/s")
            shown = await wi.until(lambda s: row(s, "tc")[2:6] == ["4,000", "0/s", f"{total_out:,}", "0/s"],
                                   "the new totals at rest", size=size)
            # tc's screen: the last minute's rates as sparklines, the flow peak marked "#"
            wi.keys("enter")
            shown = wi.screen(size)
            for label in ("in", "out"):
                spark, word, peak = row(shown, label)[1:]
                assert "#" in spark and spark[0] == "_" and spark[-1] == "_" and word == "max", shown
                assert peak.endswith("/s") and peak != "0/s"


async def test_drill_down_to_jahs_and_an_analytic_output(congregation):
    db = congregation.db()
    with trio.fail_after(60):
        published = await started(db, rows(0, 2_000))
        expected = kept(published)
        out = expected.num_rows
        async with driven(db) as wi:
            await wi.until(lambda s: f" {out:,} " in s, "tc's rows")
            wi.keys("enter")
            for size in SIZES:
                # (a Jah's figures come with its worker's next report; at 80 columns the role
                # is left out, a Jah's name says it)
                wide = size[0] > 80

                def jah(s: str, name: str, wide: bool = wide) -> list[str]:
                    """The Jah's words without its role (shown, and checked, only when wide)."""
                    words = row(s, name)
                    if wide:
                        assert words[1] == name, s
                        return words[:1] + words[2:]
                    return words
                shown = await wi.until(lambda s: "transform " in s and jah(s, "transform")[2] not in ("0", "-"),
                                       "the Jahs' figures", size=size)
                assert "tradecrafts > tc" in shown
                worker = jah(shown, "transform")[1]
                assert worker in ("0", "1")
                assert jah(shown, "transform")[2:4] == ["2,000", f"{out:,}"]
                assert jah(shown, "logsource")[1:4] == [worker, "0", "2,000"]     # a chain: one worker
                assert jah(shown, "sink")[1:4] == [worker, f"{out:,}", "0"]
                assert row(shown, "y")[1:] == (["transform", "output"] if wide else ["output"])
            # the analytic y: rows are x, x/logsource, y, ...
            wi.keys("g", "j", "j", "enter")
            tail = expected.slice(out - TAIL_ROWS)
            shown = await wi.until(lambda s: f"({TAIL_ROWS} of {out:,}, following)" in s, "y's last rows")
            assert "tradecrafts > tc > y" in shown
            assert row(shown, "id")[:2] == ["id", "int64"] and row(shown, "v") == ["v", "float64"]
            assert row(shown, "y")[1:] == [f"{out:,}", "no"]
            assert row(shown, "y.rejected")[1:] == ["0", "no"]
            big = wi.screen((160, 48))      # all the last rows fit the bigger screen
            for r in tail.to_pylist():
                assert row(big, str(r["id"])) == [str(r["id"]), f"{r['v']:g}"]
            wi.keys("esc")
            assert "transform " in wi.screen() and "tradecrafts > tc\n" in wi.screen() + "\n"
            wi.keys("esc")
            assert row(wi.screen(), "congregations") == ["congregations", ">", "tradecrafts"]
            wi.keys("esc")                   # the top: the congregations, each with its workers
            for size in SIZES:
                shown = wi.screen(size)
                assert row(shown, "congregations") == ["congregations"]
                # 2 workers; 4 Jahs in them (x's log source, y's transform and its two sinks:
                # the congregation runs none); 1 tradecraft
                assert row(shown, "vm")[1:6] == [congregation.address, "up", "2", "4", "1"]
                workers = [line.split() for line in shown.split("\n") if line.strip().startswith("worker ")]
                assert [w[:2] for w in workers] == [["worker", "0"], ["worker", "1"]], shown
                # each pid shown is a process of the congregation's own session
                assert all(os.getsid(int(w[2])) == congregation.proc.pid for w in workers), shown
                # CPU (once two answers came) and resident memory of each worker, and of them all
                # with the congregation's own process, against what /proc says of those pids
                shown = await wi.until(lambda s: row(s, "vm")[6].endswith("%"), "the congregation's CPU", size=size)
                workers = [line.split() for line in shown.split("\n") if line.strip().startswith("worker ")]
                pids = [int(w[2]) for w in workers]
                for w in workers:
                    assert w[4].endswith("%") and 0 <= int(w[4][:-1]) <= 200, shown
                    assert abs(mebibytes(w[5]) - resident([int(w[2])])) <= 0.25 * resident([int(w[2])]), shown
                everything = resident([congregation.proc.pid, *pids])
                assert abs(mebibytes(row(shown, "vm")[7]) - everything) <= 0.25 * everything, shown
            wi.keys("esc")                   # Esc at the top stays there
            assert row(wi.screen(), "congregations") == ["congregations"]
            wi.keys("j", "enter")            # a worker's row opens its congregation's tradecrafts
            assert "congregations > tradecrafts" in wi.screen() and line_of(wi.screen(), "tc") is not None


@pytest.mark.parametrize("read_all", [200_000, 100])
async def test_an_analytic_follows_its_output(congregation, read_all):
    """Its last rows are read from the start and followed; an output over `read_all` rows is
    followed from when the screen opens, saying how many rows it did not read."""
    db = congregation.db()
    with trio.fail_after(60):
        first = await started(db, rows(0, 500))
        out = kept(first).num_rows
        async with driven(db, read_all=read_all) as wi:
            await wi.until(lambda s: f" {out:,} " in s, "tc's rows")
            wi.keys("enter", "G", "enter")
            if read_all > out:
                await wi.until(lambda s: f"({TAIL_ROWS} of {out:,}, following)" in s, "y's last rows")
                seen = first
            else:
                await wi.until(lambda s: f"(0 of the rows since opened ({out:,} before not read), following)" in s,
                               "y followed from now")
                seen = first.slice(first.num_rows)
            for start in (500, 700):       # rows published while the screen is shown
                more = rows(start, 200)
                seen = pa.concat_tables([seen, more])
                await db.publish("tc/x", more)
                expected = kept(seen)
                shown = await wi.until(lambda s, e=expected: f"({TAIL_ROWS} of {e.num_rows:,}" in s
                                       or f"({TAIL_ROWS} of the rows since opened" in s and
                                       line_of(s, str(e["id"][-1].as_py())) is not None,
                                       "the new rows", size=(160, 48))
                for r in expected.slice(expected.num_rows - TAIL_ROWS).to_pylist():
                    assert row(shown, str(r["id"])) == [str(r["id"]), f"{r['v']:g}"]
            wi.keys("esc")                  # leaving the screen stops following: no task left behind
            await trio.sleep(0.3)
            assert [t.name for t in wi.app.nursery.child_tasks] == ["sheets.feed.Feed.run"]


async def test_cancel_asks_first_then_cancels(congregation):
    async with showing_tc(congregation) as (db, wi):
        wi.keys("c")
        assert "Cancel tradecraft tc?" in wi.screen()
        wi.keys("n")
        assert "not cancelled" in wi.screen() and "Cancel tradecraft" not in wi.screen()
        assert {t["name"]: t["state"] for t in await db.list()} == {"tc": "running"}
        wi.keys("c")
        assert "Cancel tradecraft tc?" in wi.screen((160, 48))
        wi.keys("y")
        await wi.until(lambda s: "cancelled tc" in s, "the cancel's answer")
        assert [t for t in await db.list() if t["state"] == "running"] == []
        await wi.until(lambda s: "tc " not in s.split("\n", 3)[3], "tc gone from the list")


async def test_a_cancel_the_congregation_refuses_says_why(congregation):
    """Someone else cancels it between the question and the answer: the refusal is shown, as
    `hallelujah cancel` would give it."""
    async with showing_tc(congregation) as (db, wi):
        wi.keys("c")
        assert "its retained outputs are deleted" in wi.screen()
        await db.cancel("tc")
        wi.keys("y")
        shown = await wi.until(lambda s: "cancel tc refused:" in s, "the refusal", size=(160, 48))
        assert 'no tradecraft "tc"' in shown


async def test_read_only_refuses_every_update(congregation, tmp_path):
    pq.write_table(rows(0, 5), tmp_path / "more.parquet")
    (tmp_path / "other.json").write_text(json.dumps({**DOCUMENT, "tradecraft": "other"}))
    async with showing_tc(congregation, read_only=True) as (db, wi):
        assert "read-only" in wi.screen().split("\n")[0]
        wi.keys("enter", "c")
        shown = wi.screen()
        assert "read-only: cancel of tc refused" in shown and "Cancel tradecraft" not in shown
        wi.keys("y")
        for line, said in [(f"submit {tmp_path / 'other.json'}", f"submit of {tmp_path / 'other.json'}"),
                           (f"publish tc/x {tmp_path / 'more.parquet'}", f"publish of {tmp_path / 'more.parquet'} into tc/x"),
                           ("cancel tc", "cancel of tc")]:
            wi.command(line)
            await trio.sleep(0.2)
            assert wi.message == f"read-only: {said} refused (started with --read-only)"
            assert "confirm" not in wi.screen()
            wi.keys("y")
        await trio.sleep(0.5)
        assert {t["name"]: t["state"] for t in await db.list()} == {"tc": "running"}
        assert row(wi.screen(), "tc")[3] == "10"


async def test_help_moves_and_quit(congregation):
    async with showing_tc(congregation) as (_, wi):
        wi.keys("enter")
        table = wi.app.screen.table
        await wi.until(lambda s: "transform " in s, "the Jahs")
        wi.keys("G")
        assert table.focused() == ("y", "transform")
        wi.keys("k")
        assert table.focused() == ("y", "sink")
        wi.keys("g")
        assert table.focused() == ("x", "")
        wi.keys("j")
        assert table.focused() == ("x", "logsource")
        wi.keys("?")
        shown = wi.screen()
        assert "help" in shown and "cancel this tradecraft" in shown and "quit" in shown
        wi.keys("esc")
        assert "help" not in wi.screen() and "tradecrafts > tc" in wi.screen()
        with pytest.raises(urwid.ExitMainLoop):
            wi.keys("q")


async def test_slash_filters_the_rows(congregation):
    async with showing_tc(congregation) as (db, wi):
        await db.submit({**DOCUMENT, "tradecraft": "other"})
        await wi.until(lambda s: line_of(s, "other") is not None, "other")
        wi.keys("/", "O", "t")                  # filters as it is typed, in any case
        shown = wi.screen()
        assert line_of(shown, "tc") is None and row(shown, "other")[1] == "running"
        assert shown.split("\n")[-1] == "/Ot"
        wi.keys("h", "enter")
        assert "tradecrafts [/oth]" in wi.screen() and line_of(wi.screen(), "tc") is None
        await trio.sleep(0.5)                   # refreshes keep the filter
        assert line_of(wi.screen(), "tc") is None and line_of(wi.screen(), "other") is not None
        wi.keys("enter")                        # the one row left is under the cursor
        assert "tradecrafts [/oth] > other" in wi.screen()
        wi.keys("esc", "esc")                   # back, then the filter dropped
        shown = wi.screen()
        assert line_of(shown, "tc") is not None and line_of(shown, "other") is not None
        assert "[/" not in shown
        wi.keys("/", "x", "esc")                # Esc while typing drops it too
        assert line_of(wi.screen(), "tc") is not None and "[/" not in wi.screen()
        wi.keys("g", "enter", "G", "enter", "/")  # an analytic's page has nothing to filter
        assert "nothing to filter here" in wi.screen()


async def test_event_log_shows_a_restart(congregation):
    """Kill the worker a Jah runs on: the congregation records a restart, and `E` shows it."""
    async with showing_tc(congregation) as (db, wi):
        info = await db.describe("tc")
        worker = next(j["worker"] for a in info["tradecrafts"][0]["analytics"] for j in a["jahs"]
                      if j["worker"] >= 0)
        pid = next(w["pid"] for w in info["workers"] if w["worker"] == worker)
        wi.keys("E")
        assert row(wi.screen(), "at")[:3] == ["at", "tradecraft", "event"]
        os.kill(pid, signal.SIGKILL)
        shown = await wi.until(lambda s: " restart " in s, "the restart event")
        assert f"worker {worker} (pid {pid}) lost" in shown
        assert "tradecrafts > events" in shown
        await wait_state(db, "tc", "running")


async def test_finished_and_failed_tradecrafts_say_so(congregation, tmp_path):
    """A file source that ends: its output's total stays after its Jahs are gone. A file whose
    fields are not the declared ones: failed, with the reason on the row."""
    db = congregation.db()
    n = 500
    (tmp_path / "ok.csv").write_text("id,v\n" + "".join(f"{i},{i % 100}\n" for i in range(n)))
    (tmp_path / "bad.csv").write_text("id,b\n1,2\n")
    expected = kept(pa.table({"id": pa.array(range(n), pa.int64()),
                              "v": pa.array([float(i % 100) for i in range(n)])})).num_rows
    with trio.fail_after(60):
        await db.submit({"tradecraft": "done", "analytics": [
            {"name": "x", "kind": "stream", "schema": {"id": "int64", "v": "float64"},
             "source": {"path": str(tmp_path / "ok.csv")}},
            {"name": "y", "kind": "transform", "input": "x", "where": "v >= 50"}]})
        await db.submit({"tradecraft": "broken", "analytics": [
            {"name": "x", "kind": "stream", "schema": {"id": "int64", "a": "int64"},
             "source": {"path": str(tmp_path / "bad.csv")}}]})
        await wait_state(db, "done", "finished")
        await wait_state(db, "broken", "failed")
        async with driven(db) as wi:
            for size in SIZES:
                shown = await wi.until(lambda s: "done " in s and "broken " in s, "both", size=size)
                # rows in: the exact count if describe keeps one for a finished file source, else "-",
                # never a made-up 0
                done = row(shown, "done")
                assert done[:2] == ["done", "finished"] and done[2] in ("-", f"{n}") and done[4] == f"{expected}"
                failed = row(shown, "broken")
                assert failed[1] == "failed" and "broken/x/source:" in failed, failed
            wi.keys("g", "j", "enter")      # the whole reason, wrapped, on the tradecraft's screen
            shown = wi.screen()
            assert "tradecrafts > broken" in shown
            assert 'field "b" is not in the schema (it has: id, a)' in " ".join(shown.split())
            wi.keys("esc", "g", "enter", "G", "enter")      # done's output y, which has ended
            shown = await wi.until(lambda s: f"({TAIL_ROWS} of {expected}, ended)" in s, "y's end")
            assert "tradecrafts > done > y" in shown
            wi.keys("esc", "g", "enter")    # x, a file source: it keeps only its rejected rows
            shown = wi.screen()
            assert "last rows of done/x (it retains no output)" in shown and row(shown, "x.rejected")[1] == "0"


TIMED = {"tradecraft": "tw", "analytics": [
    {"name": "ev", "kind": "stream", "time": "ts", "schema": {"ts": "timestamp[s]", "v": "float64"}},
    {"name": "w", "kind": "aggregate", "input": "ev", "time": "ts", "window": "1m",
     "measures": {"n": "count()"}, "output": True}]}
CHECKPOINT = re.compile(r"checkpoint every 0\.1s: last #(\d+) (\S+) ago, (\S+) in ([\d.]+)s")


@pytest.fixture
def checkpointing(tmp_path):
    daemon = Daemon(tmp_path / "data", extra=["--checkpoint-every", "0.1"]).start()
    yield daemon
    daemon.stop()


def seconds(shown: str) -> int:
    """A duration as the screen shows it (12s, 4m05s, 3h12m) in seconds."""
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", shown)
    assert parts is not None and shown, shown
    h, m, s = (int(p or 0) for p in parts.groups())
    return (h * 60 + m) * 60 + s


async def test_a_tradecraft_shows_credits_watermark_lag_and_checkpoints(checkpointing):
    """A stream with event times up to 40 s ago: each Jah past the source shows its watermark
    that far behind the wall clock; the header shows the last checkpoint (taken every 0.1 s)
    and, at some refresh, one in flight and the Jahs it waits for."""
    db = checkpointing.db()
    with trio.fail_after(60):
        await db.submit(TIMED)
        now = int(time.time())
        ts = pa.array(np.arange(now - 600, now - 40), pa.timestamp("s"))
        await db.publish("tw/ev", pa.table({"ts": ts, "v": np.ones(len(ts))}))
        newest = pc.max(ts).cast(pa.int64()).as_py()            # the watermark: the newest event time
        starts = pc.floor_temporal(ts, unit="minute").cast(pa.int64()).to_numpy()
        open_windows = len(set(starts[starts + 60 > newest].tolist()))   # not closed by the watermark
        closed = len(set(starts.tolist())) - open_windows
        async with driven(db) as wi:
            wi.command("tc tw")
            for size in SIZES:
                shown = await wi.until(lambda s: line_of(s, "aggregate") is not None
                                       and f"{len(ts):,}" in row(s, "aggregate")
                                       and CHECKPOINT.search(s) is not None, "the aggregate's rows", size=size)
                lag = time.time() - newest
                assert "flight" in row(shown, "analytic") and "lag" in row(shown, "analytic"), shown
                for name in ("aggregate", "merge", "sink"):
                    words = row(shown, name)
                    assert words[-1] == "running" and words[-2] != "-", shown
                    assert lag - 2 <= seconds(words[-2]) <= lag + 1, (name, lag, shown)
                    assert 0 <= int(words[-3]) <= 2 * CREDITS, shown  # two ends out at most, each within its credits
                assert row(shown, "logsource")[-2] == "-"            # a source has no input's watermark
                assert "blocked" not in shown                          # nothing waits at rest
                agg = row(shown, "aggregate")
                if size == (80, 24):                                   # the role and held columns left out
                    assert agg[1:4] in (["0", f"{len(ts):,}", str(closed)], ["1", f"{len(ts):,}", str(closed)])
                    assert "held" not in row(shown, "analytic") and "role" not in row(shown, "analytic")
                else:
                    assert agg[1:5] in (["aggregate", w, f"{len(ts):,}", str(closed)] for w in "01")
                    assert "held" in row(shown, "analytic") and "busy" in row(shown, "analytic")
                    assert agg[-4] == str(open_windows), shown
                first = CHECKPOINT.search(shown)
                assert first is not None and seconds(first[2]) < 10 and float(first[4]) < 10
            later = await wi.until(lambda s: (m := CHECKPOINT.search(s)) is not None and int(m[1]) > int(first[1]),
                                   "a later checkpoint")
            assert later
            flying = await wi.until(lambda s: "in flight" in s.split("analytic")[0], "a checkpoint in flight")
            assert re.search(r"#\d+ in flight [\d.]+s(, waits for (w/\w+(, )?)+)?", flying), flying


SLOW_MODULE = '''
import time


def slow(batch):
    """A quarter of a second per batch: the transform falls behind its source."""
    time.sleep(0.25)
    return batch
'''


async def test_a_source_ahead_of_a_slow_transform_shows_blocked(congregation, tmp_path):
    """60 batches published into a stream whose transform takes 0.25 s each: the log source uses
    up its datastream's credits and waits, so its row says "blocked", with no more batches in
    flight than the credits allow; the transform, which its sink keeps up with, is not blocked."""
    (tmp_path / "hj_wi_slow.py").write_text(SLOW_MODULE)
    db = congregation.db()
    with trio.fail_after(60):
        await db.submit({"tradecraft": "sl", "analytics": [
            {"name": "x", "kind": "stream", "schema": {"id": "int64", "v": "float64"}},
            {"name": "y", "kind": "transform", "input": "x", "udf": "hj_wi_slow:slow"}]}, base_dir=tmp_path)
        for i in range(60):
            await db.publish("sl/x", rows(i * 5, 5))
        async with driven(db) as wi:
            wi.command("tc sl")
            for size in SIZES:
                shown = await wi.until(lambda s: "blocked" in s, "a blocked source", size=size)
                source = row(shown, "logsource")
                assert source[-3] == "blocked" and 1 <= int(source[-4]) <= CREDITS, shown
                assert "blocked" not in row(shown, "transform"), shown
            await db.cancel("sl")
