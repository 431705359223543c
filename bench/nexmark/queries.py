"""The Nexmark queries as tradecrafts (`qN.json` beside this file) and how to check their answers.

A document names its files relatively (`bid.parquet`); `document` makes them absolute for a data
directory. `check` compares an output with DuckDB's answer (`reference.answer`): in order for the
queries that keep the stream's order (q0-q2: one stream in, row for row out), as a multiset for
the others (none has an ORDER BY), with a relative tolerance of 1e-9 on floats that are sums
(q4's averages: the additions run in another order).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Query:
    name: str
    reads: tuple[str, ...]        # the generator's files it reads
    ordered: bool = False         # its answer keeps the stream's order, row for row
    summed: tuple[str, ...] = ()  # float columns compared with a tolerance


QUERIES = {q.name: q for q in (
    Query("q0", ("bid",), ordered=True),
    Query("q1", ("bid",), ordered=True),
    Query("q2", ("bid",), ordered=True),
    Query("q3", ("auction", "person")),
    Query("q4", ("auction", "bid"), summed=("final",)),
    Query("q5", ("bid",)),
    Query("q5_join", ("bid",)),
    Query("q7", ("bid",)),
    Query("q7_join", ("bid",)),
    Query("q8", ("auction", "person")),
)}
"""q5 and q7 rank with an aggregate's `top`; q5_join and q7_join are the same queries as Flink's SQL
says them (joined with the window's maximum), answering the same SQL."""

NOT_EXPRESSED = {
    "q6": "average selling price per seller over its last 10 closed auctions: needs a count-based "
          "window per key (the last N rows), which the document has no form for",
    "q9": "the winning bid of each auction as rows (its bid fields, not only the price): arg-max exists "
          "per window (an aggregate's top) but not over each auction's own life (from its dateTime to its "
          "expires, a per-row interval)",
}
"""Queries of q0-q9 that no document here says, and what is missing (q10 and above are not attempted)."""


def document(query: str, data: Path) -> dict[str, Any]:
    """The query's document with its source paths made absolute in `data`."""
    doc = json.loads((HERE / f"{query}.json").read_text())
    for analytic in doc["analytics"]:
        if "source" in analytic:
            analytic["source"]["path"] = str(data / analytic["source"]["path"])
    return doc


def events_read(query: str, meta: dict[str, Any]) -> int:
    """Rows of the generator's files that the query reads (its input; the Nexmark figure is all events)."""
    return sum(meta["rows"][kind] for kind in QUERIES[query].reads)


def read_output(out: Path, name: str) -> pa.Table:
    """An output `hallelujah run --format arrow` wrote."""
    with pa.ipc.open_file(out / f"{name}.arrow") as f:
        return f.read_all()


def rejected_rows(out: Path) -> dict[str, int]:
    """Rows each analytic sent to `rejected` in a run (all should be 0: no late or bad row here)."""
    counts = {}
    for path in sorted(out.glob("*.rejected.arrow")):
        with pa.ipc.open_file(path) as f:
            counts[path.name.removesuffix(".rejected.arrow")] = f.read_all().num_rows
    return counts


def check(query: str, got: pa.Table, expected: pa.Table) -> str | None:
    """None when `got` is DuckDB's answer `expected`, else what differs (for the bench's report)."""
    q = QUERIES[query]
    if got.column_names != expected.column_names:
        return f"columns {got.column_names} where DuckDB has {expected.column_names}"
    if got.num_rows != expected.num_rows:
        return f"{got.num_rows} rows where DuckDB has {expected.num_rows}"
    got, expected = _comparable(got), _comparable(expected)
    if not q.ordered:
        keys = [(name, "ascending") for name in got.column_names if name not in q.summed]
        got, expected = got.sort_by(keys), expected.sort_by(keys)
    for name in got.column_names:
        a, b = got[name], expected[name]
        same = (np.allclose(a.to_numpy(), b.to_numpy(), rtol=1e-9, atol=0) if name in q.summed
                else a.equals(b))
        if not same:
            at = _first_difference(a, b)
            return f"column {name} differs first at row {at}: {a[at].as_py()!r} where DuckDB has {b[at].as_py()!r}"
    return None


def _comparable(t: pa.Table) -> pa.Table:
    """Timestamps in µs (the files hold ms, DuckDB answers in µs), one chunk per column."""
    fields = [pa.field(f.name, pa.timestamp("us") if pa.types.is_timestamp(f.type) else f.type) for f in t.schema]
    return t.cast(pa.schema(fields)).combine_chunks()


def _first_difference(a: pa.ChunkedArray, b: pa.ChunkedArray) -> int:
    differs = pc.fill_null(pc.not_equal(a, b), True).to_numpy(zero_copy_only=False)
    return int(np.argmax(differs)) if differs.any() else 0
