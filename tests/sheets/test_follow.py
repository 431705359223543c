"""`f` on an analytic's screen, at 80x24 against a real congregation: paused, the last rows shown
stay as they were (while more arrive) and the screen says so; `f` again shows the last rows of
everything that came, compared with rows computed here with pyarrow."""
from __future__ import annotations

import pyarrow as pa
import trio

from sheets.analytic import TAIL_ROWS
from tests.sheets.screen import driven, line_of, row
from tests.sheets.test_screens import kept, rows, started


def shows_last(shown: str, expected) -> None:
    """The last TAIL_ROWS rows of `expected` are on the screen, each whole."""
    for r in expected.slice(expected.num_rows - TAIL_ROWS).to_pylist():
        assert row(shown, str(r["id"])) == [str(r["id"]), f"{r['v']:g}"], shown


def last_rows(shown: str) -> list[str]:
    """The lines of the section of the output's last rows, its title first."""
    lines = shown.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("last rows of"))
    return lines[start:start + TAIL_ROWS + 2]


async def test_f_pauses_and_resumes_following_the_output(congregation):
    db = congregation.db()
    with trio.fail_after(60):
        first = await started(db, rows(0, 500))
        before = kept(first)
        async with driven(db) as wi:
            await wi.until(lambda s: f" {before.num_rows:,} " in s, "tc's rows")
            wi.keys("enter", "G", "enter")
            following = f"({TAIL_ROWS} of {before.num_rows:,}, following)"
            await wi.until(lambda s: following in s, "y's last rows")
            wi.keys("G", "f")                           # the last rows in view, then paused
            paused = wi.screen()
            assert "tradecrafts > tc > y [paused]" in paused
            assert f"({TAIL_ROWS} of {before.num_rows:,}, paused, f follows again)" in paused
            shows_last(paused, before)
            more = rows(500, 200)
            both = kept(pa.concat_tables([first, more]))
            await db.publish("tc/x", more)
            output = wi.app.screen.output
            with trio.fail_after(15):                   # the rows come in, and are not shown
                while output.tail.seen < both.num_rows:
                    await trio.sleep(0.05)
            assert output.tail.seen == both.num_rows
            assert last_rows(wi.screen()) == last_rows(paused)   # (the retained counts may move on)
            assert line_of(wi.screen(), str(both["id"][-1].as_py())) is None
            wi.keys("f")                                # following again: everything that came
            shown = wi.screen()
            assert "[paused]" not in shown
            assert f"({TAIL_ROWS} of {both.num_rows:,}, following)" in shown
            shows_last(shown, both)
