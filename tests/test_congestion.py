"""The congestion rule on its own: over the threshold for the set time, once per episode."""
from congregation.congestion import FULL_BACKLOG, STARTING_GRACE, CongestionWatch


def test_congestion_is_reported_once_after_the_set_time_and_again_after_relief():
    w = CongestionWatch()
    busy = {"busy": 0.95, "backlog": 0}
    assert w.observe("j", busy, 0.85, 2.0, now=0.0) is None
    assert w.observe("j", busy, 0.85, 2.0, now=1.9) is None
    record = w.observe("j", busy, 0.85, 2.0, now=2.0)
    assert record is not None and record["busy"] == 0.95
    assert w.observe("j", busy, 0.85, 2.0, now=5.0) is None          # same episode
    assert w.observe("j", {"busy": 0.1, "backlog": 0}, 0.85, 2.0, now=6.0) is None
    assert w.observe("j", busy, 0.85, 2.0, now=7.0) is None
    assert w.observe("j", busy, 0.85, 2.0, now=9.0) is not None      # a new episode


def test_a_full_input_counts_as_congestion_even_when_not_busy():
    w = CongestionWatch()
    full = {"busy": 0.0, "backlog": FULL_BACKLOG}
    assert w.observe("j", full, 0.85, 0.5, now=0.0) is None
    assert w.observe("j", full, 0.85, 0.5, now=0.5) is not None


def test_idle_is_under_a_quarter_of_busy_for_twice_the_time_and_longer_before_stream_rows_came():
    w = CongestionWatch()
    calm = {"busy": 0.2, "backlog": 0, "stream_rows": 10}
    assert w.idle("j", calm, 0.8, 1.0, now=6.0) is None
    assert w.idle("j", calm, 0.8, 1.0, now=7.9) is None
    record = w.idle("j", calm, 0.8, 1.0, now=8.0)
    assert record is not None and record["threshold_busy"] == 0.2
    starting = {"busy": 0.0, "backlog": 0, "stream_rows": 0}     # a split's new JOIN, before its rows
    assert w.idle("s", starting, 0.8, 1.0, now=0.0) is None
    assert w.idle("s", starting, 0.8, 1.0, now=2.0) is None        # twice `for`, but no rows yet
    assert w.idle("s", starting, 0.8, 1.0, now=STARTING_GRACE - 0.1) is None
    assert w.idle("s", starting, 0.8, 1.0, now=STARTING_GRACE) is not None
    assert w.idle("k", {"busy": 0.21, "backlog": 0, "stream_rows": 10}, 0.8, 1.0, now=0.0) is None
    assert w.idle("k", {"busy": 0.21, "backlog": 0, "stream_rows": 10}, 0.8, 1.0, now=9.0) is None
    assert w.idle("m", {"busy": 0.0, "backlog": 1, "stream_rows": 10}, 0.8, 1.0, now=0.0) is None
    assert w.idle("m", {"busy": 0.0, "backlog": 1, "stream_rows": 10}, 0.8, 1.0, now=9.0) is None
