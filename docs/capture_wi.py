"""Write docs/wi.md: text captures of the Window Interface's main screens (80x24, and one at
160x48), taken from a real congregation with rows being published
(`.venv/bin/python docs/capture_wi.py`)."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import trio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sheets.app import App, text
from tests.conftest import Daemon, sandbox

DOCUMENT = {"tradecraft": "vitals", "analytics": [
    {"name": "readings", "kind": "stream", "time": "ts",
     "schema": {"ts": "timestamp[ms]", "patient": "int64", "pulse": "float64"}},
    # a pulse of exactly 120 divides by zero: that row goes to alerts.rejected, with the reason
    {"name": "alerts", "kind": "transform", "input": "readings", "where": "pulse >= 120",
     "derive": {"over": "100 / (pulse - 120)"}},
    {"name": "per_minute", "kind": "aggregate", "input": "readings", "time": "ts", "window": "1m",
     "group": ["patient"], "measures": {"beats": "count()", "top": "max(pulse)"}}]}


def readings(start: int, n: int) -> pa.Table:
    rng = np.random.default_rng(start)
    return pa.table({"ts": pa.array(np.arange(start, start + n, dtype=np.int64) * 10, pa.timestamp("ms")),
                     "patient": rng.integers(1, 40, n), "pulse": rng.normal(90, 15, n).round()})


async def capture(address: str) -> list[tuple[str, str, str]]:
    from hallelujah import Database
    db = Database([address])
    await db.submit(DOCUMENT)
    shots = []

    async def publish() -> None:
        for i in range(1_000):
            await db.publish("vitals/readings", readings(i * 2_000, 2_000))
            await trio.sleep(0.2)

    app = App(db, every=0.5)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(publish)
        await nursery.start(app.run)
        await trio.sleep(3)

        def shot(title: str, note: str, size: tuple[int, int] = (80, 24)) -> None:
            shots.append((title, note, text(app.widget, *size)))

        async def keys(*pressed: str, wait: float = 0.0) -> None:
            for key in pressed:
                app.widget.keypress((80, 24), key)
            await trio.sleep(wait)

        shot("Tradecrafts", "where it opens: every tradecraft of the congregation, its totals and rates")
        await keys("esc")
        shot("Congregations", "Esc: each congregation given (--at), up or down, and its workers")
        await keys("enter", "enter", wait=1.5)
        shot("A tradecraft's analytics and Jahs", "Enter, Enter: the tradecraft's analytics, each with its Jahs "
                                                   "(at 80 columns the role, held and busy columns are left out, and here the worker too)")
        shot("A tradecraft at 160x48", "the same at 160x48: every column", (160, 48))
        await keys(":", *"tc vitals/", "tab")
        shot("The command line", ": then `tc vitals/` and Tab: what the name completes to")
        await keys(*"alerts", "enter", wait=2)
        shot("An analytic", "Enter: its schema, retained logs, the last rows of its output and of its rejected "
                            "rows with their reasons (at 160x48)", (160, 48))
        await keys("G", "f", wait=1)
        shot("Paused", "G, then f: the last rows stay as they are while more come (f again follows them again)")
        await keys("f", ":", *"tc vitals/per_minute", "enter", wait=2)
        shot("An aggregate's open windows", ":tc vitals/per_minute: its open windows as `query` gives them")
        await keys("esc", "c")
        shot("Cancel asks first", "Esc, then c: y cancels, any other key keeps it")
        await keys("n", ":", *"publish vitals/readings readings.parquet", "enter", wait=1)
        shot("Publish asks first", ":publish vitals/readings readings.parquet: how many rows, into what")
        await keys("n", "?")
        shot("Help", "? lists the keys of the screen, the keys everywhere and the commands")
        nursery.cancel_scope.cancel()
    return shots


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        daemon = Daemon(Path(tmp) / "data", extra=[*sandbox(Path(tmp)), "--checkpoint-every", "1"]).start()
        pq.write_table(readings(10**9, 50_000), Path(tmp) / "readings.parquet")
        here = os.getcwd()
        os.chdir(tmp)              # (the file :publish names, as typed)
        try:
            shots = trio.run(capture, daemon.address)
        finally:
            os.chdir(here)
            daemon.stop()
    out = ["# The Window Interface (`hallelujah wi`)", "",
           "`hallelujah --at HOST:PORT wi [--read-only]` (or `python -m sheets.wi --at HOST:PORT`) shows",
           "what the client library answers, refreshed about once a second: congregations -> tradecrafts",
           "-> a tradecraft's analytics and Jahs -> an analytic. It opens on the first congregation's",
           "tradecrafts; Esc goes up to the congregations. When a congregation does not answer within",
           "2 s, the status line turns to `unreachable` (with the age of the last answer) and the last",
           "answer stays on screen; keys keep working. Log lines go to the file `$HALLELUJAH_WI_LOG`",
           "names, never under the screen.", "",
           "Keys: `Enter` open, `Esc` back, `j/k` down/up, `g/G` first/last row, `/` filter, `:` a",
           "command, `c` cancel a tradecraft (asks first), `E` event log, `?` help, `q` quit; a click",
           "selects a row.", "",
           "Commands (`Tab` completes a command, a tradecraft, a stream or a file name):",
           "- `:tc NAME[/ANALYTIC]` opens a tradecraft or one of its analytics;",
           "- `:submit FILE` submits a document (checked first, then asked about);",
           "- `:publish STREAM FILE [TABLE]` publishes a file's rows into a stream, asking first and",
           "  counting the rows acknowledged on the message line;",
           "- `:cancel [NAME]` cancels a tradecraft (asks first); `:q` quits;",
           "- `:split JAH` and `:merge JAH` split a dataset JOIN in two, or merge it with the other JOIN",
           "  of its split, now (`Tab` completes a JOIN's id; recorded as \"by hand\");",
           "- `:reload TRADECRAFT/ANALYTIC` loads a dataset's next version now, as its timer would:",
           "  stream rows joined after it use the new version (`hallelujah reload`);",
           "- `:congestion TRADECRAFT BUSY FOR` sets a tradecraft's congestion thresholds (e.g.",
           "  `:congestion gps 0.5 2s`) until the congregation restarts (`hallelujah congestion`).",
           "  Each of these asks first.", "",
           "Each update goes through the library call the CLI makes, and a refusal is the message",
           "`hallelujah` prints. `--read-only` refuses every update, saying so.", "",
           "An analytic's screen shows its schema and retained logs, the last rows of its output and of",
           "its `rejected` rows with their reasons (both followed as they come; `f` pauses them, the",
           "rows shown staying while more come, and `f` again follows again), an aggregate's open",
           "windows (`query`, asked once a second), a dataset join's JOINs with the partitions each holds",
           "and the datasets' versions, and the splits and merges with their reasons (what describe",
           "reports). The congregations screen shows each process's CPU (in percent of one core, between",
           "the last two answers) and resident memory, as describe reports them (`-` when it does not).", "",
           "A tradecraft's screen shows, per Jah: its worker (every Jah runs in one, the log's too), rows in",
           "and out, how busy it is, its backlog, the rows of state it holds, the batches it has sent",
           "that their receivers have not taken yet (`in flight`, what the credits bound: a socket's",
           "window, or the one batch a channel holds in a worker; `N blocked` when a send waits for a",
           "credit: its receiver is behind), and how far its",
           "watermark is behind the wall clock (`wm lag`: `12s`, `4m05s`, `3h12m`; `+3s` when event",
           "times run ahead of the clock; `-` before a watermark came). A watermark more than a day",
           "behind shows as its own UTC date (`1970-01-01` below): the stream replays history, where a",
           "lag says nothing about keeping up. At 80 columns the role (a Jah's name says it), the rows",
           "held, busy and the worker are left out, in that order, as long as a row does not fit; at",
           "160 every column shows. Its header says the last checkpoint (`last #ID AGE ago, SIZE in",
           "SECONDS`) and the one in flight, if any, with the Jahs it still waits for.", "",
           "Text captures against a congregation receiving 10,000 rows/s, made by `docs/capture_wi.py`.", ""]
    for title, note, screen in shots:
        out += [f"## {title}", "", note, "", "```", screen, "```", ""]
    (ROOT / "docs" / "wi.md").write_text("\n".join(out))


if __name__ == "__main__":
    main()
