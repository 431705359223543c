"""A stalled tradecraft (a join whose other stream's watermark never comes) says so on the list,
and its join's Jahs show the rows they hold."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import trio

from sheets.views import count, jah_label
from tests.conftest import Daemon
from tests.integration.test_stall import T0, waiting_join
from tests.sheets.screen import driven, line_of, row


async def test_a_stalled_tradecraft_says_so_and_what_it_holds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HALLELUJAH_STALL_AFTER", "2")
    daemon = Daemon(tmp_path / "data", 2, ["--source-root", str(tmp_path)]).start()
    try:
        db = daemon.db()
        early = pa.table({"ts": pa.array([T0 + 500], pa.timestamp("us")), "id": pa.array([0], pa.int64())})
        with trio.fail_after(60):
            await db.submit(waiting_join(tmp_path))
            await db.publish("waits/responses", early)
            async with driven(db) as wi:
                shown = await wi.until(lambda s: "stalled" in (line_of(s, "waits") or []), "stalled", timeout=30)
                words = row(shown, "waits")
                assert words[1] == "running" and words[-2] == "stalled" and words[-1].endswith("s"), words
                said = (await db.describe("waits"))["tradecrafts"][0]
                assert said["stalled_for"] is not None and said["stalled_for"] >= int(words[-1][:-1]) - 1
                # the join's Jahs hold rows while they wait: the screen shows what describe says
                held = {jah_label(j["id"], "pairs"): j["state_rows"]
                        for a in said["analytics"] if a["name"] == "pairs" for j in a["jahs"] if "state_rows" in j}
                assert sum(held.values()) > 0, said
                wi.keys("enter")
                # at 160 columns every column shows: held is the 8th (at 80 it is left out)
                shown = await wi.until(lambda s: line_of(s, "pairs") is not None, "the join's Jahs", size=(160, 48))
                assert "stalled" in shown.split("\n")[2]
                for jah, rows in held.items():
                    assert row(shown, jah)[7] == count(rows), (jah, shown)
    finally:
        daemon.stop()
