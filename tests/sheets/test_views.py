"""The Window Interface's view models: pure functions of describe answers, checked against
figures computed here from the answer's own parts."""
from __future__ import annotations

import re
import time

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from sheets import views
from sheets.feed import Tail


def jah(id_: str, role: str, worker: int, rows_in: int, rows_out: int, **more) -> dict:
    return {"id": id_, "role": role, "worker": worker, "rows_in": rows_in, "rows_out": rows_out,
            "busy": 0.25, "backlog": 3, "state_rows": 7, "state": "running", "error": "", **more}


def log(rows: int, ended: bool = False) -> dict:
    return {"rows": rows, "batches": 1, "ended": ended, "first_at": None, "last_at": None}


def tradecraft(name: str, pushed: int, kept: int, **more) -> dict:
    return {"name": name, "state": "running", "error": "", "stalled_for": None, "events": [],
            "analytics": [
                {"name": "x", "kind": "stream", "output": False, "retained": {"x": log(pushed)},
                 "schema": {"id": "int64"}, "jahs": [jah(f"{name}/x/logsource", "logsource", -1, 0, pushed)]},
                {"name": "y", "kind": "transform", "output": True,
                 "retained": {"y": log(kept), "y.rejected": log(0)}, "schema": {"id": "int64", "w": "float64"},
                 "jahs": [jah(f"{name}/y/transform", "transform", 0, pushed, kept),
                          jah(f"{name}/y/sink", "sink", -1, kept, 0)]}],
            **more}


def test_totals_come_from_the_streams_and_the_outputs():
    assert views.totals(tradecraft("a", 1000, 420)) == (1000, 420)


def test_a_stream_without_a_log_counts_its_jahs():
    tc = tradecraft("a", 10, 4)
    tc["analytics"][0]["retained"] = {}
    tc["analytics"][0]["jahs"] += [jah("a/x/ingest", "ingest", 1, 0, 5)]
    assert views.totals(tc) == (15, 4)


def test_a_count_nobody_reports_is_unknown_not_zero():
    tc = tradecraft("a", 10, 4)
    tc["analytics"][0]["retained"] = {}
    for a in tc["analytics"]:
        a["jahs"] = [{"id": j["id"], "role": j["role"], "worker": j["worker"], "state": "running", "error": ""}
                     for j in a["jahs"]]      # a finished tradecraft's Jahs: no live figures
    assert views.totals(tc) == (None, 4)
    row = views.tradecraft_rows({"tradecrafts": [tc]}, {"a": views.Sample(1.0, None, 2)}, 2.0)[0]
    assert (row.rows_in, row.in_rate, row.rows_out, row.out_rate) == (None, None, 4, 2.0)
    assert {(j.rows_in, j.rows_out, j.busy, j.backlog, j.held) for j in views.jah_rows(tc)} == {(None,) * 5}
    assert views.count(None) == "-"


def test_rates_from_two_samples():
    info = {"tradecrafts": [tradecraft("a", 1000, 420), tradecraft("b", 5, 5)]}
    previous = {"a": views.Sample(10.0, 400, 20)}
    rows = views.tradecraft_rows(info, previous, 12.0)
    assert [(r.name, r.rows_in, r.rows_out, r.in_rate, r.out_rate) for r in rows] == [
        ("a", 1000, 420, 300.0, 200.0), ("b", 5, 5, None, None)]
    assert views.samples(rows, 12.0)["b"] == views.Sample(12.0, 5, 5)


@given(st.integers(0, 10**12), st.integers(0, 10**12), st.floats(-5, 5, allow_nan=False))
def test_a_rate_is_never_negative_nor_made_of_no_time(now, then, seconds):
    r = views.rate(now, then, seconds)
    if seconds <= 0:
        assert r is None
    else:
        assert r is not None and r >= 0 and (r == 0) == (now <= then)


def test_note_says_stalled_before_error():
    assert views.note(tradecraft("a", 1, 1, stalled_for=12.4)) == "stalled 12s"
    assert views.note({**tradecraft("a", 1, 1), "state": "failed", "error": "x is gone"}) == "x is gone"


def test_jah_rows_follow_describe():
    rows = views.jah_rows(tradecraft("a", 1000, 420))
    assert [(r.analytic, r.jah, r.role, r.worker, r.rows_in, r.rows_out, r.backlog, r.held) for r in rows] == [
        ("x", "logsource", "logsource", "-", 0, 1000, 3, 7),
        ("y", "transform", "transform", "0", 1000, 420, 3, 7),
        ("y", "sink", "sink", "-", 420, 0, 3, 7)]
    assert views.jah_label("a/y.rejected/sink", "y") == ".rejected/sink"
    assert views.jah_label("a/other/sink", "y") == "other/sink"
    assert views.jah_label("a/yy/sink", "y") == "yy/sink"


def test_retained_schema_and_events():
    tc = tradecraft("a", 10, 4, events=[{"at": 20.0, "kind": "restart", "reason": "worker 0 lost"},
                                        {"at": 10.0, "kind": "congested", "jah": "a/y/transform"}])
    y = views.find_analytic(views.find({"tradecrafts": [tc]}, "a"), "y")
    assert views.retained_lines(y) == [("y", 4, False), ("y.rejected", 0, False)]
    assert views.schema_lines(y) == [("id", "int64"), ("w", "float64")]
    assert views.event_lines([tc]) == [(10.0, "a", "congested", "jah=a/y/transform"),
                                       (20.0, "a", "restart", "reason=worker 0 lost")]
    assert views.find({"tradecrafts": [tc]}, "nosuch") is None and views.find_analytic(tc, "z") is None


@given(st.integers(0, 10**14))
def test_a_count_is_short_and_exact_when_small(n):
    shown = views.count(n)
    assert len(shown) <= 7
    if abs(n) < 100_000:
        assert int(shown.replace(",", "")) == n
    else:
        value, unit = float(shown[:-1]), {"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}[shown[-1]]
        assert abs(value * unit - n) <= 0.05 * unit + 1e-9 * abs(n)


words = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=0, max_size=30)
numbers = st.integers(0, 10**9).map(views.count)


@given(st.data(), st.integers(1, 8), st.integers(20, 200))
def test_table_lines_fit_the_width_and_keep_numbers_whole(data, ncols, width):
    numeric = data.draw(st.lists(st.booleans(), min_size=ncols, max_size=ncols))
    headers = data.draw(st.lists(words.filter(bool), min_size=ncols, max_size=ncols))
    rows = data.draw(st.lists(st.tuples(*[numbers if n else words for n in numeric]), max_size=6))
    lines = views.table_lines(headers, rows, width, numeric)
    assert len(lines) == len(rows) + 1
    assert all(len(line) <= width for line in lines)
    # when the numbers and 3 characters of each text column fit, no number is cut
    widest = [max(len(r[i]) for r in [headers, *rows]) for i in range(ncols)]
    least = sum(w if n else min(w, 3) for w, n in zip(widest, numeric)) + 2 * (ncols - 1)
    if least <= width:
        for row, line in zip(rows, lines[1:]):
            for cell, n in zip(row, numeric):
                if n:
                    assert cell in line


@given(st.lists(st.integers(0, 40), max_size=20), st.integers(1, 30))
def test_a_tail_keeps_the_last_rows_seen(sizes, keep):
    tail, start = Tail(keep), 0
    for n in sizes:
        tail.add(pa.record_batch({"i": pa.array(range(start, start + n), pa.int64())}))
        start += n
    got = tail.table()
    assert tail.seen == start
    if not sizes:
        assert got is None
    else:
        assert got is not None and got["i"].to_pylist() == list(range(max(0, start - keep), start))
        assert tail.held - tail.batches[0].num_rows < keep      # no more batches than it needs


@given(st.lists(st.one_of(st.none(), st.floats(0, 1e9, allow_nan=False)), max_size=80))
def test_a_sparkline_has_one_mark_per_rate_and_the_peak_is_highest(rates):
    spark = views.sparkline(rates)
    assert len(spark) == len(rates) and set(spark) <= set(views.SPARKS)
    for r, mark in zip(rates, spark):
        assert (mark == "_") == (r is None or r <= 0)
    top = max((r for r in rates if r), default=0)
    if top > 0:
        assert spark[rates.index(top)] == "#"
        assert all(views.SPARKS.index(m) <= views.SPARKS.index("#") for m in spark)


def test_the_first_column_is_cut_last():
    lines = views.table_lines(["name", "role", "n"], [["stream_join#0", "stream_join", "65,839"]], 28,
                              [False, False, True])
    assert lines[1] == "stream_join#0  stre~  65,839"


def test_jah_rows_carry_credits_and_the_watermark():
    out_end = {"port": "out out", "credits_left": 0, "in_flight": 20, "blocked_seconds": 1.5, "waiting": True}
    tc = tradecraft("a", 10, 4)
    tc["analytics"][1]["jahs"][0].update(in_flight=20, watermark=1_700_000_000_000_000,
                                         datastreams=[out_end, {"port": "in in", "last_seq": 3}])
    tc["analytics"][1]["jahs"][1].update(in_flight=0, watermark=None,
                                         datastreams=[{**out_end, "waiting": False, "in_flight": 0}])
    transform, sink = views.jah_rows(tc)[1:]
    assert (transform.in_flight, transform.blocked, transform.watermark) == (20, True, 1_700_000_000_000_000)
    assert (sink.in_flight, sink.blocked, sink.watermark) == (0, False, None)
    assert views.credits(transform) == "20 blocked" and views.credits(sink) == "0"
    logsource = views.jah_rows(tc)[0]        # an older congregation's answer: unknown, not 0
    assert (logsource.in_flight, logsource.blocked, views.credits(logsource)) == (None, False, "-")


@given(st.integers(0, 3 * 86_400), st.floats(1.6e9, 1.9e9))
def test_a_watermark_lag_reads_back_as_its_seconds(lag, now):
    """Within a day the lag is shown as a duration that reads back to within its shown unit;
    further behind, the watermark's own UTC date (history being replayed)."""
    watermark = int((now - lag) * 1e6)
    shown = views.watermark_lag(watermark, now)
    if now - watermark / 1e6 > views.HISTORY_LAG:
        assert shown == time.strftime("%Y-%m-%d", time.gmtime(now - lag))
        return
    assert len(shown) <= 6
    parts = re.fullmatch(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", shown)
    assert parts is not None, shown
    d, h, m, s = (int(p or 0) for p in parts.groups())
    seconds = ((d * 24 + h) * 60 + m) * 60 + s
    unit = 1 if lag < 3600 else 60 if lag < 86_400 else 3600
    assert seconds <= now - watermark / 1e6 < seconds + unit + 1


def test_a_watermark_ahead_or_missing():
    assert views.watermark_lag(None, 1e9) == "-"
    assert views.watermark_lag(int((1e9 + 5) * 1e6), 1e9) == "+5s"
    assert views.watermark_lag(int((1e9 - 12.4) * 1e6), 1e9) == "12s"
    assert views.watermark_lag(int((1e9 - 125) * 1e6), 1e9) == "2m05s"
    assert views.watermark_lag(1_577_836_800_000_000, 1.8e9) == "2020-01-01"


def test_checkpoint_line_names_the_last_and_the_one_in_flight():
    cp = {"every": 0.1, "last": {"id": 14, "seconds": 0.016, "bytes": 1338, "age": 75.0},
          "in_flight": {"id": 15, "for": 0.4, "waiting_for": ["tw/w/aggregate", "tw/w/sink"]}}
    size = "{}B".format
    assert views.checkpoint_line(cp, "tw", size) == (
        "checkpoint every 0.1s: last #14 1m15s ago, 1338B in 0.02s; #15 in flight 0.4s, waits for w/aggregate, w/sink")
    assert views.checkpoint_line({**cp, "last": None, "in_flight": None}, "tw", size) == \
        "checkpoint every 0.1s: none complete yet"
    assert views.checkpoint_line(None, "tw", size) == ""


@given(st.data(), st.integers(2, 8), st.integers(20, 200))
def test_optional_columns_go_first_and_only_while_too_wide(data, ncols, width):
    """Leaving columns out is laying out the table without them: the optional ones, in their
    order, each only while the line without it would still not fit."""
    headers = [f"h{i}" for i in range(ncols)]
    rows = data.draw(st.lists(st.lists(words, min_size=ncols, max_size=ncols), max_size=4))
    optional = data.draw(st.lists(st.sampled_from(range(1, ncols)), unique=True))
    natural = [max(len(r[i]) for r in [headers, *rows]) for i in range(ncols)]
    kept = list(range(ncols))
    for column in optional:
        if sum(natural[i] for i in kept) + 2 * (len(kept) - 1) <= width:
            break
        kept.remove(column)
    assert views.table_lines(headers, rows, width, None, optional) == views.table_lines(
        [headers[i] for i in kept], [[r[i] for i in kept] for r in rows], width)
    if not optional or sum(natural) + 2 * (ncols - 1) <= width:
        assert views.table_lines(headers, rows, width, None, optional) == views.table_lines(headers, rows, width)
