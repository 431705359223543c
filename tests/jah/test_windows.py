"""The aggregate's window state (jah.windows), PARTIAL and MERGE, against DuckDB computing the same."""
from __future__ import annotations

import datetime
import math
from collections.abc import Iterator

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from hallelujah.tradecraft_schemas import Input, derive_aggregate
from jah import windows
from jah.kernels.hashing import hash_columns, partitions_of
from jah.windows import (
    FixedWindows,
    MergeAggregate,
    PartialAggregate,
    finalize,
    to_micros,
)

HOUR_US = 3_600_000_000
T0 = 1_700_000_000   # seconds; a whole number of hours is not needed: windows align to the epoch


def make_spec(measures: dict[str, str], group: list[str] | None = None, **extra: str) -> dict:
    spec = {"name": "hourly", "kind": "aggregate", "input": "clicks", "time": "ts", "window": "1h",
            "measures": measures, **extra}
    if group is not None:
        spec["group"] = group
    return spec


def out_schema_of(spec: dict, schema: pa.Schema) -> pa.Schema:
    return derive_aggregate(spec, "analytics[0]", {"input": Input("clicks", schema)})


def clicks(n: int, seed: int = 7, hours: int = 12, unit: str = "s") -> pa.Table:
    """Sorted event times, skewed users (a few very frequent), nulls in x, y, user and country."""
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(T0, T0 + hours * 3600, n))
    uid = np.where(rng.random(n) < 0.5, rng.zipf(1.5, n) % 500, rng.integers(0, 20_000, n))
    user = pa.array([f"u{u:07d}" for u in uid.tolist()], mask=rng.random(n) < 0.02)
    action = pa.array(rng.choice(["click", "impression", "view"], n, p=[0.2, 0.7, 0.1]),
                      mask=rng.random(n) < 0.01)
    country = pa.array(rng.choice(["FR", "DE", "US", "JP"], n), mask=rng.random(n) < 0.05)
    x = pa.array(rng.integers(-1000, 1000, n), mask=rng.random(n) < 0.1)
    y = pa.array(rng.normal(size=n), mask=rng.random(n) < 0.1)
    per = {"s": 1, "ms": 1_000, "us": 1_000_000}[unit]
    return pa.table({"ts": pa.array(ts * per).cast(pa.timestamp(unit)), "user": user, "action": action,
                     "country": country, "tier": pa.array(rng.integers(0, 3, n), pa.int32()), "x": x, "y": y})


def reference(table: pa.Table, measures: dict[str, str], group: list[str], hop_s: int = 3600,
              size_s: int = 3600) -> list[tuple]:
    """DuckDB: rows repeated once per window holding them, then grouped. Sorted like the output."""
    t = to_micros(table.column("ts"))[0]
    last = t // (hop_s * 1_000_000) * (hop_s * 1_000_000)
    k = size_s // hop_s
    data = pa.concat_tables(
        [table.append_column("w", pa.array(last - j * hop_s * 1_000_000)) for j in range(k)])
    sql = {"count()": "count(*)", "count_distinct(user)": "count(DISTINCT \"user\")",
           "count_distinct(action)": "count(DISTINCT action)",
           "count_if(action == 'click')": "count(*) FILTER (WHERE action = 'click')",
           "count_if(action == 'impression')": "count(*) FILTER (WHERE action = 'impression')",
           "sum(x)": "sum(x)", "min(x)": "min(x)", "max(x)": "max(x)", "mean(x)": "avg(x)",
           "sum(y)": "sum(y)", "min(y)": "min(y)", "max(y)": "max(y)", "mean(y)": "avg(y)"}
    cols = ", ".join([f'"{g}"' for g in group] + [sql[m] for m in measures.values()])
    by = ", ".join(["w"] + [f'"{g}" NULLS LAST' for g in group])
    con = duckdb.connect()
    con.register("t", data)
    keys = ", ".join(["w"] + [f'"{g}"' for g in group])
    rows = con.execute(f"SELECT w, {cols} FROM t GROUP BY {keys} ORDER BY {by}").fetchall()
    return [(r[0], r[0] + size_s * 1_000_000, *r[1:]) for r in rows]


def rows_of(out: pa.Table) -> list[tuple]:
    """Output rows with window bounds as µs integers, for comparison with `reference`."""
    cols = [pc.cast(out.column(0), pa.int64()), pc.cast(out.column(1), pa.int64())] + out.columns[2:]
    return list(zip(*[c.to_pylist() for c in cols]))


def assert_rows(got: list[tuple], want: list[tuple]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert len(g) == len(w)
        for a, b in zip(g, w):
            if isinstance(a, float) or isinstance(b, float):
                assert a == pytest.approx(b, rel=1e-9, abs=1e-9, nan_ok=True), (g, w)
            else:
                assert a == b, (g, w)


def assert_sorted(out: pa.Table, group: list[str]) -> None:
    keys = [("window_start", "ascending")] + [(g, "ascending") for g in group]
    assert out.equals(out.sort_by(keys))


def batches(table: pa.Table, size: int) -> Iterator[pa.RecordBatch]:
    yield from table.combine_chunks().to_batches(max_chunksize=size)


@pytest.fixture(params=["lazy", "eager"])
def compaction(request, monkeypatch):
    """lazy: the module's thresholds (short windows close before any re-grouping); eager: re-group
    after every batch, so that the compaction paths are checked against the reference too."""
    if request.param == "eager":
        monkeypatch.setattr(windows, "COMPACT_ROWS", 0)
        monkeypatch.setattr(windows, "COMPACT_PIECES", 1)
    return request.param


class Pipeline:
    """`parts` PARTIAL instances fed by hash of `route` (mod parts), and one MERGE, as the runtime wires them."""

    def __init__(self, spec: dict, schema: pa.Schema, parts: int, route: str = "user") -> None:
        self.out_schema = out_schema_of(spec, schema)
        self.partials = [PartialAggregate(spec, schema, self.out_schema) for _ in range(parts)]
        self.merge = MergeAggregate(spec, self.out_schema, self.partials[0].partial_schema)
        self.route = route
        self.results: list[pa.Table] = []

    def add(self, batch: pa.RecordBatch) -> None:
        part = partitions_of(hash_columns([batch.column(self.route)])) % len(self.partials)
        for i, p in enumerate(self.partials):
            p.add(batch.filter(pa.array(part == i)))

    def close(self, watermark_us: int) -> None:
        for p in self.partials:
            self.merge.add(p.close(watermark_us))
        self.results.append(self.merge.close(watermark_us))

    def open_results(self) -> pa.Table:
        return self.merge.open_results([p.open_partials() for p in self.partials])

    def output(self) -> pa.Table:
        return pa.concat_tables(self.results)


# ---------------------------------------------------------------- windows

def brute_windows(t: int, size: int, hop: int) -> set[int]:
    first = (t - size) // hop * hop
    return {s for s in range(first, t + hop, hop) if s <= t < s + size}


@pytest.mark.parametrize("size,hop", [(10, 10), (12, 3), (60, 15), (7, 1)])
def test_assign_matches_the_definition_including_negative_times(size, hop):
    t = np.random.default_rng(1).integers(-200, 200, 300)
    w = FixedWindows(size, hop)
    rows, starts = w.assign(t)
    got: dict[int, set[int]] = {i: set() for i in range(t.size)}
    for r, s in zip(rows.tolist(), starts.tolist()):
        assert s not in got[r]
        got[r].add(s)
    assert got == {i: brute_windows(int(v), size, hop) for i, v in enumerate(t)}
    assert (w.last_end(t) == np.array([max(brute_windows(int(v), size, hop)) + size for v in t])).all()


def test_time_units_and_zones_convert_to_microseconds():
    for unit, per in (("s", 1_000_000), ("ms", 1_000), ("us", 1), ("ns", 0.001)):
        values = [-1, 0, 1_700_000_123, None]
        col = pa.array(values, pa.timestamp(unit, tz="Europe/Paris"))
        t, valid = to_micros(pa.chunked_array([col[:2], col[2:]]))
        assert valid is not None and valid.tolist() == [True, True, True, False]
        assert t[:3].tolist() == [math.floor(v * per) for v in values[:3]]
    with pytest.raises(TypeError, match="timestamp"):
        to_micros(pa.array([1, 2]))


def test_session_windows_are_refused_with_a_clear_error():
    spec = {"name": "s", "kind": "aggregate", "input": "clicks", "time": "ts", "session": "30m",
            "measures": {"n": "count()"}}
    schema = clicks(10).schema
    out = pa.schema([("window_start", pa.timestamp("us")), ("window_end", pa.timestamp("us")), ("n", pa.int64())])
    with pytest.raises(ValueError, match="session windows are not supported yet"):
        PartialAggregate(spec, schema, out)


# ---------------------------------------------------------------- PARTIAL + MERGE against DuckDB

COUNTS = {"uniq": "count_distinct(user)", "clicks": "count_if(action == 'click')", "n": "count()"}


def test_three_partials_by_hash_of_the_distinct_field_match_duckdb(compaction):
    table = clicks(60_000, hours=12)
    spec = make_spec(COUNTS)
    pipe = Pipeline(spec, table.schema, parts=3)
    assert pipe.out_schema.names == ["window_start", "window_end", "uniq", "clicks", "n"]
    consumed = 0
    checked_open = False
    for batch in batches(table, 5_000):
        pipe.add(batch)
        consumed += batch.num_rows
        watermark = int(to_micros(batch.column("ts"))[0].max())   # max time seen so far (sorted input)
        pipe.close(watermark)
        if consumed >= 32_000 and not checked_open:
            # open_results mid-stream: the reference over rows consumed so far, windows not yet closed
            want = [r for r in reference(table.slice(0, consumed), COUNTS, []) if r[1] > watermark]
            got = pipe.open_results()
            assert got.schema == pipe.out_schema
            assert_rows(rows_of(got), want)
            assert 1 <= len(want) <= 2
            checked_open = True
            # only the open window's state is left in each instance
            assert all(p.windows_open == 1 for p in pipe.partials)
    pipe.close(2**62)
    out = pipe.output()
    assert out.schema == pipe.out_schema
    assert_sorted(out, [])
    assert_rows(rows_of(out), reference(table, COUNTS, []))
    assert checked_open
    assert all(p.rows_held == 0 and p.windows_open == 0 and p.rows_dropped == 0 for p in pipe.partials)
    assert pipe.merge.rows_held == 0


MEASURES = {"n": "count()", "uniq": "count_distinct(user)", "total": "sum(x)", "lo": "min(x)", "hi": "max(x)",
            "avg": "mean(x)", "ftotal": "sum(y)", "flo": "min(y)", "fhi": "max(y)", "favg": "mean(y)",
            "clicks": "count_if(action == 'click')"}


@pytest.mark.parametrize("unit", ["ms", "us"])
def test_grouped_measures_with_nulls_match_duckdb(unit, compaction):
    table = clicks(30_000, seed=3, hours=6, unit=unit)
    table = table.set_column(0, "ts", table.column("ts").cast(pa.timestamp(unit, tz="UTC")))
    group = ["country", "tier"]
    spec = make_spec(MEASURES, group)
    pipe = Pipeline(spec, table.schema, parts=2)
    types = dict(zip(pipe.out_schema.names, pipe.out_schema.types))
    assert types["total"] == pa.int64() and types["lo"] == pa.int64() and types["avg"] == pa.float64()
    assert types["ftotal"] == pa.float64() and types["country"] == pa.string() and types["tier"] == pa.int32()
    for batch in batches(table, 4_000):
        pipe.add(batch)
        pipe.close(int(to_micros(batch.column("ts"))[0].max()))
    pipe.close(2**62)
    out = pipe.output()
    assert out.schema == pipe.out_schema
    assert_sorted(out, group)
    want = reference(table, MEASURES, group)
    assert any(r[2] is None for r in want)   # a null group key forms its own group
    assert_rows(rows_of(out), want)


def test_all_null_values_give_null_sums_and_zero_distinct_counts():
    table = clicks(2_000, hours=2)
    n = table.num_rows
    table = (table.set_column(table.schema.get_field_index("x"), "x", pa.nulls(n, pa.int64()))
             .set_column(table.schema.get_field_index("user"), "user", pa.nulls(n, pa.string())))
    spec = make_spec(MEASURES)
    out_schema = out_schema_of(spec, table.schema)
    p = PartialAggregate(spec, table.schema, out_schema)
    p.add(table)
    out = finalize(spec, out_schema, p.partial_schema, [p.close(2**62)])
    assert out.num_rows == 3   # two hours of data, not aligned to the hour
    assert out.column("uniq").to_pylist() == [0, 0, 0]
    for name in ("total", "lo", "hi", "avg"):
        assert out.column(name).null_count == 3
    assert_rows(rows_of(out), reference(table, MEASURES, []))


def test_hop_windows_match_duckdb(compaction):
    table = clicks(20_000, seed=5, hours=5)
    measures = {"uniq": "count_distinct(user)", "n": "count()", "total": "sum(x)", "favg": "mean(y)"}
    spec = make_spec(measures, ["country"], hop="15m")
    pipe = Pipeline(spec, table.schema, parts=3)
    for batch in batches(table, 3_000):
        pipe.add(batch)
        pipe.close(int(to_micros(batch.column("ts"))[0].max()))
    pipe.close(2**62)
    out = pipe.output()
    assert_sorted(out, ["country"])
    want = reference(table, measures, ["country"], hop_s=900)
    assert_rows(rows_of(out), want)
    starts = out.column("window_start").cast(pa.int64()).to_numpy()
    assert ((starts % (900 * 1_000_000)) == 0).all()


def test_an_empty_group_list_and_two_distinct_fields_in_one_instance():
    table = clicks(15_000, seed=11, hours=3)
    measures = {"uniq": "count_distinct(user)", "kinds": "count_distinct(action)", "n": "count()",
                "imps": "count_if(action == 'impression')"}
    spec = make_spec(measures, [])
    pipe = Pipeline(spec, table.schema, parts=1)
    for batch in batches(table, 5_000):
        pipe.add(batch)
    pipe.close(2**62)
    out = pipe.output()
    assert out.column_names == ["window_start", "window_end", *measures]
    assert_rows(rows_of(out), reference(table, measures, []))


# ---------------------------------------------------------------- top: rows, not measures

def top_reference(table: pa.Table, group: list[str], by: str, order: str, n: int, with_ties: bool,
                  size_s: int = 3600, hop_s: int = 3600) -> list[tuple]:
    """DuckDB: rows repeated once per window holding them, numbered by ROW_NUMBER (RANK with ties)
    over (window, group) by `by`, ties by time then the other fields, all ascending, nulls last."""
    t = to_micros(table.column("ts"))[0]
    last = t // (hop_s * 1_000_000) * (hop_s * 1_000_000)
    data = pa.concat_tables([table.append_column("w", pa.array(last - j * hop_s * 1_000_000))
                             for j in range(size_s // hop_s)])
    quoted = {f: f'"{f}"' for f in table.column_names}
    rows = [quoted[f] for f in table.column_names if f not in group]
    ties = list(dict.fromkeys(quoted[f] for f in ["ts", *table.column_names] if f not in (*group, by)))
    direction = f"{quoted[by]} {order.upper()}"
    ranked = direction if with_ties else ", ".join([direction, *ties])
    keys = ", ".join(["w", *(quoted[g] for g in group)])
    sorted_keys = ", ".join(["w", *(f"{quoted[g]} NULLS LAST" for g in group)])
    nan = f" AND NOT isnan({quoted[by]})" if pa.types.is_floating(table.schema.field(by).type) else ""
    con = duckdb.connect()
    con.register("t", data)
    sql = (f"SELECT w, w + {size_s * 1_000_000}, {', '.join([*(quoted[g] for g in group), *rows])}, "
           f"{'rank' if with_ties else 'row_number'}() OVER (PARTITION BY {keys} ORDER BY {ranked}) AS r "
           f"FROM t WHERE {quoted[by]} IS NOT NULL{nan} QUALIFY r <= {n} "
           f"ORDER BY {sorted_keys}, r, {direction}, {', '.join(ties)}")
    return con.execute(sql).fetchall()


@pytest.mark.parametrize(("group", "by", "order", "n", "with_ties", "hop"), [
    (["country"], "x", "desc", 3, False, "1h"),          # top-3 per window and group, nulls in both
    ([], "y", "asc", 1, True, "1h"),                     # arg-min with ties (and NaN, not ranked)
    (["tier", "action"], "user", "desc", 2, True, "20m"),  # strings, two group fields, hopping windows
    ([], "x", "desc", 1, False, "30m"),
])
def test_top_rows_over_three_partials_match_duckdb_row_for_row(group, by, order, n, with_ties, hop, compaction):
    table = clicks(20_000, hours=8)
    y = table.column("y").to_numpy(zero_copy_only=False).copy()
    y[::53] = -9.5          # below any other: the minimum of every window, many times
    y[::97] = np.nan
    table = table.set_column(6, "y", pa.array(y, mask=table.column("y").is_null().to_numpy(zero_copy_only=False)))
    spec = make_spec({}, group, hop=hop, top={"n": n, "by": by, "order": order, "with_ties": with_ties})
    pipe = Pipeline(spec, table.schema, parts=3)
    assert pipe.out_schema.names == ["window_start", "window_end", *group,
                                     *[f for f in table.column_names if f not in group], "rank"]
    for batch in batches(table, 3_000):
        pipe.add(batch)
        pipe.close(int(to_micros(batch.column("ts"))[0].max()))
    pipe.close(2**62)
    want = top_reference(table, group, by, order, n, with_ties, hop_s={"1h": 3600, "30m": 1800, "20m": 1200}[hop])
    places = [(r[0], *r[2:2 + len(group)], r[-1]) for r in want]     # (window, group, rank)
    assert len(want) > 8 and (len(set(places)) < len(places)) == with_ties   # ties kept where asked
    assert_rows(rows_of(pipe.output()), want)


def test_a_top_of_an_aggregate_names_its_window_fields_after_it():
    counts = pa.schema([("window_start", pa.timestamp("us")), ("window_end", pa.timestamp("us")),
                        ("auction", pa.int64()), ("rank", pa.int64()), ("num", pa.int64())])
    spec = {"name": "hot", "kind": "aggregate", "input": "counts", "time": "window_end", "window": "2s",
            "top": {"n": 1, "by": "num"}}
    out = derive_aggregate(spec, "analytics[0]", {"input": Input("counts", counts)})
    assert out.names == ["window_start", "window_end", "counts.window_start", "counts.window_end", "auction",
                         "counts.rank", "num", "rank"]
    us = 1_000_000
    rows = pa.table({"window_start": pa.array([0, 0, 2 * us], pa.timestamp("us")),
                     "window_end": pa.array([10 * us, 10 * us, 12 * us], pa.timestamp("us")),
                     "auction": [7, 8, 7], "rank": [5, 6, 7], "num": [3, 9, 4]}, schema=counts)
    p = PartialAggregate(spec, counts, out)
    p.add(rows)
    got = finalize(spec, out, p.partial_schema, [p.close(2**62)])
    assert got.to_pylist() == [
        {"window_start": dt(10), "window_end": dt(12), "counts.window_start": dt(0), "counts.window_end": dt(10),
         "auction": 8, "counts.rank": 6, "num": 9, "rank": 1},
        {"window_start": dt(12), "window_end": dt(14), "counts.window_start": dt(2), "counts.window_end": dt(12),
         "auction": 7, "counts.rank": 7, "num": 4, "rank": 1}]


def dt(seconds: int) -> datetime.datetime:
    return datetime.datetime(1970, 1, 1) + datetime.timedelta(seconds=seconds)


# ---------------------------------------------------------------- late rows, queries, state

def test_late_rows_are_masked_and_ignored_after_a_close():
    table = clicks(4_000, hours=4)
    spec = make_spec(COUNTS, hop="30m")
    out_schema = out_schema_of(spec, table.schema)
    p = PartialAggregate(spec, table.schema, out_schema)
    assert not p.late_mask(table).any()   # nothing closed yet
    t = to_micros(table.column("ts"))[0]
    watermark = int(t[2_000])
    early, late_table = table.slice(0, 2_000), table.slice(0, 1_000)
    p.add(early)
    p.close(watermark)
    mask = p.late_mask(table)
    # late: the last window of the row (start at the row's half hour) ended by the watermark
    last_end = (t // (1800 * 10**6)) * (1800 * 10**6) + HOUR_US
    assert (mask == (last_end <= watermark)).all() and mask.any() and not mask.all()
    before = p.open_partials()
    p.add(late_table)   # every window of these rows, or some, closed: only the open ones count them
    after = p.open_partials()
    late_rows = int(mask[:1_000].sum())
    assert p.rows_dropped == late_rows
    # rows not late but in a closed hop window still count in their open window
    reopened = pa.concat_tables([early, late_table.filter(pa.array(~mask[:1_000]))])
    want = [r for r in reference(reopened, {"n": "count()"}, [], hop_s=1800) if r[1] > watermark]
    got = finalize(spec, out_schema, p.partial_schema, [after])
    assert [(r[0], r[4]) for r in rows_of(got)] == [(r[0], r[2]) for r in want]
    assert before.column("__window").to_pylist() == after.column("__window").to_pylist()
    # null times are neither late nor counted
    nulls = table.slice(0, 3).set_column(0, "ts", pa.nulls(3, table.schema.field("ts").type))
    assert not p.late_mask(nulls).any()
    p.add(nulls)
    assert p.rows_dropped == late_rows + 3


def test_open_results_combine_the_merge_and_the_partials_and_skip_closed_windows(compaction):
    table = clicks(9_000, hours=3)
    spec = make_spec(MEASURES, ["country"])
    pipe = Pipeline(spec, table.schema, parts=2)
    first, second = table.slice(0, 6_000), table.slice(6_000)
    for batch in batches(first, 2_000):
        pipe.add(batch)
    watermark = int(to_micros(first.column("ts"))[0].max())
    # instance 0 has passed the watermark, instance 1 not yet: the merge holds part of a window
    # that instance 1 still holds open; a query sees both halves
    pipe.merge.add(pipe.partials[0].close(watermark))
    for batch in batches(second, 2_000):
        pipe.add(batch)
    everything = reference(table, MEASURES, ["country"])
    assert pipe.merge.rows_held > 0
    assert_rows(rows_of(pipe.open_results()), everything)
    # instance 1 catches up and the merge closes: closed windows leave the query
    pipe.close(watermark)
    assert_rows(rows_of(pipe.output()), [r for r in everything if r[1] <= watermark])
    got = pipe.open_results()
    assert_rows(rows_of(got), [r for r in everything if r[1] > watermark])
    assert_sorted(got, ["country"])
    # a stale partial of a window the merge already closed is not mixed into the open results
    q = PartialAggregate(spec, table.schema, pipe.out_schema)
    q.add(first)
    stale = q.close(watermark)
    assert stale.num_rows > 0
    assert pipe.merge.open_results([stale, *(p.open_partials() for p in pipe.partials)]).equals(got)
    pipe.merge.add(stale)
    assert pipe.merge.rows_dropped == stale.num_rows
    assert finalize(spec, pipe.out_schema, pipe.merge.partial_schema, []).num_rows == 0


def test_state_stays_bounded_by_groups_and_distinct_values(monkeypatch):
    monkeypatch.setattr(windows, "COMPACT_ROWS", 0)   # the rule alone, without the floor for short windows
    table = clicks(40_000, seed=2, hours=48)
    spec = make_spec({"uniq": "count_distinct(user)", "n": "count()", "total": "sum(x)"}, ["country"], window="1d")
    out_schema = out_schema_of(spec, table.schema)
    p = PartialAggregate(spec, table.schema, out_schema)
    con = duckdb.connect()
    seen = 0
    for batch in batches(table, 1_000):
        p.add(batch)
        seen += batch.num_rows
        con.register("t", table.slice(0, seen))
        day = "epoch_us(ts) // 86400000000"
        pairs, triples = con.execute(
            f"SELECT (SELECT count(*) FROM (SELECT DISTINCT {day}, country FROM t)), "
            f"(SELECT count(*) FROM (SELECT DISTINCT {day}, country, \"user\" FROM t WHERE \"user\" IS NOT NULL))"
        ).fetchall()[0]
        # held + pending rows: at most twice what the open windows need, plus one batch
        assert p.rows_held <= 2 * (pairs + triples) + 2 * batch.num_rows
    p.open_partials()   # compacts
    assert p.rows_held == pairs + triples
    t = to_micros(table.column("ts"))[0]
    first_day_end = int(t.min()) // (86_400 * 10**6) * (86_400 * 10**6) + 86_400 * 10**6
    closed = p.close(first_day_end)
    assert closed.num_rows > 0 and p.windows_open == 2
    final = finalize(spec, out_schema, p.partial_schema, [closed])
    assert_rows(rows_of(final), reference(table.filter(pa.array(t < first_day_end)), spec["measures"], ["country"],
                                          hop_s=86_400, size_s=86_400))
    p.open_partials()
    rest = table.filter(pa.array(t >= first_day_end))
    con.register("t", rest)
    need = con.execute(
        f"SELECT (SELECT count(*) FROM (SELECT DISTINCT {day}, country FROM t)) + "
        f"(SELECT count(*) FROM (SELECT DISTINCT {day}, country, \"user\" FROM t WHERE \"user\" IS NOT NULL))"
    ).fetchall()[0][0]
    assert p.rows_held == need
    final = finalize(spec, out_schema, p.partial_schema, [p.close(2**62)])
    assert_rows(rows_of(final), reference(rest, spec["measures"], ["country"], hop_s=86_400, size_s=86_400))
    assert p.rows_held == 0 and p.windows_open == 0
