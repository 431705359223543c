"""View models of the congregations screen and of an analytic's scaling: pure functions of
describe answers shaped as congregation/describe.py and congregation/scaling.py make them."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sheets import congregations as cg
from sheets import scaling

REASON = {"jah": "t/named/join", "busy": 0.011, "backlog": 0, "threshold_busy": 0.001, "for_seconds": 0.5}
SPLIT = {"at": 20.0, "kind": "split", "analytic": "named", "jah": "t/named/join", "reason": REASON,
         "partitions": [256, 128, 128],
         "into": [{"jah": "t/named/join#0.1a", "worker": 1, "partitions": [0, 127]},
                  {"jah": "t/named/join#0.1b", "worker": 0, "partitions": [128, 255]}]}
MERGE = {"at": 30.0, "kind": "merge", "analytic": "named", "jahs": ["t/named/join#0.1a", "t/named/join#0.1b"],
         "reason": {**REASON, "busy": 0.0, "threshold_busy": 0.00025, "for_seconds": 1.0},
         "partitions": [256, 128, 128], "into": [{"jah": "t/named/join#0.2m", "worker": 0, "partitions": [0, 255]}]}


def join(id_: str, worker: int, held: int) -> dict:
    return {"id": id_, "role": "join", "worker": worker, "rows_in": 10, "rows_out": 9, "state_rows": held,
            "state": "running"}


def tradecraft(scaling_events: list[dict], jahs: list[dict]) -> dict:
    versions = [{"at": 5.0, "kind": "dataset_version", "analytic": "tiles", "version": 1, "rows": 100,
                 "reason": "start"},
                {"at": 25.0, "kind": "dataset_version", "analytic": "tiles", "version": 2, "rows": 120,
                 "reason": "changed"},
                {"at": 26.0, "kind": "dataset_version", "analytic": "other", "version": 1, "rows": 3, "reason": "start"}]
    return {"name": "t", "events": versions + scaling_events, "scaling": scaling_events,
            "analytics": [{"name": "named", "kind": "join", "jahs": jahs}]}


def test_a_split_and_a_merge_say_what_moved_where_and_why():
    tc = tradecraft([MERGE, SPLIT], [])
    split, merge = scaling.scaling_rows(tc, "named")
    assert (split.kind, split.jahs, split.partitions) == ("split", "join", "256 -> 128 + 128")
    assert split.into == "join#0.1a on 1 (0-127), join#0.1b on 0 (128-255)"
    assert split.reason == "busy 0.011 >= 0.001 for 0.5s, backlog 0"
    assert (merge.jahs, merge.partitions, merge.into) == ("join#0.1a, join#0.1b", "128 + 128 -> 256", "join#0.2m on 0 (0-255)")
    assert merge.reason == "busy 0 <= 0.00025 for 1s, backlog 0"
    assert scaling.scaling_rows(tc, "other") == []


def test_joins_hold_what_the_split_gave_them_or_all_256_as_planned():
    before = tradecraft([], [join("t/named/join", 0, 100), {"id": "t/named/prejoin", "role": "prejoin"}])
    assert [(j.jah, j.worker, j.partitions, j.held) for j in scaling.join_rows(before, before["analytics"][0])] == [
        ("join", "0", "0-255 (256)", 100)]
    after = tradecraft([SPLIT], [join("t/named/join#0.1a", 1, 40), join("t/named/join#0.1b", 0, 60)])
    assert [(j.jah, j.worker, j.partitions) for j in scaling.join_rows(after, after["analytics"][0])] == [
        ("join#0.1a", "1", "0-127 (128)"), ("join#0.1b", "0", "128-255 (128)")]


def test_dataset_versions_oldest_first_of_the_datasets_asked():
    tc = tradecraft([], [])
    assert [(v.dataset, v.version, v.rows, v.reason) for v in scaling.version_rows(tc, ["tiles"])] == [
        ("tiles", 1, 100, "start"), ("tiles", 2, 120, "changed")]
    assert [v.dataset for v in scaling.version_rows(tc)] == ["tiles", "tiles", "other"]


def describe_answer(workers: list[dict], tradecrafts: int = 2) -> dict:
    return {"congregation": "vm", "workers": workers, "tradecrafts": [{"name": f"t{i}"} for i in range(tradecrafts)]}


def test_a_congregation_row_says_up_or_down_and_what_it_runs():
    info = describe_answer([{"worker": 0, "pid": 11, "jahs": 3}, {"worker": 1, "pid": 12, "jahs": 4}])
    first = cg.answered(cg.Answer(), info, 10.0)
    row = cg.congregation_row("127.0.0.1:7077", first, 10.0)
    assert (row.name, row.up, row.workers, row.jahs, row.tradecrafts, row.note) == ("vm", "up", 2, 7, 2, "")
    assert (row.cpu, row.memory) == (None, None)          # describe does not say: unknown, not 0
    down = cg.failed(first, "no answer in 2s")
    row = cg.congregation_row("127.0.0.1:7077", down, 14.0)
    assert (row.up, row.note, row.workers) == ("down", "no answer in 2s (last answer 4s ago)", 2)
    never = cg.congregation_row("127.0.0.1:1", cg.Answer(), 1.0)
    assert (never.name, never.up, never.note, never.workers) == ("-", "-", "connecting...", None)
    refused = cg.congregation_row("127.0.0.1:1", cg.failed(cg.Answer(), "connection refused"), 1.0)
    assert (refused.up, refused.note) == ("down", "connection refused")


@given(st.lists(st.tuples(st.floats(0, 1e4), st.floats(0, 1e4), st.integers(0, 2**40)), min_size=1, max_size=4),
       st.floats(0.1, 10))
def test_cpu_is_the_time_used_between_two_answers_and_memory_the_sum(usage, seconds):
    """When describe reports a process's CPU seconds and resident bytes, a row shows the CPU used
    between two answers (percent of a core, never negative) and the memory now."""
    then = describe_answer([{"worker": i, "pid": 100 + i, "jahs": 0, "cpu_seconds": a, "rss_bytes": 1}
                            for i, (a, _, _) in enumerate(usage)])
    now = describe_answer([{"worker": i, "pid": 100 + i, "jahs": 0, "cpu_seconds": b, "rss_bytes": rss}
                           for i, (_, b, rss) in enumerate(usage)])
    answer = cg.answered(cg.answered(cg.Answer(), then, 5.0), now, 5.0 + seconds)
    used = sum(b for _, b, _ in usage) - sum(a for a, _, _ in usage)
    row = cg.congregation_row("a:1", answer, 5.0 + seconds)
    assert row.cpu is not None and abs(row.cpu - max(0.0, used / seconds * 100)) <= 1e-6 * (1 + abs(used) / seconds * 100)
    assert row.memory == sum(rss for _, _, rss in usage)
    for w, (a, b, rss) in zip(cg.worker_rows(answer), usage):
        assert w.memory == rss and w.cpu is not None and w.cpu >= 0
        assert abs(w.cpu - max(0.0, (b - a) / seconds * 100)) <= 1e-6 * (1 + abs(b - a) / seconds * 100)


def test_sizes_and_percents_read_as_people_read_them():
    assert [cg.size(n) for n in (None, 0, 1023, 1024, 1536 * 1024, 3 * 2**30, 5 * 2**40)] == [
        "-", "0B", "1023B", "1.0KiB", "1.5MiB", "3.0GiB", "5.0TiB"]
    assert (cg.percent(None), cg.percent(199.6)) == ("-", "200%")
