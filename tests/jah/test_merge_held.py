"""MERGE tells what its AGGREGATE instances still hold: in memory, no daemon, the Jah as the
planner makes it, fed by two instances (as a source of two parts makes them).

The promise checked: each position goes out with the first position whose rows some window
still holds open, counting the instances' windows, not only the MERGE's own. A position sent as
holding nothing lets a SINK commit it as done, and a crash then resumes after rows that no
window had closed yet (found by the seeded kills of `clicks`: the first hours went missing).
"""
from __future__ import annotations

import pyarrow as pa
import trio

from congregation.planning import plan_tradecraft
from hallelujah.tradecraft import parse_document
from jah.envelope import Envelope
from jah.merge import Merge
from jah.runtime import Runtime
from tests.jah.test_stream_join_watermarks import Tap, next_envelope

DOCUMENT = {"tradecraft": "m", "analytics": [
    {"name": "s", "kind": "stream", "time": "t", "schema": {"t": "timestamp[us]", "u": "int64"}},
    {"name": "g", "kind": "aggregate", "input": "s", "time": "t", "window": "1h",
     "measures": {"n": "count()"}}]}


async def test_a_position_goes_out_holding_what_the_instances_hold() -> None:
    plan = plan_tradecraft(parse_document(DOCUMENT), lambda k: 0)
    spec = {**next(j.spec for j in plan.jahs.values() if j.role == "merge"), "inputs": {"in": 2}}
    merge = Merge("m/g/merge", spec, Runtime("test", "unused.sock", lambda *_: None))
    lanes = [merge.inputs["in"].attach() for _ in range(2)]
    out = Tap(float("inf"))
    merge.outputs["out"].senders.append(out)
    merge.check_wired()
    nothing = pa.RecordBatch.from_pylist([], schema=merge.schema("in"))   # no window closed yet
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(merge.serve)
            for origin in (1, 2):
                for lane in lanes:           # each instance still holds its window from position 1
                    await lane.send(Envelope(nothing, origin, "m/s", value=1, parts=2))
            first = await next_envelope(out)
            nursery.cancel_scope.cancel()
    assert (first.origin, first.rows, first.value) == (1, 0, 1)
    assert first.resume_after() == 0         # a replay starts from the start, not after position 1
