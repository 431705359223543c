"""The log store's group commit: several batches and their progress in one transaction."""
from __future__ import annotations

import pyarrow as pa

from congregation.logs import Logs
from congregation.segments import Append, LogStore
from hallelujah.frames import open_batch, schema_bytes, serialize_batch

SCHEMA = pa.schema([("x", pa.int64())])


def body(*values: int) -> pa.Buffer:
    return serialize_batch(pa.record_batch([pa.array(values, pa.int64())], schema=SCHEMA))


def test_append_many_numbers_the_batches_with_rows_and_moves_each_sources_progress_to_its_last(tmp_path):
    store = LogStore(tmp_path)
    store.create("t/out", schema_bytes(SCHEMA))
    assert store.append("t/out", body(0), 1, "a", 1) == 0
    seqs = store.append_many("t/out", [
        Append(body(1, 2), 2),                       # a first part: no progress of its own
        Append(body(3), 1, "a", 2),
        Append(None, 0, "b", 7),                     # no rows: only b's progress moves
        Append(body(4, 5, 6), 3, "a", 3, resume=1),
        Append(body(), 0, "b", 8),                   # an empty body counts as no rows
    ])
    assert seqs == [1, 2, -1, 3, -1]
    assert store.progress("t/out") == {"a": 3, "b": 8}
    assert store.resume_points("t/out") == {"a": 1, "b": 8}
    entries = store.entries("t/out", 0, 10)
    assert [e.seq for e in entries] == [0, 1, 2, 3]
    read = [open_batch(pa.py_buffer(store.read("t/out", e)), SCHEMA).column(0).to_pylist() for e in entries]
    assert read == [[0], [1, 2], [3], [4, 5, 6]]
    info = store.info("t/out")
    assert (info["rows"], info["next_seq"]) == (7, 4)
    assert store.append_many("t/out", [Append(None, 0, "c", 1)]) == [-1]
    assert store.progress("t/out") == {"a": 3, "b": 8, "c": 1}
    store.close()


async def test_a_follower_gets_the_batches_appended_between_its_last_look_and_the_end(tmp_path):
    """A writer appends its last batch and ends the log just after a follower found nothing new
    and before it read the end: the follower must still get that batch."""
    logs = Logs(tmp_path)
    await logs.create("t/out", schema_bytes(SCHEMA))
    await logs.append("t/out", body(1), 1)
    store, info = logs.store, logs.store.info
    raced = []

    def info_after_the_writer(name: str) -> dict | None:
        if not raced:                      # the writer goes between the follower's two looks
            raced.append(store.append(name, body(2, 3), 2))
            store.end(name)
        return info(name)

    store.info = info_after_the_writer     # type: ignore[method-assign]
    got = [open_batch(pa.py_buffer(b), SCHEMA).column(0).to_pylist() async for _, b in logs.follow_raw("t/out", 0)]
    assert raced == [1]
    assert got == [[1], [2, 3]]
    logs.close()
