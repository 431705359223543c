"""The hand-made changes of a running tradecraft from the `:` command line and from `hallelujah`
(split and merge of a dataset JOIN, congestion thresholds), against a real congregation: each is
asked first, each refusal is the message `hallelujah` itself prints (run here as a subprocess),
read-only mode refuses them all and changes nothing; each change is checked through describe."""
from __future__ import annotations

import json

import trio

from tests.integration.test_cli import cli_many, ok, refused
from tests.sheets.screen import driven
from tests.sheets.test_analytic import document, events
from tests.sheets.test_commands import cli_said


async def scaling(db) -> list[dict]:
    return (await db.describe("t"))["tradecrafts"][0]["scaling"]


async def answer(wi, line: str, expected: str) -> None:
    """`:line`, asked first, answered y: the message line says `expected` (fails naming it)."""
    wi.command(line)
    assert "y: do it" in wi.screen((160, 48)), wi.screen((160, 48))
    wi.keys("y")
    await wi.until(lambda s: wi.message not in ("", f"{line}..."), f"the answer to :{line}")
    assert wi.message == expected


async def test_split_merge_and_congestion_asked_refused_and_done(congregation, tmp_path):
    db, at = congregation.db(), congregation.address
    with trio.fail_after(60):
        await db.submit(document(tmp_path))
        await db.publish("t/ev", events(0, 1_000))
        nosuch, busy, merge_alone = await trio.to_thread.run_sync(lambda: cli_many(
            [("split", "t/named/nosuch"), ("congestion", "t", "--busy", "2", "--for", "1s"),
             ("merge", "t/named/join")], at=at))
        async with driven(db, read_only=True) as wi:           # refused, nothing asked, nothing changed
            for line in ("split t/named/join", "merge t/named/join", "congestion t 0.5 1s", "reload t/tiles"):
                wi.command(line)
                name, what = line.split(" ", 1)
                assert wi.message == f"read-only: {name} of {what} refused (started with --read-only)"
                assert "y: do it" not in wi.screen()
        assert await scaling(db) == []
        async with driven(db) as wi:
            await wi.until(lambda s: wi.app.feed.info is not None, "the first answer")
            wi.command("split t/named/j", "tab")                 # the JOIN's id completes
            assert wi.screen().split("\n")[-1] == ":split t/named/join"
            wi.keys("esc")
            await answer(wi, "split t/named/nosuch", f"split t/named/nosuch refused: {cli_said(nosuch)}")
            await answer(wi, "merge t/named/join", f"merge t/named/join refused: {cli_said(merge_alone)}")
            await answer(wi, "congestion t 2 1s", f"congestion t 2 1s refused: {cli_said(busy)}")
            wi.command("split t/named/join")
            wi.keys("n")                                          # declined: nothing done
            assert wi.message == "split not done" and await scaling(db) == []
            await answer(wi, "split t/named/join", "split t/named/join in two")
            split = (await scaling(db))[-1]
            assert (split["kind"], split["reason"], split["partitions"]) == ("split", {"by": "hand"}, [256, 128, 128])
            a, b = sorted(i["jah"] for i in split["into"])
            await answer(wi, f"merge {a}", f"merged {a} and {b}")
            merged = (await scaling(db))[-1]
            assert (merged["kind"], sorted(merged["jahs"]), merged["reason"]) == ("merge", [a, b], {"by": "hand"})
            await answer(wi, "congestion t 0.5 1s", "congestion of t: busy above 0.5 for 1s")
        # the CLI: one line, or JSON; a threshold left out keeps its value
        said, as_json, neither = await trio.to_thread.run_sync(lambda: cli_many(
            [("congestion", "t", "--for", "3s"), ("congestion", "t", "--busy", "0.25", "--json"),
             ("congestion", "t")], at=at))
        assert refused(neither) == "hallelujah: congestion: give --busy, --for or both"
        assert ok(said).stdout in ("congestion of t: busy above 0.5 for 3s\n", "congestion of t: busy above 0.25 for 3s\n")
        assert json.loads(ok(as_json).stdout)["busy"] == 0.25
        events_ = [e for e in (await db.describe("t"))["tradecrafts"][0]["events"]
                   if e["kind"] == "congestion_thresholds"]
        assert events_[0]["before"] == {"busy": 0.85, "for_seconds": 2.0}
        assert (events_[-1]["busy"], events_[-1]["for_seconds"]) == (0.25, 3.0)
