"""The state of the ``aggregate`` analytic: grouped measures over event-time windows.

An aggregate runs in two stages so that it can scale out:

* **PARTIAL** (`PartialAggregate`) runs in several parallel instances, each seeing part of the
  stream. Per batch it groups rows by (window, group) into *decomposable* partials: counts,
  sums, minima, maxima, and a mean as (sum, count). When the watermark passes a window's end it
  emits that window's partial rows and frees them.
* **MERGE** (`MergeAggregate`) is one instance. It combines the partial rows of each
  (window, group) from every instance (sum the sums and counts, min the mins, max the maxes)
  and, when the watermark passes, turns them into the final rows of the output schema.

``count_distinct(f)`` is not decomposable as a number, so the partial stage keeps the exact set
of distinct (window, group, f) it has seen and, at close, emits the *count* of that set. The
merge sums the counts, which is exact because the caller routes rows to partial instances by
the hash of ``f``: every value of ``f`` lives in one instance only, so the instances' sets are
disjoint and the sizes add. (An aggregate with count_distinct on two different fields runs with
one partial instance, where the sum of one count is trivially right.) Null values are not
counted, as in SQL's COUNT(DISTINCT); null group keys form their own group.

The distinct rows of a batch are appended as they come and deduplicated (``group_by``) when the
pending rows outgrow the deduplicated ones (and COMPACT_ROWS), or when their window closes: a
window shorter than a few batches is hashed once, at its close, instead of once per batch and
again per compaction (about 1.7 times the throughput when a window spans a batch or two), while memory stays bounded by twice the distinct
values plus COMPACT_ROWS rows.

Everything is vectorized: rows are grouped by ``pyarrow`` (``Table.group_by``), windows are
assigned with NumPy; Python loops run per batch or per window, never per row. State stays
bounded by the number of open (window, group) pairs plus the distinct values: the per-batch
tables are re-grouped into one ("compacted") when they grow long.

Window assignment is a small plug-in (`FixedWindows.assign` returns row indices and window
starts, repeating a row once per window holding it), so other window kinds can join later.

An aggregate with ``top`` keeps rows, not measures (`_TopLayout`): its partials are input rows,
at most n per (window, group) (more with ties), and combining partials keeps the first n of
their union again — top-n of a union is top-n of the parts' top-n, so any split of the stream
over instances adds up exactly, as sums do. Ranking is one multi-key sort and NumPy over its
group boundaries, per batch and per compaction; a window's rows are ranked once more at its close.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hallelujah import expressions
from hallelujah.durations import parse_duration
from hallelujah.tradecraft_schemas import ordered, top_name
from jah.watermarks import event_micros

__all__ = [
    "WINDOW",
    "FixedWindows",
    "Measure",
    "MergeAggregate",
    "PartialAggregate",
    "finalize",
    "parse_measures",
    "partial_schema_of",
    "timed_rows",
    "to_micros",
    "windows_of",
]

WINDOW = "__window"         # partial column: the window's start, int64 microseconds since the epoch
VALUE = "__value"           # distinct-set column: the value of the count_distinct field
COMPACT_PIECES = 16         # re-group the pending per-batch tables when there are more of them than this,
COMPACT_ROWS = 1 << 18      # or when they hold more rows than this and more than the held table
_MEASURE = re.compile(r"\s*([a-z_]+)\s*\((.*)\)\s*", re.DOTALL)
_COUNT_ALL = pc.CountOptions(mode="all")
_COUNT_VALID = pc.CountOptions(mode="only_valid")
_INT64, _FLOAT64 = pa.int64(), pa.float64()
_WINDOW_TYPE = pa.timestamp("us")


# ---------------------------------------------------------------- windows

class FixedWindows:
    """Tumbling (hop == size) and hopping windows: they start at multiples of `hop_us` and last `size_us`.

    A row at time t is in every window with start <= t < start + size, i.e. size/hop windows.
    """

    def __init__(self, size_us: int, hop_us: int | None = None) -> None:
        hop_us = size_us if hop_us is None else hop_us
        if size_us <= 0 or hop_us <= 0 or size_us % hop_us:
            raise ValueError(f"a window of {size_us}us cannot hop by {hop_us}us: the hop must divide it")
        self.size_us = size_us
        self.hop_us = hop_us
        self.per_row = size_us // hop_us

    @property
    def one_per_row(self) -> bool:
        """True when `assign` gives each row exactly one window, in order (rows = arange)."""
        return self.per_row == 1

    def assign(self, t_us: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row indices, window starts) of every (row, window) pair; a row repeats once per window."""
        last = np.floor_divide(t_us, self.hop_us) * self.hop_us   # floors negatives too
        rows = np.arange(t_us.size, dtype=np.int64)
        if self.per_row == 1:
            return rows, last
        return (np.tile(rows, self.per_row),
                np.concatenate([last - j * self.hop_us for j in range(self.per_row)]))

    def last_end(self, t_us: np.ndarray) -> np.ndarray:
        """End of the latest window holding each row: the row is late once the watermark passed it."""
        return np.floor_divide(t_us, self.hop_us) * self.hop_us + self.size_us

    def end_of(self, starts: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
        """Window ends for window starts (µs)."""
        return pc.add(starts, self.size_us)

    def last_closed_start(self, watermark_us: int) -> int:
        """The latest window start whose window ends at or before `watermark_us`."""
        return watermark_us - self.size_us


def _micros(seconds: float) -> int:
    return round(seconds * 1_000_000)


def windows_of(spec: dict) -> FixedWindows:
    """The window kind of an aggregate spec; session windows are refused (not built yet)."""
    if "session" in spec:
        raise ValueError("session windows are not supported yet")
    path = f"analytics.{spec.get('name', '?')}"
    size = _micros(parse_duration(spec["window"], f"{path}.window"))
    hop = _micros(parse_duration(spec["hop"], f"{path}.hop")) if "hop" in spec else None
    return FixedWindows(size, hop)


def to_micros(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray | None]:
    """int64 microseconds since the epoch of a timestamp column, and its validity (None: no nulls).

    Null times read as 0 in the values; the caller drops them with the validity.
    """
    return event_micros(column, null=0, ints=False)


def timed_rows(batch: pa.RecordBatch | pa.Table, time: str, fresh: Callable[[np.ndarray], np.ndarray] | None
               ) -> tuple[pa.Table, np.ndarray, int]:
    """The rows of `batch` to fold, their times (µs) and how many were dropped: those with a null
    time, and those `fresh` (given the times) marks False (None: none is stale)."""
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    t, keep = to_micros(table.column(time))
    if not t.size:
        return table, t, 0
    if fresh is not None:
        recent = fresh(t)
        keep = recent if keep is None else keep & recent
    if keep is None or keep.all():
        return table, t, 0
    return table.filter(pa.array(keep)), t[keep], int(t.size - keep.sum())


# ---------------------------------------------------------------- measures

@dataclass(frozen=True)
class Measure:
    """One measure of the spec: ``name: fn(arg)``, with its output type."""

    name: str
    fn: str
    arg: str
    out_type: pa.DataType
    expr: expressions.Expression | None = None

    @property
    def partials(self) -> list[tuple[str, pa.DataType, str]]:
        """The partial columns (name, type, how the merge combines them) this measure keeps."""
        if self.fn in ("count", "count_if", "count_distinct"):
            return [(self.name, _INT64, "sum")]
        if self.fn == "mean":
            return [(f"{self.name}.sum", _FLOAT64, "sum"), (f"{self.name}.count", _INT64, "sum")]
        return [(self.name, self.out_type, self.fn)]   # sum: sum; min: min; max: max


def parse_measures(spec: dict, out_schema: pa.Schema) -> list[Measure]:
    """The measures of `spec` in document order; count_if expressions parsed (the spec is validated)."""
    out = []
    for name, text in spec["measures"].items():
        m = _MEASURE.fullmatch(text)
        if m is None:
            raise ValueError(f"{text!r} is not a measure")
        fn, arg = m.group(1), m.group(2).strip()
        expr = expressions.parse(arg) if fn == "count_if" else None
        out.append(Measure(name, fn, arg, out_schema.field(name).type, expr))
    return out


def partial_schema_of(spec: dict, out_schema: pa.Schema) -> pa.Schema:
    """``__window`` int64, the group fields, then each measure's partial columns (see
    `Measure.partials`) — or, with ``top``, the input's other fields as the output names them.
    Session windows: see `jah.sessions`."""
    if "session" in spec:
        from jah.sessions import session_partial_schema
        return session_partial_schema(out_schema)
    return layout_of(spec, out_schema).partial_schema


def layout_of(spec: dict, out_schema: pa.Schema) -> _Layout | _TopLayout:
    """How an aggregate's partials look and combine: measures, or the rows of ``top``."""
    return _TopLayout(spec, out_schema) if "top" in spec else _Layout(spec, out_schema)


class _Layout:
    """What both stages agree on: windows, keys, partial columns; and how partials combine and finish."""

    top = False

    def __init__(self, spec: dict, out_schema: pa.Schema) -> None:
        self.windows = windows_of(spec)
        self.group: list[str] = list(spec.get("group") or [])
        self.keys = [WINDOW, *self.group]
        self.measures = parse_measures(spec, out_schema)
        self.out_schema = out_schema
        self.columns = [c for m in self.measures for c in m.partials]
        self.count_like = {m.name for m in self.measures if m.fn.startswith("count")}
        self.partial_schema = pa.schema(
            [pa.field(WINDOW, _INT64)] + [pa.field(g, out_schema.field(g).type) for g in self.group]
            + [pa.field(n, t) for n, t, _ in self.columns])
        # the partial state that is not a distinct set
        self.main_names = [n for m in self.measures if m.fn != "count_distinct" for n, _, _ in m.partials]

    def combine(self, tables: Sequence[pa.Table], names: Iterable[str] | None = None) -> pa.Table:
        """One row per (window, group) out of partial tables (any subset of partial columns each).

        Columns missing from a table count as null, which every combining aggregation skips. With
        `names`, only those partial columns are combined and returned (the main partial state
        holds no count_distinct columns).
        """
        wanted = set(self.partial_schema.names if names is None else names)
        columns = [c for c in self.columns if c[0] in wanted]
        schema = pa.schema([f for f in self.partial_schema if f.name in wanted or f.name in self.keys])
        tables = [t for t in tables if t.num_rows]
        if not tables:
            return schema.empty_table()
        data = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")
        for n, t, _ in columns:   # a subset table (distinct counts) lacks the other columns
            if n not in data.column_names:
                data = data.append_column(pa.field(n, t), pa.nulls(data.num_rows, t))
        grouped = data.group_by(self.keys, use_threads=False).aggregate([(n, op) for n, _, op in columns])
        arrays = [grouped.column(k) for k in self.keys]
        for n, t, op in columns:
            col = grouped.column(f"{n}_{op}")
            if n in self.count_like:
                col = col.fill_null(0)
            arrays.append(col.cast(t))
        return pa.Table.from_arrays(arrays, schema=schema)

    def final(self, combined: pa.Table) -> pa.Table:
        """Final rows (out_schema, sorted by window_start then group fields) of combined partials."""
        w = combined.column(WINDOW)
        arrays = [w.cast(_WINDOW_TYPE), self.windows.end_of(w).cast(_WINDOW_TYPE)]
        arrays += [combined.column(g) for g in self.group]
        for m in self.measures:
            if m.fn == "mean":
                total, count = combined.column(f"{m.name}.sum"), combined.column(f"{m.name}.count")
                mean = pc.divide(total, pc.cast(count, _FLOAT64))
                arrays.append(pc.if_else(pc.greater(count, 0), mean, pa.scalar(None, _FLOAT64)))
            else:
                arrays.append(combined.column(m.name).cast(m.out_type))
        out = pa.Table.from_arrays(arrays, schema=self.out_schema)
        return out.sort_by([("window_start", "ascending")] + [(g, "ascending") for g in self.group])


class _TopLayout:
    """The layout of a ``top`` aggregate: partials are input rows, ranked within each (window,
    group) by ``by`` (descending unless ``order`` is "asc"), ties ordered by the time field, then
    the other fields in the input's order, ascending with nulls last; at most ``n`` are kept (with
    ``with_ties``, every row equal in ``by`` to the n-th too). Rows whose ``by`` is null or NaN
    are not ranked. The output's rank is ROW_NUMBER (RANK with ties), rows in the order of
    window, group fields (nulls last), rank, then the tie order."""

    top = True
    measures: list[Measure] = []

    def __init__(self, spec: dict, out_schema: pa.Schema) -> None:
        self.windows = windows_of(spec)
        self.group: list[str] = list(spec.get("group") or [])
        self.keys = [WINDOW, *self.group]
        self.out_schema = out_schema
        top = spec["top"]
        self.n = int(top["n"])
        self.with_ties = bool(top.get("with_ties", False))
        base = spec["input"].partition(".")[0]
        self.rows = list(out_schema)[2 + len(self.group):-1]       # the input's other fields, as named out
        self.partial_schema = pa.schema([pa.field(WINDOW, _INT64), *(out_schema.field(g) for g in self.group),
                                         *self.rows])
        self.main_names = self.partial_schema.names
        self.by = top_name(top["by"], base)
        time = top_name(spec["time"], base)
        ties = [time] if time in self.partial_schema.names[len(self.keys):] else []
        ties += [f.name for f in self.rows if ordered(f.type)]
        ties = [t for t in dict.fromkeys(ties) if t != self.by]
        self.sort_keys = ([(k, "ascending") for k in self.keys]
                          + [(self.by, "ascending" if top.get("order") == "asc" else "descending")]
                          + [(t, "ascending") for t in ties])

    def combine(self, tables: Sequence[pa.Table], names: Iterable[str] | None = None) -> pa.Table:
        """The rows of `tables` kept (see the class), in their order."""
        tables = [t for t in tables if t.num_rows]
        if not tables:
            return self.partial_schema.empty_table()
        return self.ranked(tables[0] if len(tables) == 1 else pa.concat_tables(tables))[0]

    def ranked(self, data: pa.Table) -> tuple[pa.Table, np.ndarray]:
        """The rows of `data` kept, sorted (keys, then rank, then the tie order), and their ranks."""
        by = data.column(self.by)
        valid = pc.is_valid(by)
        if pa.types.is_floating(by.type):
            valid = pc.and_(valid, pc.invert(pc.fill_null(pc.is_nan(by), True)))
        if valid.null_count or not pc.all(valid).as_py():
            data = data.filter(valid)
        if not data.num_rows:
            return self.partial_schema.empty_table(), np.zeros(0, dtype=np.int64)
        order = pc.sort_indices(data, sort_keys=self.sort_keys)
        ranking = data.select([*self.keys, self.by]).take(order)    # the rest is taken once, if kept
        index = np.arange(data.num_rows, dtype=np.int64)
        starts = _boundaries(ranking, self.keys)
        first = np.maximum.accumulate(np.where(starts, index, 0))         # of each row's (window, group)
        if self.with_ties:
            equal_from = np.maximum.accumulate(np.where(starts | _boundaries(ranking, [self.by]), index, 0))
            rank = equal_from - first + 1
        else:
            rank = index - first + 1
        keep = rank <= self.n
        if keep.all():
            return data.take(order), rank
        return data.take(order.filter(pa.array(keep))), rank[keep]

    def final(self, combined: pa.Table) -> pa.Table:
        """Final rows (out_schema): window bounds, group fields, the input's other fields, rank."""
        rows, rank = self.ranked(combined)
        w = rows.column(WINDOW)
        arrays = [w.cast(_WINDOW_TYPE), self.windows.end_of(w).cast(_WINDOW_TYPE)]
        arrays += [rows.column(f.name) for f in self.partial_schema][1:]
        return pa.Table.from_arrays([*arrays, pa.array(rank, _INT64)], schema=self.out_schema)


def _boundaries(data: pa.Table, names: Sequence[str]) -> np.ndarray:
    """True where a row's values of `names` differ from the row before (the first row: True);
    nulls equal nulls, as in a GROUP BY."""
    n = data.num_rows
    starts = np.zeros(n, dtype=bool)
    starts[0] = True
    for name in names:
        column = data.column(name).combine_chunks()
        after, before = column.slice(1), column.slice(0, n - 1)
        differ = pc.fill_null(pc.not_equal(after, before), True)
        if column.null_count:
            differ = pc.and_(differ, pc.invert(pc.and_(pc.is_null(after), pc.is_null(before))))
        starts[1:] |= differ.to_numpy(zero_copy_only=False)
    return starts


# ---------------------------------------------------------------- state

class _Store:
    """Tables keyed by ``__window``: appended per batch, combined lazily, split off as windows close.

    The held table is combined (one row per key); the pending per-batch tables need not be. They
    are combined into the held one when there are more than COMPACT_PIECES of them, or when they
    hold more rows than it and than COMPACT_ROWS: re-grouping costs O(held) and happens after at
    least O(held) new rows, so its cost per row stays constant while the rows held stay within
    twice what the open windows need, plus COMPACT_ROWS. That floor lets short windows close
    (and be combined once, then) before their rows are ever re-grouped.
    """

    def __init__(self, combine: Callable[[Sequence[pa.Table]], pa.Table], empty: pa.Table) -> None:
        self._combine = combine
        self._held = empty
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.windows: set[int] = set()

    @property
    def rows(self) -> int:
        return self._held.num_rows + self._pending_rows

    def add(self, table: pa.Table, windows: Iterable[int] | None = None) -> None:
        """Append a table; `windows` (its window starts, when the caller knows them) saves a pass."""
        if not table.num_rows:
            return
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self.windows.update(pc.unique(table.column(WINDOW)).to_pylist() if windows is None else windows)
        if self._crowded():
            self.compact()

    def _crowded(self) -> bool:
        return len(self._pending) > COMPACT_PIECES or self._pending_rows > max(self._held.num_rows, COMPACT_ROWS)

    def compact(self) -> pa.Table:
        """Combine everything held into one table (one row per key) and return it."""
        if self._pending:
            self._held = self._combine([self._held, *self._pending])
            self._pending, self._pending_rows = [], 0
        return self._held

    def restore(self, table: pa.Table) -> None:
        """Hold `table` (combined, as `compact` returned it at a checkpoint) and nothing else."""
        self._held, self._pending, self._pending_rows = table, [], 0
        self.windows = set(pc.unique(table.column(WINDOW)).to_pylist())

    def take_closed(self, last_start: int) -> pa.Table | None:
        """Remove and return, combined, the rows of windows starting at or before `last_start`.

        Only the closed rows are combined; the open ones stay as they were (compacted only if
        the usual rule asks). None when no window closes.
        """
        if not self.windows or min(self.windows) > last_start:
            return None
        closed: list[pa.Table] = []
        kept: list[pa.Table] = []
        for piece in [self._held, *self._pending]:
            mask = piece.column(WINDOW).to_numpy() <= last_start
            if mask.any():
                closed.append(piece.filter(mask))
            kept.append(piece.filter(~mask) if mask.any() else piece)
        from_held_only = len(closed) == 1 and kept[0] is not self._held
        self._held, self._pending = kept[0], [p for p in kept[1:] if p.num_rows]
        self._pending_rows = sum(p.num_rows for p in self._pending)
        self.windows = {w for w in self.windows if w > last_start}
        if self._crowded():
            self.compact()
        if not closed:
            return None
        return closed[0] if from_held_only else self._combine(closed)


def _dedup(keys: list[str]) -> Callable[[Sequence[pa.Table]], pa.Table]:
    """Combining for distinct sets: one row per distinct key combination."""
    def combine(tables: Sequence[pa.Table]) -> pa.Table:
        full = [t for t in tables if t.num_rows] or list(tables[:1])
        data = full[0] if len(full) == 1 else pa.concat_tables(full)
        return data.group_by(keys, use_threads=False).aggregate([]).select(keys)
    return combine


class PartialAggregate:
    """The PARTIAL stage: per-(window, group) partials of the rows this instance sees.

    `close` emits and frees windows the watermark has passed; rows of windows already closed are
    late (`late_mask`) and are ignored by `add`, as are rows with a null time (`rows_dropped`
    counts both).
    """

    def __init__(self, spec: dict, in_schema: pa.Schema, out_schema: pa.Schema) -> None:
        self._layout = layout = layout_of(spec, out_schema)
        self.partial_schema: pa.Schema = layout.partial_schema
        self._time: str = spec["time"]
        self._windows = layout.windows
        self._measures = layout.measures
        for m in self._measures:
            if m.expr is not None:
                m.expr.type_in(in_schema)   # fails now, not on the first batch, if it does not fit
        self._main_names = layout.main_names
        self._rows = [f.name for f in in_schema if f.name not in layout.group]   # what a top partial keeps
        empty = layout.combine([], self._main_names)
        self._main_schema = empty.schema
        self._main = _Store(lambda ts: layout.combine(ts, self._main_names), empty)
        # one exact distinct set per count_distinct field (measures on the same field share it)
        self._distinct_fields = list(dict.fromkeys(m.arg for m in self._measures if m.fn == "count_distinct"))
        self._distinct = {
            f: _Store(_dedup([*layout.keys, VALUE]), pa.schema(
                [*[layout.partial_schema.field(k) for k in layout.keys], pa.field(VALUE, in_schema.field(f).type)]
            ).empty_table())
            for f in self._distinct_fields}
        self._closed: int | None = None   # highest watermark passed to close()
        self.rows_dropped = 0

    # -- reporting

    @property
    def rows_held(self) -> int:
        """Rows of state held: partial rows plus distinct-set rows (pending tables included)."""
        return self._main.rows + sum(s.rows for s in self._distinct.values())

    @property
    def windows_open(self) -> int:
        return len(self._main.windows)

    # -- data

    def late_mask(self, batch: pa.RecordBatch | pa.Table) -> np.ndarray:
        """True for each row whose every window was already closed (its end <= the highest watermark).

        Rows with a null time are not late (they have no window at all; `add` drops them).
        """
        t, valid = to_micros(batch.column(self._time))
        if self._closed is None:
            return np.zeros(t.size, dtype=bool)
        late = self._windows.last_end(t) <= self._closed
        return late if valid is None else late & valid

    def add(self, batch: pa.RecordBatch | pa.Table) -> list[int]:
        """Fold a batch into the state (late and null-time rows are ignored); returns the starts
        of the windows it put rows in."""
        closed = self._closed
        table, t, dropped = timed_rows(batch, self._time,
                                       None if closed is None else lambda t: self._windows.last_end(t) > closed)
        self.rows_dropped += dropped
        if not t.size:
            return []
        rows, starts = self._windows.assign(t)
        if self._closed is not None and not self._windows.one_per_row:
            open_ = starts > self._windows.last_closed_start(self._closed)   # a hop window may be closed already
            if not open_.all():
                rows, starts = rows[open_], starts[open_]
        take = None if self._windows.one_per_row else pa.array(rows)

        def column(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
            return values if take is None else values.take(take)

        window = pa.array(starts)
        groups = {g: column(table.column(g)) for g in self._layout.group}
        if self._layout.top:
            rows = [column(table.column(n)) for n in self._rows]
            main = self._layout.combine([pa.Table.from_arrays([window, *groups.values(), *rows],
                                                              schema=self.partial_schema)])
        else:
            main = self._main_partials(table, window, groups, column)
        opened = pc.unique(main.column(WINDOW)).to_pylist()
        self._main.add(main, opened)
        for f, store in self._distinct.items():
            cols = {WINDOW: window, **groups, VALUE: column(table.column(f))}
            part = pa.table(cols)
            if part.column(VALUE).null_count:
                part = part.filter(pc.is_valid(part.column(VALUE)))   # COUNT(DISTINCT) skips nulls
            store.add(part, opened)   # raw: deduplicated when the store compacts or the window closes
        return opened

    def _main_partials(self, table: pa.Table, window: pa.Array, groups: dict,
                       column: Callable[[pa.Array | pa.ChunkedArray], pa.Array | pa.ChunkedArray]) -> pa.Table:
        """The batch grouped into main partial rows (every measure's but the distinct sets)."""
        cols: dict[str, pa.Array | pa.ChunkedArray] = {WINDOW: window, **groups}
        aggs: list[tuple] = []
        names: list[tuple[str, str, pa.DataType]] = []   # (aggregate output, partial column, type)
        for i, m in enumerate(self._measures):
            if m.fn == "count_distinct":
                continue
            c = f"__in{i}"
            if m.fn == "count":
                cols[c], agg = window, (c, "count", _COUNT_ALL)
            elif m.fn == "count_if":
                assert m.expr is not None
                cols[c], agg = column(m.expr.evaluate(table).fill_null(False)), (c, "sum")
            elif m.fn == "mean":
                cols[c] = column(table.column(m.arg).cast(_FLOAT64))
                aggs.append((c, "sum"))
                names.append((f"{c}_sum", f"{m.name}.sum", _FLOAT64))
                agg = (c, "count", _COUNT_VALID)
                names.append((f"{c}_count", f"{m.name}.count", _INT64))
                aggs.append(agg)
                continue
            else:   # sum, min, max
                cols[c], agg = column(table.column(m.arg)), (c, m.fn)
            aggs.append(agg)
            names.append((f"{c}_{agg[1]}", m.name, m.partials[0][1]))
        grouped = pa.table(cols).group_by(self._layout.keys, use_threads=False).aggregate(aggs)
        arrays = [grouped.column(k) for k in self._layout.keys]
        arrays += [grouped.column(out).cast(t) for out, _, t in names]
        return pa.Table.from_arrays(arrays, schema=self._main_schema)

    # -- output

    def _emit(self, main: pa.Table, distinct: list[pa.Table | None]) -> pa.Table:
        """Partial rows out of the combined main rows and distinct sets (one per field) of some windows."""
        tables = [main]
        keys = self._layout.keys
        for f, data in zip(self._distinct_fields, distinct):
            if data is None or not data.num_rows:
                continue
            counted = data.group_by(keys, use_threads=False).aggregate([([], "count_all")])
            count = counted.column("count_all")
            tables.append(pa.table({**{k: counted.column(k) for k in keys},
                                    **{m.name: count for m in self._measures
                                       if m.fn == "count_distinct" and m.arg == f}}))
        return self._layout.combine(tables)

    def close(self, watermark_us: int) -> pa.Table:
        """Partial rows (partial_schema) of every window ending at or before `watermark_us`; frees them."""
        self._closed = watermark_us if self._closed is None else max(self._closed, watermark_us)
        last = self._windows.last_closed_start(watermark_us)
        main = self._main.take_closed(last)
        distinct = [self._distinct[f].take_closed(last) for f in self._distinct_fields]
        if main is None:   # every distinct-set row has its (window, group) in the main state
            return self.partial_schema.empty_table()
        return self._emit(main, distinct)

    def open_partials(self) -> pa.Table:
        """Partial rows of the windows still open, one per (window, group), for queries."""
        return self._emit(self._main.compact(), [self._distinct[f].compact() for f in self._distinct_fields])

    def snapshot(self) -> tuple[dict[str, pa.Table], int | None]:
        """What a checkpoint keeps: the stores as tables, and the highest watermark closed."""
        return ({"main": self._main.compact(),
                 **{f"distinct{i}": self._distinct[f].compact() for i, f in enumerate(self._distinct_fields)}},
                self._closed)

    def restore(self, tables: dict[str, pa.Table], closed: int | None) -> None:
        self._main.restore(tables["main"])
        for i, f in enumerate(self._distinct_fields):
            self._distinct[f].restore(tables[f"distinct{i}"])
        self._closed = closed


class MergeAggregate:
    """The MERGE stage: combines the partials of every instance and emits final rows as windows close.

    Partial rows of a window this stage already closed come too late to count; `add` drops them
    (`rows_dropped`), since emitting a second, partial result for that window would be wrong.
    """

    def __init__(self, spec: dict, out_schema: pa.Schema, partial_schema: pa.Schema) -> None:
        self._layout = layout_of(spec, out_schema)
        if not partial_schema.equals(self._layout.partial_schema):
            raise ValueError(f"partial schema {partial_schema} does not match the aggregate's "
                             f"{self._layout.partial_schema}")
        self.partial_schema = partial_schema
        self._store = _Store(self._layout.combine, partial_schema.empty_table())
        self._closed: int | None = None
        self.rows_dropped = 0

    @property
    def rows_held(self) -> int:
        return self._store.rows

    @property
    def windows_open(self) -> int:
        return len(self._store.windows)

    def _fresh(self, partials: pa.Table) -> pa.Table:
        if self._closed is None or not partials.num_rows:
            return partials
        last = self._layout.windows.last_closed_start(self._closed)
        return partials.filter(pc.greater(partials.column(WINDOW), last))

    def add(self, partials: pa.Table) -> None:
        fresh = self._fresh(partials)
        self.rows_dropped += partials.num_rows - fresh.num_rows
        self._store.add(fresh.select(self.partial_schema.names))

    def close(self, watermark_us: int) -> pa.Table:
        """FINAL rows (out_schema) of windows ending at or before `watermark_us`, sorted; frees them."""
        self._closed = watermark_us if self._closed is None else max(self._closed, watermark_us)
        closed = self._store.take_closed(self._layout.windows.last_closed_start(watermark_us))
        return self._layout.final(closed if closed is not None else self.partial_schema.empty_table())

    def open_partials(self) -> pa.Table:
        """The partial rows of the windows held open here, combined, for queries."""
        return self._store.compact()

    def snapshot(self) -> tuple[dict[str, pa.Table], int | None]:
        """What a checkpoint keeps: the partials held, and the highest watermark closed."""
        return {"merged": self._store.compact()}, self._closed

    def restore(self, tables: dict[str, pa.Table], closed: int | None) -> None:
        self._store.restore(tables["merged"])
        self._closed = closed

    def open_results(self, extra: Sequence[pa.Table] = ()) -> pa.Table:
        """Final-form values of the open windows: those held here plus `extra` partials (from the
        partial instances), in out_schema, sorted. Windows this stage has closed are left out."""
        tables = [self._store.compact(), *(self._fresh(t).select(self.partial_schema.names) for t in extra)]
        return self._layout.final(self._layout.combine(tables))


def finalize(spec: dict, out_schema: pa.Schema, partial_schema: pa.Schema, partials: Sequence[pa.Table]) -> pa.Table:
    """Final rows (out_schema, sorted) of any partial tables, combined: a one-shot MERGE."""
    if "session" in spec:
        # whole sessions, only ordered (`jah.sessions`, which builds on this module)
        from jah.sessions import session_rows
        return session_rows(list(partials), out_schema, list(spec.get("group") or []))
    layout = layout_of(spec, out_schema)
    if not partial_schema.equals(layout.partial_schema):
        raise ValueError(f"partial schema {partial_schema} does not match the aggregate's {layout.partial_schema}")
    return layout.final(layout.combine(list(partials)))
