"""The `:` command line and the updates against a real congregation: each refusal is the message
`hallelujah` itself prints (run here as a subprocess), each update is checked through the library
and against rows computed here with pyarrow."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import trio
import urwid

from tests.integration.test_cli import cli_many, refused
from tests.sheets.screen import SIZES, line_of, row
from tests.sheets.test_screens import DOCUMENT, kept, rows, showing_tc

BAD = {"tradecraft": "bad", "analytics": [{"name": "x", "kind": "stream", "schema": {"id": "int64"}},
                                          {"name": "j", "kind": "join", "stream": "x"}]}


def cli_said(result) -> str:
    """What `hallelujah` said on refusing, without its "hallelujah: "."""
    return refused(result).removeprefix("hallelujah: ")


async def test_the_command_line_jumps_submits_and_cancels(congregation, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                         # files named as typed, relative to where wi runs
    (tmp_path / "bad.json").write_text(json.dumps(BAD))
    (tmp_path / "other.json").write_text(json.dumps({**DOCUMENT, "tradecraft": "other"}))
    async with showing_tc(congregation) as (db, wi):
        at = congregation.address
        nosuch, bad, no_analytic = await trio.to_thread.run_sync(lambda: cli_many(
            [("describe", "nosuch"), ("submit", "bad.json"), ("describe", "tc/nosuch")], at=at, cwd=tmp_path))
        wi.command("tc nosuch")
        await wi.until(lambda s: ":tc nosuch:" in s, "the refusal")
        assert wi.message == f":tc nosuch: {cli_said(nosuch)}"
        wi.command("tc tc/nosuch")
        await wi.until(lambda s: ":tc tc/nosuch:" in s, "the refusal")
        assert wi.message == f":tc tc/nosuch: {cli_said(no_analytic)}"
        wi.command("tc t", "tab")                       # Tab completes the name
        assert wi.screen().split("\n")[-1] == ":tc tc"
        wi.keys("enter")
        await wi.until(lambda s: "congregations > tradecrafts > tc\n" in s, "tc's screen")
        wi.command("tc tc/y")
        shown = await wi.until(lambda s: "congregations > tradecrafts > tc > y\n" in s, "y's screen", size=(160, 48))
        assert row(shown, "y")[1:] == [f"{kept(rows(0, 10)).num_rows:,}", "no"]
        wi.command("nosuch")
        assert wi.message == (":nosuch: no such command (commands: tc, submit, publish, cancel, split, merge, "
                              "reload, congestion, q)")
        wi.command("submit bad.json")                   # checked here, as the CLI checks it: not asked about
        assert wi.message == f"submit bad.json refused: {cli_said(bad)}"
        wi.command("submit nothere.json")
        assert wi.message == "submit nothere.json refused: nothere.json: No such file or directory"
        wi.command("submit /dev/zero")                  # not read: the screen stays up
        assert wi.message == "submit /dev/zero refused: /dev/zero: not a regular file"
        other = "other.json"
        wi.command(f"submit {other}")
        assert f"Submit tradecraft other (2 analytics) from {other}?" in wi.screen((160, 48))
        wi.keys("n")
        assert wi.message == "not submitted" and [t["name"] for t in await db.list()] == ["tc"]
        wi.command(f"submit {other}")
        wi.keys("y")
        await wi.until(lambda s: "submitted other: outputs y" in s, "the submit's answer")
        assert {t["name"]: t["state"] for t in await db.list()} == {"tc": "running", "other": "running"}
        wi.command(f"submit {other}")                   # again: refused by the congregation, as the CLI is
        wi.keys("y")
        await wi.until(lambda s: "submit" in s and "refused" in s, "the refusal")
        again = await trio.to_thread.run_sync(lambda: cli_many([("submit", other)], at=at, cwd=tmp_path)[0])
        assert wi.message == f"submit {other} refused: {cli_said(again)}"
        # the list, where a click selects a row; :cancel NAME asks first
        wi.keys("esc", "esc")
        await wi.until(lambda s: line_of(s, "other") is not None, "other in the list")
        table = wi.app.screen.table
        for size in SIZES:
            at_row = wi.screen(size).split("\n").index(next(
                line for line in wi.screen(size).split("\n") if line.startswith("other ")))
            wi.app.widget.mouse_event(size, "mouse press", 1, 3, at_row, True)
            assert table.focused() == "other"
            wi.app.widget.mouse_event(size, "mouse press", 1, 3, at_row - 1, True)
            assert table.focused() == "tc"
        wi.command("cancel other")
        assert "Cancel tradecraft other?" in wi.screen()
        wi.keys("y")
        await wi.until(lambda s: "cancelled other" in s, "the cancel's answer")
        assert {t["name"] for t in await db.list()} == {"tc"}
        with pytest.raises(urwid.ExitMainLoop):
            wi.command("q")


async def test_publish_asks_shows_progress_and_the_rows_arrive(congregation, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    published = rows(10, 90_000)                       # 2 batches of the client's 65,536 rows
    pq.write_table(published, tmp_path / "more.parquet")
    (tmp_path / "wrong.jsonl").write_text('{"a": 1}\n')
    async with showing_tc(congregation) as (db, wi):
        at = congregation.address
        nosuch, wrong = await trio.to_thread.run_sync(lambda: cli_many(
            [("publish", "tc/nosuch", "more.parquet"), ("publish", "tc/x", "wrong.jsonl")], at=at, cwd=tmp_path))
        wi.command("publish tc/nosuch more.parquet")
        await wi.until(lambda s: "refused" in s, "the refusal")
        assert wi.message == f"publish more.parquet refused: {cli_said(nosuch)}"
        wi.command("publish tc/x wrong.jsonl")          # told only once read, as the CLI is
        await wi.until(lambda s: "Publish from" in s, "the question")
        wi.keys("y")
        await wi.until(lambda s: "refused" in s, "the refusal")
        assert wi.message == f"publish wrong.jsonl refused: {cli_said(wrong)}"
        said: list[str] = []
        say = wi.app.say
        wi.app.say = lambda text, alert=False: (said.append(text), say(text, alert))  # type: ignore[method-assign]
        wi.command("publish tc/x more.parquet")
        await wi.until(lambda s: "Publish 90,000 rows from" in s, "the question", size=(160, 48))
        wi.keys("y")
        await wi.until(lambda s: "published 90,000 rows to tc/x" in s, "the publish's answer")
        progress = [s for s in said if s.startswith("publishing more.parquet into tc/x: ")]
        assert progress[-1] == "publishing more.parquet into tc/x: 90,000 / 90,000 rows (100%)", said
        assert "publishing more.parquet into tc/x: 65,536 / 90,000 rows (73%)" in progress, said
        expected = kept(pa.concat_tables([rows(0, 10), published]))
        await wi.until(lambda s: row(s, "tc")[2] == "90,010" and row(s, "tc")[4] == f"{expected.num_rows:,}",
                       "the rows through y")
        got = await db.read("tc/y", limit=expected.num_rows)
        assert got["id"].to_pylist() == expected["id"].to_pylist()
