"""The analytic screen against a real congregation: a transform's rejected rows with their
reasons, an aggregate's open windows, a dataset join's JOINs with their partitions and the
dataset's versions; checked against pyarrow computed here. (Splits and merges, which describe
reports only once congestion makes them, are checked as view models in test_congregation_views.)"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import trio

from sheets.analytic import TAIL_ROWS
from tests.sheets.screen import driven, line_of

TILES = 100


def events(start: int, n: int) -> pa.Table:
    i = np.arange(start, start + n)
    return pa.table({"ts": pa.array(i * 1000, pa.timestamp("us")), "tile": i % 120, "v": np.ones(n)})


def document(tmp_path) -> dict:
    pq.write_table(pa.table({"tile": np.arange(TILES, dtype=np.int64),
                             "country": [f"c{i % 7}" for i in range(TILES)]}), tmp_path / "tiles.parquet")
    return {"tradecraft": "t", "analytics": [
        {"name": "ev", "kind": "stream", "time": "ts", "schema": {"ts": "timestamp[us]", "tile": "int64", "v": "float64"}},
        {"name": "tiles", "kind": "ingest", "source": {"path": str(tmp_path / "tiles.parquet")}},
        {"name": "named", "kind": "join", "stream": "ev", "dataset": "tiles", "on": {"tile": "tile"},
         "fields": ["country"], "how": "left"},
        {"name": "ratio", "kind": "transform", "input": "ev", "derive": {"r": "10 / (v - v)"}, "output": True},
        {"name": "hourly", "kind": "aggregate", "input": "named", "time": "ts", "window": "1h",
         "group": ["country"], "measures": {"n": "count()"}}]}


def section(shown: str, title: str) -> list[list[str]]:
    """The rows (as words) of the page's section whose title starts with `title`, its header first."""
    lines = shown.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    block = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        block.append(line.split())
    return block


async def test_rejected_rows_open_windows_joins_and_versions(congregation, tmp_path):
    db = congregation.db()
    rows = events(0, 3_000)
    n = rows.num_rows
    with trio.fail_after(60):
        await db.submit(document(tmp_path))
        await db.publish("t/ev", rows)
        async with driven(db) as wi:
            # the transform rejects every row (v - v is 0): the last ones are shown with the reason
            wi.command("tc t/ratio")
            shown = await wi.until(lambda s: f"rejected rows of t/ratio ({TAIL_ROWS} of {n:,}, following)" in s,
                                   "ratio's rejected rows", size=(160, 48))
            block = section(shown, "rejected rows of t/ratio")
            assert block[0][:2] == ["reason", "ts"]
            for words, tile in zip(block[1:], rows["tile"].to_pylist()[-TAIL_ROWS:]):
                assert " ".join(words).startswith('operator "/" at position 3 failed: divide by zero') and \
                    words[-2:] == [str(tile), "1"], block
            wi.keys("G")                        # at 80x24 the page scrolls to its last rows
            assert line_of(wi.screen(), "operator") is not None
            assert wi.screen().split("\n")[-2].split()[-2:] == [str(rows["tile"][-1].as_py()), "1"]
            # the aggregate's open windows: a count per country of the rows joined with the tiles
            tiles = pq.read_table(tmp_path / "tiles.parquet")
            joined = rows.join(tiles, "tile", join_type="left outer")
            expected = {(r["country"] or "null", r["count_all"])
                        for r in joined.group_by("country").aggregate([([], "count_all")]).to_pylist()}
            wi.command("tc t/hourly")
            shown = await wi.until(lambda s: "open windows (" in s and {(w[-2], int(w[-1])) for w in section(
                s, "open windows (")[1:]} == expected, "the open windows' counts", size=(160, 48))
            assert section(shown, "open windows (")[0] == ["window_start", "window_end", "country", "n"]
            # the join: one JOIN holding the 256 partitions, as planned; the dataset loaded once
            wi.command("tc t/named")
            shown = await wi.until(lambda s: "JOINs" in s and len(section(s, "JOINs")) == 2, "the JOIN", size=(160, 48))
            assert section(shown, "JOINs")[0][:3] == ["jah", "wkr", "partitions"]
            assert section(shown, "JOINs")[1][0] == "join" and section(shown, "JOINs")[1][2:4] == ["0-255", "(256)"]
            assert section(shown, "dataset versions")[1][1:5] == ["tiles", "1", f"{TILES}", "start"]
            assert "scaling" not in shown            # no split nor merge: none shown
