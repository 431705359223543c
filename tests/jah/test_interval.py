"""IntervalJoin (the state of a stream-stream join) against DuckDB joining the whole input at once."""
from __future__ import annotations

from collections.abc import Iterator

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from jah.interval import IntervalJoin

T0 = 1_700_000_000_000_000  # µs
WINDOW = 200_000
ON = {"src": "src", "dst": "dst", "msg_id": "msg_id"}
TIME = {"stream": "ts", "with": "ts"}


def out_schema(stream: pa.Schema, with_: pa.Schema) -> pa.Schema:
    renamed = [pa.field(f"resp.{f.name}" if f.name in stream.names else f.name, f.type) for f in with_]
    return pa.schema(list(stream) + renamed)


def requests_responses(n: int, seed: int) -> tuple[pa.Table, pa.Table]:
    """Requests ~10k/s; 95% answered, 5% of those twice; latency -50..300 ms (some responses
    fall outside the 200 ms window, some before their request); 10% of requests repeat the key of
    a recent one (duplicate keys on both sides); ~1% null keys on each side."""
    rng = np.random.default_rng(seed)
    ts = np.sort(T0 + rng.integers(0, n * 100, n))
    src = rng.integers(0, 1000, n).astype(np.int32)
    dst = rng.integers(0, 1000, n).astype(np.int32)
    msg = np.arange(n, dtype=np.int64)
    dup = np.flatnonzero(rng.random(n) < 0.1)
    dup = dup[dup >= 20]
    orig = dup - rng.integers(1, 20, dup.size)
    src[dup], dst[dup], msg[dup] = src[orig], dst[orig], msg[orig]
    req = pa.table({"ts": ts, "src": pa.array(src, mask=rng.random(n) < 0.01), "dst": dst, "msg_id": msg})
    answered = np.flatnonzero(rng.random(n) < 0.95)
    answered = np.sort(np.concatenate([answered, answered[rng.random(answered.size) < 0.05]]))
    m = answered.size
    rts = ts[answered] + rng.integers(-50_000, 300_001, m)
    order = np.argsort(rts, kind="stable")
    answered, rts = answered[order], rts[order]
    resp = pa.table({"ts": rts, "src": src[answered],
                     "dst": pa.array(dst[answered], mask=rng.random(m) < 0.01),
                     "msg_id": msg[answered], "status": rng.integers(100, 600, m).astype(np.int16)})
    return req, resp


def with_time_type(table: pa.Table, unit: str | None) -> pa.Table:
    """``ts`` (int64 µs) as a timestamp of ``unit`` (ms: truncated to whole ms), or left alone."""
    if unit is None:
        return table
    ts = table.column("ts").to_numpy()
    scaled = {"s": ts // 1_000_000, "ms": ts // 1000, "us": ts, "ns": ts * 1000}[unit]
    return table.set_column(0, "ts", pa.array(scaled, pa.timestamp(unit)))


def feed_plan(req: pa.Table, resp: pa.Table, size: int, seed: int, shuffle: bool = False
              ) -> tuple[list[tuple[str, pa.RecordBatch]], pa.Table, pa.Table]:
    """Both sides cut into batches of about ``size`` rows, interleaved by event time, each row given
    ``rid``, its arrival position on its side; with ``shuffle``, rows out of order within a batch.
    Returns the plan and the two sides as fed (for the reference)."""
    rng = np.random.default_rng(seed)

    def batches(t: pa.Table) -> list[pa.RecordBatch]:
        out, start = [], 0
        while start < t.num_rows:
            n = int(rng.integers(size // 2, size * 3 // 2 + 1))
            b = t.slice(start, n).combine_chunks().to_batches()[0]
            if shuffle:
                b = b.take(rng.permutation(b.num_rows))
            out.append(b)
            start += n
        return out

    sb, wb = batches(req), batches(resp)
    first = lambda b: pc.min(b.column("ts")).cast(pa.int64()).as_py()
    plan, i, k, rid = [], 0, 0, {"s": 0, "w": 0}
    while i < len(sb) or k < len(wb):
        if k == len(wb) or (i < len(sb) and first(sb[i]) <= first(wb[k])):
            side, b, i = "s", sb[i], i + 1
        else:
            side, b, k = "w", wb[k], k + 1
        b = b.append_column("rid", pa.array(np.arange(rid[side], rid[side] + b.num_rows)))
        rid[side] += b.num_rows
        plan.append((side, b))
    fed = {s: pa.Table.from_batches([b for side, b in plan if side == s]) for s in "sw"}
    return plan, fed["s"], fed["w"]


def micros(column: pa.ChunkedArray) -> int:
    """The largest time of a column, in µs."""
    v = pc.max(column).cast(pa.int64()).as_py()
    unit = column.type.unit if pa.types.is_timestamp(column.type) else "us"
    return v // 1000 if unit == "ns" else v * {"s": 1_000_000, "ms": 1000, "us": 1}[unit]


def run(join: IntervalJoin, plan: list[tuple[str, pa.RecordBatch]], lateness: int,
        check_order: bool = True) -> Iterator[tuple[str, pa.RecordBatch]]:
    """Feed the plan with ``advance(min over sides of max time seen - lateness)`` in between;
    yield (what, output batch); checks each output's schema and, per add, its order."""
    seen = {"s": None, "w": None}
    s_rid = join.out_schema.get_field_index("rid")
    w_rid = join.out_schema.get_field_index("resp.rid")
    for side, batch in plan:
        out = join.add_stream(batch) if side == "s" else join.add_with(batch)
        assert out.schema == join.out_schema
        if check_order and out.num_rows:
            new, old = (s_rid, w_rid) if side == "s" else (w_rid, s_rid)
            # rids are arrival positions: new side's rid then the held side's, strictly increasing
            a, b = out.column(new).to_numpy(), out.column(old).to_numpy()
            assert np.all((a[1:] > a[:-1]) | ((a[1:] == a[:-1]) & (b[1:] > b[:-1])))
        yield "add", out
        t = micros(batch.column("ts"))
        seen[side] = t if seen[side] is None else max(seen[side], t)
        if seen["s"] is not None and seen["w"] is not None:
            yield "advance", join.advance(min(seen["s"], seen["w"]) - lateness)
    yield "finish", join.finish()
    assert join.rows_held == 0


def reference(s: pa.Table, w: pa.Table, window: int, how: str, keys: dict[str, str]) -> np.ndarray:
    con = duckdb.connect()
    con.register("s", s)
    con.register("w", w)

    def us(col: str, t: pa.DataType) -> str:
        return f"epoch_us({col})" if pa.types.is_timestamp(t) else col

    on = " AND ".join(f"s.{a} = w.{b}" for a, b in keys.items())
    ts, tw = us("s.ts", s.schema.field("ts").type), us("w.ts", w.schema.field("ts").type)
    rows = con.execute(f"SELECT s.rid AS srid, coalesce(w.rid, -1) AS wrid FROM s {how.upper()} JOIN w "
                       f"ON {on} AND abs({ts} - {tw}) <= {window}").fetchnumpy()
    pairs = np.stack([rows["srid"], rows["wrid"]], axis=1).astype(np.int64)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def pairs_of(outputs: list[pa.RecordBatch], s: pa.Table, w: pa.Table) -> np.ndarray:
    """The (stream rid, with rid or -1) pairs emitted, sorted; checks every column was carried."""
    table = pa.Table.from_batches(outputs)
    n_s = s.num_columns
    srid = table.column("rid").to_numpy()
    wrid = table.column("resp.rid").fill_null(-1).to_numpy()
    assert table.select(range(n_s)).rename_columns(s.column_names).equals(s.take(srid))
    matched = wrid >= 0
    with_cols = table.select(range(n_s, table.num_columns)).rename_columns(w.column_names)
    assert with_cols.filter(matched).equals(w.take(wrid[matched]))
    assert with_cols.filter(pa.array(~matched)).to_pydict() == {c: [None] * int((~matched).sum())
                                                               for c in w.column_names}
    pairs = np.stack([srid, wrid], axis=1).astype(np.int64)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def joined(req: pa.Table, resp: pa.Table, how: str, size: int, lateness: int, seed: int = 1,
           shuffle: bool = False, window: int = WINDOW, keys: dict[str, str] = ON) -> None:
    plan, s, w = feed_plan(req, resp, size, seed, shuffle)
    join = IntervalJoin(s.schema, w.schema, keys, TIME, window, how, out_schema(s.schema, w.schema))
    outputs = []
    for what, out in run(join, plan, lateness):
        if how == "inner" and what != "add":
            assert out.num_rows == 0
        outputs.append(out)
    got = pairs_of(outputs, s, w)
    want = reference(s, w, window, how, keys)
    assert len(got) == len(want)
    assert np.array_equal(got, want)
    assert len(np.unique(got, axis=0)) == len(got)  # exactly once (rids are unique per side)


@pytest.mark.parametrize("how", ["inner", "left"])
@pytest.mark.parametrize("size,lateness", [(3000, 0), (1000, 150_000)])
def test_matches_duckdb(how: str, size: int, lateness: int) -> None:
    req, resp = requests_responses(30_000, seed=2)
    joined(req, resp, how, size, lateness)


@pytest.mark.parametrize("how", ["inner", "left"])
def test_rows_out_of_order_within_batches(how: str) -> None:
    req, resp = requests_responses(20_000, seed=3)
    joined(req, resp, how, 2000, 50_000, shuffle=True)


def test_string_keys() -> None:
    req, resp = requests_responses(20_000, seed=4)
    as_text = lambda t: t.set_column(3, "msg_id", pc.cast(t.column("msg_id"), pa.string()))
    joined(as_text(req), as_text(resp), "left", 2500, 0)
    joined(as_text(req), as_text(resp), "inner", 2500, 0, keys={"msg_id": "msg_id"})


@pytest.mark.parametrize("units", [("us", "us"), ("ms", "ns")])
def test_timestamp_units(units: tuple[str, str]) -> None:
    req, resp = requests_responses(10_000, seed=5)
    joined(with_time_type(req, units[0]), with_time_type(resp, units[1]), "left", 1500, 0)


def test_large_window_many_chunks() -> None:
    """A window spanning many batches: held chunks get merged, and every pair is still found once."""
    req, resp = requests_responses(20_000, seed=6)
    joined(req, resp, "left", 300, 0, window=1_500_000)
    joined(req, resp, "inner", 300, 0, window=0)


def test_state_stays_bounded_over_a_long_stream() -> None:
    """300k rows a side over 300 s: what is held tracks the window, not the stream's length."""
    n, rate, window, lateness = 300_000, 1000, 1_000_000, 500_000
    rng = np.random.default_rng(7)
    ts = T0 + np.sort(rng.integers(0, n * 1_000_000 // rate, n))
    msg = np.arange(n, dtype=np.int64)
    key = rng.integers(0, 1000, n).astype(np.int32)
    req = pa.table({"ts": pa.array(ts, pa.timestamp("us")), "src": key, "dst": key, "msg_id": msg})
    rts = ts + rng.integers(0, 800_000, n)
    order = np.argsort(rts, kind="stable")
    resp = pa.table({"ts": pa.array(rts[order], pa.timestamp("us")), "src": key[order], "dst": key[order],
                     "msg_id": msg[order]})
    size = 1000  # ~1 s of rows
    plan, s, w = feed_plan(req, resp, size, 8)
    join = IntervalJoin(s.schema, w.schema, ON, TIME, window, "left", out_schema(s.schema, w.schema))
    held, emitted, unmatched = [], 0, 0
    for what, out in run(join, plan, lateness, check_order=False):
        held.append(join.rows_held)
        emitted += out.num_rows
        if what != "add":
            unmatched += out.num_rows
    # Each side holds at most a batch beyond its watermark (batches are up to 1.5 s long) plus
    # window + lateness behind it: under ~4 s of rows a side, whatever the stream's length.
    bound = 2 * 4 * rate
    assert max(held) < bound
    assert max(held[len(held) // 2:]) < bound
    assert emitted == n and unmatched == 0  # every response within 800 ms of its request
    assert held[-1] == 0


def batch(ts: list[int | None], keys: list[int | None], rids: list[int]) -> pa.RecordBatch:
    return pa.record_batch({"ts": pa.array(ts, pa.int64()), "k": pa.array(keys, pa.int64()),
                            "rid": pa.array(rids, pa.int64())})


def small_join(how: str = "inner", window: int = 10) -> IntervalJoin:
    schema = batch([], [], []).schema
    return IntervalJoin(schema, schema, {"k": "k"}, TIME, window, how, out_schema(schema, schema))


def rid_pairs(out: pa.RecordBatch) -> list[tuple[int, int | None]]:
    return list(zip(out.column("rid").to_pylist(), out.column("resp.rid").to_pylist()))


def test_each_pair_once_whichever_side_arrives_first() -> None:
    s = batch([0, 0, 5, 0], [1, 1, 2, None], [0, 1, 2, 3])
    w = batch([0, 3, 10, 0], [1, 2, 2, None], [0, 1, 2, 3])
    want = [(0, 0), (1, 0), (2, 1), (2, 2)]
    a = small_join()
    assert a.add_stream(s).num_rows == 0
    assert rid_pairs(a.add_with(w)) == [(0, 0), (1, 0), (2, 1), (2, 2)]
    b = small_join()
    assert b.add_with(w).num_rows == 0
    assert rid_pairs(b.add_stream(s)) == want  # stream-row order now, the same pairs
    # Split into several batches each way, alternating: still every pair exactly once.
    s_parts, w_parts = [s.slice(0, 2), s.slice(2)], [w.slice(0, 1), w.slice(1)]
    for first in ("s", "w"):
        j, got = small_join(), []
        for i in range(2):
            for side in (first, "w" if first == "s" else "s"):
                got += rid_pairs(j.add_stream(s_parts[i]) if side == "s" else j.add_with(w_parts[i]))
        assert sorted(got) == want


def test_output_order_and_window_edges() -> None:
    j = small_join(window=10)
    j.add_with(batch([100, 90], [7, 7], [0, 1]))
    j.add_with(batch([111, 95], [7, 8], [2, 3]))
    # stream row order, then with arrival order; |dt| == window matches, window + 1 does not
    out = j.add_stream(batch([101, 100, 85], [7, 8, 7], [0, 1, 2]))
    assert rid_pairs(out) == [(0, 0), (0, 2), (1, 3), (2, 1)]
    out = j.add_with(batch([95, 100], [7, 7], [4, 5]))
    assert rid_pairs(out) == [(0, 4), (2, 4), (0, 5)]  # with-row order, then stream arrival


def test_window_edges_with_sorted_batches() -> None:
    """Exactly ``window`` apart matches, before or after, whichever chunk is pruned by time."""
    j = small_join(window=10)
    j.add_with(batch([80, 90], [1, 1], [0, 1]))
    j.add_with(batch([111, 112], [1, 1], [2, 3]))
    assert rid_pairs(j.add_stream(batch([100, 101], [1, 1], [0, 1]))) == [(0, 1), (1, 2)]
    assert rid_pairs(j.add_with(batch([89, 90, 111], [1, 1, 1], [4, 5, 6]))) == [(0, 5), (1, 6)]
    # A watermark of 111: rows at 101 may still meet a row at 111, those at 100 may not.
    j.advance(111)
    assert j.add_with(batch([111], [1], [7])).column("rid").to_pylist() == [1]


def test_left_join_emits_unmatched_once_when_evicted() -> None:
    j = small_join("left", window=10)
    assert j.add_stream(batch([0, 5, 50, None], [1, 2, 3, 1], [0, 1, 2, 3])).num_rows == 0
    assert rid_pairs(j.add_with(batch([4, 40, None], [1, 3, 1], [0, 1, 2]))) == [(0, 0), (2, 1)]
    assert j.rows_held == 7
    # watermark 16: rows before 6 can match nothing more; stream row 1 never matched, nor row 3
    # (a null time matches nothing, not even another null time)
    assert rid_pairs(j.advance(16)) == [(1, None), (3, None)]
    assert j.advance(16).num_rows == 0
    assert j.rows_held == 2
    assert j.add_with(batch([55], [3], [3])).num_rows == 1
    assert j.finish().num_rows == 0  # row 2 matched
    assert j.rows_held == 0
    j.add_stream(batch([100], [9], [4]))
    assert rid_pairs(j.finish()) == [(4, None)]



def operations(plan: list[tuple[str, pa.RecordBatch]], lateness: int) -> list[tuple]:
    """What `run` does, as a list: ("s"|"w", batch) adds and ("advance", µs) in between, then finish."""
    ops: list[tuple] = []
    seen: dict[str, int] = {}
    for side, batch in plan:
        ops.append((side, batch))
        seen[side] = max(seen.get(side, micros(batch.column("ts"))), micros(batch.column("ts")))
        if len(seen) == 2:
            ops.append(("advance", min(seen.values()) - lateness))
    return ops + [("finish", None)]


def apply(join: IntervalJoin, ops: list[tuple]) -> list[pa.RecordBatch]:
    do = {"s": join.add_stream, "w": join.add_with, "advance": join.advance, "finish": lambda _: join.finish()}
    return [do[what](arg) for what, arg in ops]


@pytest.mark.parametrize("how", ["inner", "left"])
def test_the_state_written_at_a_checkpoint_and_read_back_continues_the_join_exactly(how: str, tmp_path) -> None:
    """A checkpoint between two steps: the state goes through Arrow IPC files (as a STREAM_JOIN
    writes it) into a new IntervalJoin, which takes the rest of the input; every pair comes out
    exactly once, as DuckDB joins the whole input."""
    from jah.checkpoint import State, read_state, write_state

    req, resp = requests_responses(8_000, seed=5)
    plan, s, w = feed_plan(req, resp, 700, seed=5)
    ops = operations(plan, 50_000)
    want = reference(s, w, WINDOW, how, ON)
    for cut in (1, len(ops) // 3, len(ops) - 3):
        join = IntervalJoin(s.schema, w.schema, ON, TIME, WINDOW, how, out_schema(s.schema, w.schema))
        outputs = apply(join, ops[:cut])
        path = tmp_path / f"cut-{cut}"
        write_state(path, State(join.state(), {"cut": join.cut}))
        state = read_state(str(path))
        again = IntervalJoin(s.schema, w.schema, ON, TIME, WINDOW, how, out_schema(s.schema, w.schema))
        again.restore(state.tables, int(state.meta["cut"]))
        assert (again.rows_held, again.cut) == (join.rows_held, join.cut)
        assert join.rows_held > 0 or cut == 1
        outputs += apply(again, ops[cut:])
        assert np.array_equal(pairs_of(outputs, s, w), want), f"checkpoint after step {cut}"
