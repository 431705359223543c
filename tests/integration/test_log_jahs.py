"""A stream's bytes pass through the workers, not the congregation's loop: the LOGSOURCE that
reads a published stream's log and the SINK that keeps an output run in workers and read and
write the log files themselves; each side tells the other of its writes (`LogChanged`), so a
published batch reaches a following client at once, not at a follower's next look."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import trio

from congregation.logs import LOOK_AGAIN
from tests.conftest import Daemon
from tests.integration.helpers import assert_rows_equal, read

DOCUMENT = {"tradecraft": "relay", "analytics": [
    {"name": "ev", "kind": "stream", "schema": {"id": "int64", "v": "float64"}},
    {"name": "big", "kind": "transform", "input": "ev", "where": "v > 0.5", "output": True}]}
CHUNKS, ROWS = 6, 20_000


def chunk(k: int) -> pa.Table:
    rng = np.random.default_rng(k)
    return pa.table({"id": np.arange(k * ROWS, (k + 1) * ROWS), "v": rng.random(ROWS)})


async def test_published_rows_reach_a_follower_through_workers_at_once_and_in_order(congregation: Daemon) -> None:
    db = congregation.db()
    got: list[pa.RecordBatch] = []
    waits: list[float] = []
    with trio.fail_after(60):
        await db.submit(DOCUMENT)
        async with trio.open_nursery() as nursery:
            async def follow() -> None:
                async with db.stream("relay/big", from_start=True) as batches:
                    async for batch in batches:
                        got.append(batch)

            nursery.start_soon(follow)
            expected_rows = 0
            for k in range(CHUNKS):
                await db.publish("relay/ev", chunk(k), publisher_id="p", first_seq=k, end=k == CHUNKS - 1)
                expected_rows += pc.sum(pc.greater(chunk(k)["v"], 0.5)).as_py()
                start = trio.current_time()
                while sum(b.num_rows for b in got) < expected_rows:
                    await trio.sleep(0.005)
                waits.append(trio.current_time() - start)
        info = (await db.describe("relay"))["tradecrafts"][0]
        kept = await read(db, "relay/big")
    whole = pa.concat_tables([chunk(k) for k in range(CHUNKS)])
    expected = whole.filter(pc.greater(whole["v"], 0.5))
    assert_rows_equal(pa.Table.from_batches(got, schema=kept.schema), expected, "followed")
    assert_rows_equal(kept, expected, "read afterwards")
    # each chunk acknowledged (kept in the input log) came out of the SINK's log well within a look
    assert max(waits) < LOOK_AGAIN / 2, waits
    where = {j["role"]: j["worker"] for a in info["analytics"] for j in a["jahs"]}
    assert {"logsource", "sink"} <= set(where) and min(where.values()) >= 0, where
