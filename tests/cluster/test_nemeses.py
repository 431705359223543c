"""A seeded schedule of faults against a cluster while two publishers push a stream through it:
members killed (-9) and restarted, members stopped (SIGSTOP) past their lease and continued. The
history checker then counts what publishers were told was kept against what came out: 0 lost,
0 duplicated, every key in order. `HALLELUJAH_NEMESIS_SEED` and `HALLELUJAH_NEMESIS_FAULTS` run
other or longer schedules."""
from __future__ import annotations

import os
import random
import signal

import numpy as np
import pyarrow as pa
import trio

from hallelujah.errors import Unavailable
from tests.cluster.history import check

SEED = int(os.environ.get("HALLELUJAH_NEMESIS_SEED", "7"))
FAULTS = int(os.environ.get("HALLELUJAH_NEMESIS_FAULTS", "3"))
CHUNKS, ROWS, KEYS = 30, 10_000, 8
DOCUMENT = {"tradecraft": "hist", "analytics": [
    {"name": "events", "kind": "stream", "schema": {"key": "string", "seq": "int64", "value": "float64"}},
    {"name": "seen", "kind": "transform", "input": "events", "output": True,
     "derive": {"twice": "value * 2"}, "where": "value >= 0"}]}


def chunk(publisher: str, i: int) -> pa.Table:
    """Rows i*ROWS… of a publisher: keys of its own, and a sequence number per key."""
    n = np.arange(i * ROWS, (i + 1) * ROWS, dtype=np.int64)
    return pa.table({"key": pa.array([f"{publisher}-{k}" for k in n % KEYS]), "seq": n // KEYS,
                     "value": (n % 1000).astype(np.float64)})


async def test_no_acknowledged_row_is_lost_or_repeated_under_kills_and_stops(cluster):
    rng = random.Random(SEED)
    db = cluster.db()
    acknowledged: list[pa.Table] = []
    done = {"p1": trio.Event(), "p2": trio.Event()}
    faults: list[str] = []

    async def publish(publisher: str, order: list[str]) -> None:
        client = cluster.db(*order)
        for i in range(CHUNKS):
            last = publisher == "p1" and i == CHUNKS - 1
            if last:
                await done["p2"].wait()          # the stream ends after both have published
            while True:   # the client tries other members for 20 s; a longer outage, again
                try:
                    await client.publish("hist/events", chunk(publisher, i), publisher_id=publisher,
                                         first_seq=i, end=last)
                    break
                except Unavailable:
                    await trio.sleep(0.5)
            acknowledged.append(chunk(publisher, i))
            await trio.sleep(0.05)
        done[publisher].set()

    async def nemesis() -> None:
        for _ in range(FAULTS):
            await trio.sleep(rng.uniform(1.0, 2.0))
            owner = (await db.describe("hist"))["tradecrafts"][0].get("congregation")
            victim = owner if owner in cluster.members and rng.random() < 0.6 else rng.choice(sorted(cluster.members))
            if rng.random() < 0.5:
                faults.append(f"kill -9 {victim}{' (owner)' if victim == owner else ''}")
                cluster.members[victim].kill()
                await trio.sleep(rng.uniform(1.0, 3.0))
                await trio.to_thread.run_sync(cluster.start, victim)
            else:
                faults.append(f"SIGSTOP {victim}{' (owner)' if victim == owner else ''}")
                cluster.signal(victim, signal.SIGSTOP)
                await trio.sleep(rng.uniform(3.0, 4.5))        # past its lease (2 s)
                cluster.signal(victim, signal.SIGCONT)

    with trio.fail_after(240):
        await db.submit(DOCUMENT)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(publish, "p1", ["a", "b", "c"])
            nursery.start_soon(publish, "p2", ["c", "a", "b"])
            nursery.start_soon(nemesis)
        output = await db.read("hist/seen")
    verdict = check(acknowledged, output)
    print(f"nemeses (seed {SEED}): {'; '.join(faults)}: {verdict}")
    assert verdict.acknowledged == 2 * CHUNKS * ROWS
    assert verdict.ok(), (faults, verdict)
    assert verdict.seen == verdict.acknowledged
