"""The hand-made changes of congregation/updates.py (a forced split and merge of a dataset JOIN,
new congestion thresholds), through their client side (hallelujah/updates.py), against a real
congregation (commands "split", "merge" and "congestion").
The join's output stays exact across them (pyarrow's own join, computed here)."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import trio

from hallelujah import updates
from hallelujah.errors import InvalidInput, NotFound, TradecraftError
from tests.integration.test_split import assert_same_rows, expected_join
from tests.sheets.screen import driven
from tests.sheets.test_analytic import TILES, document, events, section


@pytest.fixture
def registered(congregation):
    return congregation


async def test_a_join_split_and_merged_by_hand_and_thresholds_changed(registered, tmp_path):
    db = registered.db()
    doc = document(tmp_path)
    doc["analytics"][2]["output"] = True                 # the join's rows, to check them
    with trio.fail_after(60):
        await db.submit(doc)
        first, second, third = events(0, 1_000), events(1_000, 1_000), events(2_000, 1_000)
        await db.publish("t/ev", first)
        with pytest.raises(NotFound, match=r'no JOIN "t/named/nosuch" running \(JOINs: t/named/join\)'):
            await updates.split(db, "t/named/nosuch")
        with pytest.raises(InvalidInput, match="has no JOIN to merge with"):
            await updates.merge(db, "t/named/join")
        assert await updates.split(db, "t/named/join") == {"split": "t/named/join"}
        await db.publish("t/ev", second)
        info = (await db.describe("t"))["tradecrafts"][0]
        split = info["scaling"][-1]
        assert (split["kind"], split["reason"], split["partitions"]) == ("split", {"by": "hand"}, [256, 128, 128])
        a, b = (i["jah"] for i in split["into"])
        async with driven(db) as wi:                     # the screen says what was done, and why
            wi.command("tc t/named")
            shown = await wi.until(lambda s: "scaling" in s, "the split", size=(160, 48))
            assert " ".join(section(shown, "scaling")[1]).endswith("by hand")
        assert await updates.merge(db, a) == {"merged": sorted([a, b])}
        await db.publish("t/ev", third)
        merged = (await db.describe("t"))["tradecrafts"][0]["scaling"][-1]
        assert (merged["kind"], merged["partitions"]) == ("merge", [256, 128, 128])
        # the rows joined across both are exactly pyarrow's left join, in stream order
        stream = pa.concat_tables([first, second, third])
        got = await db.read("t/named", limit=stream.num_rows)
        tiles = pq.read_table(tmp_path / "tiles.parquet")
        assert_same_rows(got, expected_join(stream, tiles, {"tile": "tile"}, ["country"], "left"))
        assert tiles.num_rows == TILES
        # thresholds: checked as a submit checks them, recorded with what they were
        with pytest.raises(TradecraftError, match=r"congestion.busy: 2 is not a busy fraction"):
            await updates.set_congestion(db, "t", {"busy": 2})
        assert await updates.set_congestion(db, "t", {"busy": 0.5, "for": "1s"}) == {
            "tradecraft": "t", "busy": 0.5, "for_seconds": 1.0}
        event = [e for e in (await db.describe("t"))["tradecrafts"][0]["events"] if e["kind"] == "congestion_thresholds"]
        assert [(e["busy"], e["for_seconds"], e["before"]) for e in event] == [
            (0.5, 1.0, {"busy": 0.85, "for_seconds": 2.0})]
        with pytest.raises(NotFound, match=r'no running tradecraft "nosuch" \(running: t\)'):
            await updates.set_congestion(db, "nosuch", {"busy": 0.5})
