"""The log store: group commits, a publisher's batches kept once, and a full disk (refused or waited out)."""
from __future__ import annotations

import os

import pyarrow as pa
import pytest
import trio

from congregation.logs import LOOK_AGAIN, Logs, Notices
from congregation.segments import Append, LogStore, Publish
from congregation.space import RETRY_EVERY, NoSpace
from hallelujah.errors import InvalidInput
from hallelujah.frames import open_batch, schema_bytes, serialize_batch
from tests.small_disk import fill, small_disk  # noqa: F401 (a fixture)

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


async def test_a_follower_in_one_process_wakes_on_the_notice_of_anothers_append(tmp_path):
    """Two processes' stores of one data dir (a worker's SINK writes, the congregation follows):
    each append is told once per log, however many batches came meanwhile, and the notice wakes
    the follower at once, not at its next look (LOOK_AGAIN)."""
    told: list[str] = []
    reader, writer = Logs(tmp_path), Logs(tmp_path, tell=told.append)
    await writer.create("t/out", schema_bytes(SCHEMA))
    notices = Notices()
    got: list[tuple[float, list[int]]] = []

    async def follow() -> None:
        async for _, b in reader.follow_raw("t/out", 0):
            got.append((trio.current_time(), open_batch(pa.py_buffer(b), SCHEMA).column(0).to_pylist()))

    async def tell_reader(name: str) -> None:
        reader.changed(name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow)
        nursery.start_soon(notices.forward, tell_reader)
        await trio.sleep(0.2)                  # the follower has looked, found nothing, and waits
        start = trio.current_time()
        for n in range(3):
            await writer.append("t/out", body(n), 1)
        for name in told:
            notices.add(name)
        with trio.fail_after(LOOK_AGAIN / 2):
            while len(got) < 3:
                await trio.sleep(0.01)
        await writer.end("t/out")
        notices.add("t/out")
        with trio.fail_after(LOOK_AGAIN / 2):
            while not nursery.child_tasks or len(nursery.child_tasks) > 1:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert [values for _, values in got] == [[0], [1], [2]]
    assert told == ["t/out"] * 4 and got[0][0] - start < LOOK_AGAIN / 2
    reader.close()
    writer.close()


async def test_a_follower_told_nothing_still_sees_an_append_within_a_look(tmp_path):
    """A notice lost (its sender died just after the commit) costs at most LOOK_AGAIN, never a hang."""
    reader, writer = Logs(tmp_path), Logs(tmp_path)
    await writer.create("t/out", schema_bytes(SCHEMA))
    with trio.fail_after(LOOK_AGAIN * 3):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.append, "t/out", body(7), 1)
            got = []
            async for _, b in reader.follow_raw("t/out", 0):
                got.append(open_batch(pa.py_buffer(b), SCHEMA).column(0).to_pylist())
                await writer.end("t/out")
    assert got == [[7]]
    reader.close()
    writer.close()


def test_a_log_deleted_and_made_again_by_another_process_is_written_in_its_new_file(tmp_path):
    """A worker's store keeps its segment open between appends; the congregation deletes the
    tradecraft's logs and a new tradecraft of the same name makes them again: the worker's next
    append goes to the new log's file, not to the deleted one's."""
    congregation, worker = LogStore(tmp_path), LogStore(tmp_path)
    congregation.create("t/out", schema_bytes(SCHEMA))
    worker.append("t/out", body(1), 1)
    congregation.delete("t/")
    congregation.create("t/out", schema_bytes(SCHEMA))
    assert worker.append("t/out", body(2, 3), 2) == 0
    entries = congregation.entries("t/out", 0, 10)
    assert [open_batch(pa.py_buffer(congregation.read("t/out", e)), SCHEMA).column(0).to_pylist()
            for e in entries] == [[2, 3]]
    congregation.close()
    worker.close()


def test_a_publishers_batch_is_kept_once_a_gap_and_a_new_batch_after_the_end_are_refused(tmp_path):
    store = LogStore(tmp_path)
    store.create("t/in", schema_bytes(SCHEMA))
    assert store.committed("t/in", "p") == -1
    assert store.publish("t/in", "p", 0, body(1, 2), 2) == 0
    assert store.publish("t/in", "p", 0, body(1, 2), 2) is None          # a retry: not kept again
    assert store.publish("t/in", "q", 0, body(3), 1) == 1                # another publisher's own numbers
    assert store.publish("t/in", "p", 1, body(), 0) == -1                # no rows: only p's number moves
    with pytest.raises(InvalidInput, match=r't/in: batch 5 of publisher "p" comes after a gap: '
                                           r'the last batch kept is 1, so the next must be 2'):
        store.publish("t/in", "p", 5, body(4), 1)
    store.end("t/in")
    assert store.publish("t/in", "p", 1, body(), 0) is None              # a repeat after the end
    with pytest.raises(InvalidInput, match="t/in: batch 2 refused: the stream has ended"):
        store.publish("t/in", "p", 2, body(4), 1)
    assert (store.committed("t/in", "p"), store.committed("t/in", "q")) == (1, 0)
    assert [read_back(store, "t/in", e) for e in store.entries("t/in", 0, 10)] == [[1, 2], [3]]
    assert store.info("t/in")["rows"] == 3
    store.close()


def read_back(store: LogStore, name: str, entry) -> list[int]:
    return open_batch(pa.py_buffer(store.read(name, entry)), SCHEMA).column(0).to_pylist()


def test_a_group_of_publishes_keeps_each_in_order_refuses_one_alone_and_syncs_each_log_once(tmp_path, monkeypatch):
    store = LogStore(tmp_path)
    for name in ("t/a", "t/b"):
        store.create(name, schema_bytes(SCHEMA))
    synced: list[int] = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(fd), real(fd)))
    results = store.publish_many([
        Publish("t/a", "p", 0, body(1), 1), Publish("t/b", "q", 0, body(2), 1),
        Publish("t/a", "p", 1, body(3), 1),            # the same publisher twice in one group
        Publish("t/a", "p", 3, body(9), 1),            # a gap: refused alone
        Publish("t/b", "q", 0, body(2), 1),            # a repeat
        Publish("t/b", "r", 0, body(4), 1)])
    assert results[:3] == [0, 0, 1] and isinstance(results[3], InvalidInput) and results[4:] == [None, 1]
    assert "comes after a gap: the last batch kept is 1, so the next must be 2" in str(results[3])
    assert len(synced) == len(set(synced)) == 2
    values = {name: [open_batch(pa.py_buffer(store.read(name, e)), SCHEMA).column(0).to_pylist()
                     for e in store.entries(name, 0, 10)] for name in ("t/a", "t/b")}
    assert values == {"t/a": [[1], [3]], "t/b": [[2], [4]]}
    store.close()


async def test_publishers_waiting_together_share_a_commit(tmp_path, monkeypatch):
    """Four publishers of ten batches each, at once: every batch kept, in each publisher's order,
    with far fewer syncs than batches."""
    logs = Logs(tmp_path)
    await logs.create("t/in", schema_bytes(SCHEMA))
    syncs = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (syncs.append(fd), real(fd)))

    async def publisher(p: int) -> None:
        for seq in range(10):
            assert await logs.publish("t/in", f"p{p}", seq, body(p * 100 + seq), 1) is not None

    async with trio.open_nursery() as nursery:
        for p in range(4):
            nursery.start_soon(publisher, p)
    kept = [open_batch(pa.py_buffer(logs.store.read("t/in", e)), SCHEMA).column(0)[0].as_py()
            for e in logs.store.entries("t/in", 0, 100)]
    assert sorted(kept) == [p * 100 + s for p in range(4) for s in range(10)]
    assert all([v for v in kept if v // 100 == p] == sorted(v for v in kept if v // 100 == p) for p in range(4))
    assert len(syncs) <= 20, f"{len(syncs)} syncs for 40 batches"
    logs.close()


def test_a_full_disk_refuses_a_publish_keeping_nothing_of_it_and_the_retry_after_freeing_is_kept(small_disk):
    store = LogStore(small_disk)
    store.create("t/in", schema_bytes(SCHEMA))
    assert store.publish("t/in", "p", 0, body(*range(1000)), 1000) == 0
    segment = small_disk / "logs" / "t__in" / "00000000.seg"
    size = segment.stat().st_size
    filler = fill(small_disk, leave=256 << 10)     # the write begins, then fails part way
    big = body(*range(100_000))
    with pytest.raises(NoSpace, match=f"no space left on the congregation's data dir {small_disk}"):
        store.publish("t/in", "p", 1, big, 100_000)
    assert segment.stat().st_size == size, "the failed write's bytes were cut off again"
    assert [e.seq for e in store.entries("t/in", 0, 10)] == [0] and store.committed("t/in", "p") == 0
    assert store.info("t/in")["rows"] == 1000
    filler.unlink()
    assert store.publish("t/in", "p", 1, big, 100_000) == 1
    assert [read_back(store, "t/in", e) for e in store.entries("t/in", 0, 10)] == [list(range(1000)),
                                                                                   list(range(100_000))]
    store.close()


async def test_the_congregations_own_append_waits_for_space_and_is_kept_once_freed(small_disk):
    logs = Logs(small_disk)
    await logs.create("t/out", schema_bytes(SCHEMA))
    filler = fill(small_disk)
    done = trio.Event()

    async def append() -> None:
        await logs.append_many("t/out", [(body(*range(50_000)), 50_000, "src", 7, None)])
        done.set()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(append)
            await trio.sleep(3 * RETRY_EVERY)
            assert not done.is_set(), "the append waits while the disk is full"
            assert logs.store.entries("t/out", 0, 10) == []
            filler.unlink()
            await done.wait()
    assert [read_back(logs.store, "t/out", e) for e in logs.store.entries("t/out", 0, 10)] == [list(range(50_000))]
    assert logs.store.progress("t/out") == {"src": 7}
    logs.close()


def test_a_transactional_log_shows_a_checkpoints_batches_once_it_is_complete_and_a_restart_cuts_the_rest(tmp_path):
    store = LogStore(tmp_path)
    store.create("t/out", schema_bytes(SCHEMA))
    store.append("t/out", body(0), 1, "a", 1)                 # before it became transactional: shown
    store.open_log("t/out", transactional=True, complete=None)
    store.append("t/out", body(1, 2), 2)
    store.stage("t/out", 1, {"a": (5, None)})
    store.append("t/out", body(3), 1)
    store.stage("t/out", 2, {"a": (7, 4)})
    store.append("t/out", body(4), 1)                         # after checkpoint 2: never shown

    def seen() -> list[int]:
        return [v for e in store.entries("t/out", 0, 100)
                for v in open_batch(pa.py_buffer(store.read("t/out", e)), SCHEMA).column(0).to_pylist()]

    assert seen() == [0] and store.info("t/out")["rows"] == 1
    assert store.commit_staged("t/", 1) == ["t/out"]
    assert seen() == [0, 1, 2] and store.info("t/out")["rows"] == 3
    assert store.progress("t/out") == {"a": 5}
    assert store.commit_staged("u/", 2) == []                 # another tradecraft's checkpoint
    # a crash, then a restart whose last complete checkpoint is 2 (its commit never ran)
    store.close()
    store = LogStore(tmp_path)
    store.open_log("t/out", transactional=True, complete=2)
    assert seen() == [0, 1, 2, 3] and store.resume_points("t/out") == {"a": 4}
    assert store.info("t/out")["next_seq"] == 3              # batch [4] is cut off: a replay writes it again
    store.append("t/out", body(9), 1)
    assert seen() == [0, 1, 2, 3]
    store.end("t/out", {"a": (9, None)})                      # the input ended: everything is shown
    assert seen() == [0, 1, 2, 3, 9] and store.info("t/out")["rows"] == 5 and store.progress("t/out") == {"a": 9}
    store.open_log("t/out", transactional=True, complete=None)   # an ended log stays as it is
    assert seen() == [0, 1, 2, 3, 9]
    store.close()
