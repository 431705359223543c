"""Session windows of an ``aggregate`` (``"session": "30s"``): per group, a session lasts while its
rows come less than the gap apart (Flink's SESSION windows, DuckDB's LAG-and-cumulative-sum).

A session's row is (window_start = its first row's time, window_end = its last row's time + gap,
the group fields, the measures). It closes when the watermark reaches its end; rows before the
watermark are late (`jah.aggregate` sends them to ``rejected``, as for tumbling windows), so no
row can reach a session already out, and the result is exactly an offline sessionization of the
rows kept.

Each group's rows go to one AGGREGATE instance (the EXCHANGE partitions by the group fields), so
a session is whole in one instance: the instance emits *final* rows (`Sessions.close`), tagged
with the session's end (``__window``), and MERGE only holds them until the least watermark over
the instances passes that end (`SessionMerge`), which keeps the output ordered by window_end.

The open state is one row per open session: an id, its start, last time, the first source
position that put rows in it, the group fields and the decomposable partials of its measures
(`Measure.partials`: counts, sums, minima, maxima, mean as sum and count); a distinct count
keeps the (session id, value) pairs. A batch is folded by one sort of the open sessions of its
groups and its rows together (by group, then time) and NumPy over that order — a row inside an open
session's span joins it; otherwise consecutive items of a group less than the gap apart are one
session, which also merges two open sessions a new row bridges — then one ``group_by`` combines
each session's items. No Python loop runs per row.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hallelujah.durations import parse_duration
from jah.windowed import HeldOrigins
from jah.windows import WINDOW, Measure, parse_measures, timed_rows

SID, START, LAST, ORIGIN, ITEM = "__sid", "__start", "__last", "__origin", "__item"
VALUE = "__value"
COMPACT_ROWS = 1 << 16       # deduplicate a distinct set when this many raw pairs were added since
_INT64, _FLOAT64, _US = pa.int64(), pa.float64(), pa.timestamp("us")


def gap_of(spec: dict) -> int:
    """The session gap of an aggregate spec, in microseconds."""
    return round(parse_duration(spec["session"], f"analytics.{spec.get('name', '?')}.session") * 1_000_000)


def session_partial_schema(out_schema: pa.Schema) -> pa.Schema:
    """What an AGGREGATE sends MERGE: the session's end (µs) to close it by, then a final row."""
    return pa.schema([pa.field(WINDOW, _INT64), *out_schema])


def session_rows(partials: list[pa.Table], out_schema: pa.Schema, group: list[str]) -> pa.Table:
    """Final rows out of session partial rows, in the output's order: window_end, then the group
    fields (ascending, nulls last), then window_start."""
    schema = session_partial_schema(out_schema)
    tables = [t.select(schema.names).cast(schema) for t in partials if t.num_rows]
    if not tables:
        return out_schema.empty_table()
    data = pa.concat_tables(tables)
    keys = [(WINDOW, "ascending"), *((g, "ascending") for g in group), ("window_start", "ascending")]
    return data.sort_by(keys).select(out_schema.names)


class Sessions:
    """The AGGREGATE's state of a session aggregate; same interface as `PartialAggregate`."""

    def __init__(self, spec: dict, in_schema: pa.Schema, out_schema: pa.Schema) -> None:
        if "top" in spec:
            raise ValueError("session windows take measures, not top")
        self.gap = gap_of(spec)
        self.time: str = spec["time"]
        self.group: list[str] = list(spec.get("group") or [])
        self.measures: list[Measure] = parse_measures(spec, out_schema)
        for m in self.measures:
            if m.expr is not None:
                m.expr.type_in(in_schema)
        self.out_schema = out_schema
        self.partial_schema = session_partial_schema(out_schema)
        self.columns = [c for m in self.measures if m.fn != "count_distinct" for c in m.partials]
        self.state_schema = pa.schema(
            [pa.field(SID, _INT64), pa.field(START, _INT64), pa.field(LAST, _INT64), pa.field(ORIGIN, _INT64),
             *(out_schema.field(g) for g in self.group), *(pa.field(n, t) for n, t, _ in self.columns)])
        self.distinct_fields = list(dict.fromkeys(m.arg for m in self.measures if m.fn == "count_distinct"))
        self.open = self.state_schema.empty_table()
        self.distinct = {f: pa.schema([pa.field(SID, _INT64), pa.field(VALUE, in_schema.field(f).type)]).empty_table()
                         for f in self.distinct_fields}
        self._raw = 0                  # distinct pairs added since the sets were last deduplicated
        self.next_sid = 0
        self._closed: int | None = None
        self.rows_dropped = 0

    # -- reporting

    @property
    def rows_held(self) -> int:
        return self.open.num_rows + sum(t.num_rows for t in self.distinct.values())

    def earliest_origin(self) -> int:
        """The first source position whose rows an open session holds (0: none)."""
        least = pc.min(self.open.column(ORIGIN)).as_py() if self.open.num_rows else None
        return int(least or 0)

    def stamp(self, origin: int) -> None:
        """The sessions the last `add` began got their rows from `origin`."""
        col = self.open.column(ORIGIN)
        if col.null_count:
            self.open = self.open.set_column(self.open.schema.get_field_index(ORIGIN), ORIGIN,
                                             col.fill_null(origin))

    # -- data

    def _points(self, table: pa.Table, t: np.ndarray) -> pa.Table:
        """The batch's rows as one-row sessions in the state's layout (id and origin null)."""
        n = table.num_rows
        arrays: dict[str, Any] = {SID: pa.nulls(n, _INT64), START: pa.array(t), LAST: pa.array(t),
                                  ORIGIN: pa.nulls(n, _INT64)}
        arrays |= {g: table.column(g) for g in self.group}
        for m in self.measures:
            if m.fn == "count":
                arrays[m.name] = pa.array(np.ones(n, dtype=np.int64))
            elif m.fn == "count_if":
                assert m.expr is not None
                arrays[m.name] = m.expr.evaluate(table).fill_null(False).cast(_INT64)
            elif m.fn == "mean":
                arrays[f"{m.name}.sum"] = table.column(m.arg).cast(_FLOAT64)
                arrays[f"{m.name}.count"] = pc.is_valid(table.column(m.arg)).cast(_INT64)
            elif m.fn != "count_distinct":          # sum, min, max
                arrays[m.name] = table.column(m.arg).cast(m.partials[0][1])
        return pa.Table.from_pydict(arrays, schema=self.state_schema)

    def add(self, batch: pa.RecordBatch | pa.Table) -> list[int]:
        """Fold a batch (rows with a null time, or before a closed watermark, are dropped)."""
        closed = self._closed
        table, t, dropped = timed_rows(batch, self.time, None if closed is None else lambda t: t >= closed)
        self.rows_dropped += dropped
        if not t.size:
            return []
        points = self._points(table, t)
        old, untouched = self._of_groups_in(points)
        items = pa.concat_tables([old, points])
        session = _sessionize(items, self.group, self.gap)
        items = items.append_column(ITEM, pa.array(session))
        aggs = [(START, "min"), (LAST, "max"), (ORIGIN, "min"), (SID, "min")]
        aggs += [(name, op) for name, _, op in self.columns]
        grouped = items.group_by([ITEM], use_threads=False).aggregate(aggs).sort_by(ITEM)
        one = np.empty(grouped.num_rows, dtype=np.int64)
        one[session] = np.arange(session.size)           # an item of each session: its group's fields
        take = pa.array(one)
        kept = grouped.column(f"{SID}_min")
        new = pc.is_null(kept).to_numpy(zero_copy_only=False)
        sids = kept.fill_null(0).to_numpy().astype(np.int64)
        sids[new] = np.arange(self.next_sid, self.next_sid + int(new.sum()), dtype=np.int64)
        self.next_sid += int(new.sum())
        arrays = [pa.array(sids), grouped.column(f"{START}_min"), grouped.column(f"{LAST}_max"),
                  grouped.column(f"{ORIGIN}_min"), *(items.column(g).take(take) for g in self.group)]
        arrays += [grouped.column(f"{name}_{op}").cast(typ) for name, typ, op in self.columns]
        self.open = pa.Table.from_arrays(arrays, schema=self.state_schema)
        if untouched.num_rows:
            self.open = pa.concat_tables([untouched, self.open])
        if self.distinct:
            item_sid = sids[session]              # each item's session id
            self._remap(old.column(SID).to_numpy(), item_sid[:old.num_rows])
            for f in self.distinct_fields:
                pairs = pa.table({SID: pa.array(item_sid[old.num_rows:]), VALUE: table.column(f)})
                pairs = pairs.filter(pc.is_valid(pairs.column(VALUE)))     # COUNT(DISTINCT) skips nulls
                self.distinct[f] = pa.concat_tables([self.distinct[f], pairs.cast(self.distinct[f].schema)])
            self._raw += t.size
            if self._raw > max(COMPACT_ROWS, self.rows_held):
                self._dedup()
        return []

    def _of_groups_in(self, points: pa.Table) -> tuple[pa.Table, pa.Table]:
        """The open sessions of the groups `points` has (they take part in the fold), and the
        others (left as they are): many open sessions are not sorted again for every batch."""
        old = self.open
        if not self.group or old.num_rows <= points.num_rows:
            return old, old.slice(0, 0)
        gid = _group_ids(pa.concat_tables([old.select(self.group), points.select(self.group)]), self.group)
        touched = np.isin(gid[:old.num_rows], gid[old.num_rows:])
        if touched.all():
            return old, old.slice(0, 0)
        return old.filter(pa.array(touched)), old.filter(pa.array(~touched))

    def _remap(self, before: np.ndarray, after: np.ndarray) -> None:
        """Sessions merged: distinct pairs of ids `before` now belong to ids `after`."""
        if not before.size or np.array_equal(before, after):
            return
        order = np.argsort(before)
        before, after = before[order], after[order]
        for f, pairs in self.distinct.items():
            sid = pairs.column(SID).to_numpy()
            pos = np.clip(np.searchsorted(before, sid), 0, before.size - 1)
            moved = np.where(before[pos] == sid, after[pos], sid)
            self.distinct[f] = pairs.set_column(0, SID, pa.array(moved))

    def _dedup(self) -> None:
        for f, pairs in self.distinct.items():
            self.distinct[f] = pairs.group_by([SID, VALUE], use_threads=False).aggregate([]).select(
                [SID, VALUE]).cast(pairs.schema)
        self._raw = 0

    # -- output

    def _final(self, sessions: pa.Table) -> pa.Table:
        """Partial rows (`partial_schema`) of some sessions, their measures final."""
        start, last = sessions.column(START), sessions.column(LAST)
        end = pc.add(last, self.gap)
        arrays: list[Any] = [end, start.cast(_US), end.cast(_US), *(sessions.column(g) for g in self.group)]
        counts = self._distinct_counts(sessions.column(SID).to_numpy())
        for m in self.measures:
            if m.fn == "count_distinct":
                arrays.append(pa.array(counts[m.arg], _INT64))
            elif m.fn == "mean":
                total, count = sessions.column(f"{m.name}.sum"), sessions.column(f"{m.name}.count")
                mean = pc.divide(total, pc.cast(count, _FLOAT64))
                arrays.append(pc.if_else(pc.greater(count, 0), mean, pa.scalar(None, _FLOAT64)))
            elif m.fn in ("count", "count_if"):
                arrays.append(sessions.column(m.name).fill_null(0))
            else:
                arrays.append(sessions.column(m.name).cast(m.out_type))
        return pa.Table.from_arrays(arrays, schema=self.partial_schema)

    def _distinct_counts(self, sids: np.ndarray) -> dict[str, np.ndarray]:
        """Per distinct field, the number of distinct values of each session in `sids`."""
        out = {}
        for f, pairs in self.distinct.items():
            mine = pairs.filter(pc.is_in(pairs.column(SID), pa.array(sids)))
            counted = mine.group_by([SID], use_threads=False).aggregate([(VALUE, "count_distinct")])
            have = counted.column(SID).to_numpy()
            order = np.argsort(have)
            have, n = have[order], counted.column(f"{VALUE}_count_distinct").to_numpy()[order]
            pos = np.clip(np.searchsorted(have, sids), 0, max(have.size - 1, 0))
            out[f] = np.where(have[pos] == sids, n[pos], 0) if have.size else np.zeros(sids.size, np.int64)
        return out

    def close(self, watermark_us: int) -> pa.Table:
        """Rows (`partial_schema`) of the sessions ending at or before `watermark_us`; frees them."""
        self._closed = watermark_us if self._closed is None else max(self._closed, watermark_us)
        if not self.open.num_rows:
            return self.partial_schema.empty_table()
        ends = self.open.column(LAST).to_numpy() + self.gap
        done = ends <= watermark_us
        if not done.any():
            return self.partial_schema.empty_table()
        closed, self.open = self.open.filter(pa.array(done)), self.open.filter(pa.array(~done))
        rows = self._final(closed)
        if self.distinct:
            gone = closed.column(SID)
            for f, pairs in self.distinct.items():
                self.distinct[f] = pairs.filter(pc.invert(pc.is_in(pairs.column(SID), gone)))
        return rows

    def open_partials(self) -> pa.Table:
        """The open sessions as partial rows (window_end: last row's time + gap so far), for queries."""
        return self._final(self.open)

    def snapshot(self) -> tuple[dict[str, pa.Table], int | None]:
        """What a checkpoint keeps: open sessions, distinct pairs, the highest watermark closed."""
        if self._raw:
            self._dedup()
        return ({"sessions": self.open, **{f"distinct{i}": self.distinct[f]
                                           for i, f in enumerate(self.distinct_fields)}}, self._closed)

    def restore(self, tables: dict[str, pa.Table], closed: int | None) -> None:
        """Hold what `snapshot` kept; ids go on after the highest open one (only open ones are used)."""
        self.open = tables["sessions"].cast(self.state_schema)
        for i, f in enumerate(self.distinct_fields):
            self.distinct[f] = tables[f"distinct{i}"].cast(self.distinct[f].schema)
        top = pc.max(self.open.column(SID)).as_py() if self.open.num_rows else None
        self._closed, self.next_sid, self._raw = closed, 0 if top is None else top + 1, 0


def _sessionize(items: pa.Table, group: list[str], gap: int) -> np.ndarray:
    """The session (0, 1, ...) of each item: open sessions (disjoint, at least `gap` apart within a
    group) and new rows, both as [START, LAST] spans. A row inside a session's span joins it; the
    remaining spans are disjoint, so sorted by group and start, one begins a new session when its
    group changes or it starts `gap` or more after the previous one's last."""
    n = items.num_rows
    point = pc.is_null(items.column(SID)).to_numpy(zero_copy_only=False)
    gid = _group_ids(items, group)
    start, last = items.column(START).to_numpy(), items.column(LAST).to_numpy()
    order = np.lexsort((point, start, gid))        # by group, start, sessions before rows
    start, last, is_point, gid = start[order], last[order], point[order], gid[order]
    first_of_group = np.ones(n, dtype=bool)
    first_of_group[1:] = gid[1:] != gid[:-1]
    idx = np.arange(n)
    host = np.maximum.accumulate(np.where(is_point, -1, idx))    # the last session item at or before
    safe = np.maximum(host, 0)
    inside = is_point & (host >= 0) & (gid[safe] == gid) & (start <= last[safe])
    rest = np.flatnonzero(~inside)
    begins = first_of_group[rest].copy()
    begins[1:] |= start[rest[1:]] - last[rest[:-1]] >= gap
    session_sorted = np.empty(n, dtype=np.int64)
    session_sorted[rest] = np.cumsum(begins) - 1
    session_sorted[inside] = session_sorted[host[inside]]
    session = np.empty(n, dtype=np.int64)
    session[order] = session_sorted
    return session


def _group_ids(items: pa.Table, group: list[str]) -> np.ndarray:
    """A number per row, equal for rows of one group (nulls a value of their own)."""
    ids = np.zeros(items.num_rows, dtype=np.int64)
    for g in group:
        codes = pc.dictionary_encode(items.column(g).combine_chunks()).indices
        col = codes.fill_null(-1).to_numpy().astype(np.int64) + 1
        ids = ids * (int(col.max(initial=0)) + 1) + col
        if len(group) > 1:
            ids = np.unique(ids, return_inverse=True)[1].astype(np.int64)   # stays below the row count
    return ids


class SessionOrigins(HeldOrigins):
    """The first position each open session holds lives in the session state (`Sessions`): it
    moves with merges, and a checkpoint keeps it with the sessions."""

    def __init__(self, sessions: Sessions) -> None:
        super().__init__(0)
        self.sessions = sessions

    def record(self, starts: Any, origin: int) -> None:
        self.sessions.stamp(origin)

    def close(self, watermark: int) -> None:
        pass

    def earliest(self) -> int:
        return self.sessions.earliest_origin()


class SessionMerge:
    """MERGE of a session aggregate: every session comes whole from one instance, so the rows are
    only held until the watermark (the least over the instances) passes their end."""

    def __init__(self, spec: dict, out_schema: pa.Schema, partial_schema: pa.Schema) -> None:
        self.out_schema = out_schema
        self.group: list[str] = list(spec.get("group") or [])
        self.partial_schema = session_partial_schema(out_schema)
        if not partial_schema.equals(self.partial_schema):
            raise ValueError(f"partial schema {partial_schema} does not match the session aggregate's "
                             f"{self.partial_schema}")
        self.held = self.partial_schema.empty_table()
        self._closed: int | None = None
        self.rows_dropped = 0

    @property
    def rows_held(self) -> int:
        return self.held.num_rows

    def add(self, partials: pa.Table) -> None:
        if partials.num_rows:
            self.held = pa.concat_tables([self.held, partials.select(self.partial_schema.names)
                                          .cast(self.partial_schema)])

    def close(self, watermark_us: int) -> pa.Table:
        """Final rows of the sessions ending at or before `watermark_us`, ordered (`session_rows`)."""
        self._closed = watermark_us if self._closed is None else max(self._closed, watermark_us)
        if not self.held.num_rows:
            return self.out_schema.empty_table()
        done = pc.less_equal(self.held.column(WINDOW), watermark_us)
        out = self.held.filter(done)
        self.held = self.held.filter(pc.invert(done))
        return session_rows([out], self.out_schema, self.group)

    def open_partials(self) -> pa.Table:
        return self.held

    def snapshot(self) -> tuple[dict[str, pa.Table], int | None]:
        return {"merged": self.held}, self._closed

    def restore(self, tables: dict[str, pa.Table], closed: int | None) -> None:
        self.held, self._closed = tables["merged"].cast(self.partial_schema), closed
