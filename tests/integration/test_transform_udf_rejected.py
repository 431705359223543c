"""TRANSFORM with a Python UDF and expressions that fail on some rows.

The rows an expression (or the UDF) cannot process go to `ANALYTIC.rejected` with a reason; every
other row reaches the output: none lost, none duplicated. References are computed here with numpy
and pyarrow, independently of the system.
"""
from __future__ import annotations

import json
import re
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tests.integration.helpers import assert_rows_equal, read, wait_state


# ---- data and its reference ----------------------------------------------------------------

BAD_TEXT = ["abc", "", "1x", "12.5", "--3", "9223372036854775808"]   # none is an int64


def raw(n: int, seed: int = 3, first_id: int = 0) -> pa.Table:
    """id, s (text that is mostly an integer), a, b (sometimes 0), k."""
    rng = np.random.default_rng(seed)
    s = rng.integers(-100_000, 100_000, n).astype(str).astype(object)
    bad_s = rng.random(n) < 0.004
    s[bad_s] = np.array(BAD_TEXT, dtype=object)[rng.integers(0, len(BAD_TEXT), bad_s.sum())]
    b = rng.integers(-5, 6, n)
    b[(b == 0) & (rng.random(n) < 0.9)] = 3       # keep zero divisors rare (about 1 %)
    return pa.table({"id": np.arange(first_id, first_id + n, dtype=np.int64),
                     "s": pa.array(s.tolist(), pa.string()),
                     "a": rng.integers(-1000, 1000, n), "b": b, "k": rng.integers(0, 100, n)})


def is_int64_text(s: str) -> bool:
    return re.fullmatch(r"-?\d+", s) is not None and -2**63 <= int(s) < 2**63


def reference(table: pa.Table) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """(good output id, n, q; mask of rows an expression fails on; mask of rows `where` drops)."""
    s = table["s"].to_pylist()
    parses = np.array([is_int64_text(x) for x in s])
    b = table["b"].to_numpy()
    failed = ~parses | (b == 0)
    dropped = ~failed & (table["k"].to_numpy() % 5 == 0)
    keep = ~failed & ~dropped
    n = np.array([int(x) for x, ok in zip(s, keep) if ok], dtype=np.int64)
    q = table["a"].to_numpy()[keep] // b[keep]           # numpy's // floors, as Python's does
    good = pa.table({"id": table["id"].to_numpy()[keep], "n": n, "q": q})
    return good, failed, dropped


DERIVE = {"n": "cast(s, 'int64')", "q": "a // b"}


def check_rejected(rejected: pa.Table, table: pa.Table, failed: np.ndarray, what: str) -> None:
    """The failing rows, whole, with a reason naming the expression that failed."""
    assert rejected.column_names == table.column_names + ["reason"], what
    got = rejected.sort_by("id")
    assert_rows_equal(got.select(table.column_names), table.filter(pa.array(failed)), what)
    zero = (got["b"].to_numpy() == 0)
    parses = np.array([is_int64_text(x) for x in got["s"].to_pylist()])
    for reason, divides_by_zero, parsed in zip(got["reason"].to_pylist(), zero, parses):
        assert isinstance(reason, str) and reason.strip(), f"{what}: empty reason"
        if not parsed and not divides_by_zero:
            assert "cast" in reason, f"{what}: the reason {reason!r} does not name cast()"
        if parsed and divides_by_zero:
            assert "//" in reason, f"{what}: the reason {reason!r} does not name //"


def check_nothing_lost_or_repeated(out_ids: list, rejected_ids: list, table: pa.Table,
                                   dropped: np.ndarray) -> None:
    assert len(set(out_ids)) == len(out_ids), "a row reached the output twice"
    assert len(set(rejected_ids)) == len(rejected_ids), "a row was rejected twice"
    assert not set(out_ids) & set(rejected_ids), "a row was both output and rejected"
    dropped_ids = set(table["id"].to_numpy()[dropped].tolist())
    assert set(out_ids) | set(rejected_ids) | dropped_ids == set(table["id"].to_pylist())


# ---- expressions alone -----------------------------------------------------------------------

CLEAN = {"name": "clean", "kind": "transform", "input": "raw", "derive": DERIVE,
         "where": "k % 5 != 0", "select": ["id", "n", "q"]}


def batch_edges(base: pa.Table) -> list[pa.Table]:
    """Batches of one bad row, of one good row, of bad rows only, with bad rows first and last."""
    def rows(ids: list[int], s: list[str] | None = None, b: list[int] | None = None) -> pa.Table:
        part = base.take(pa.array(ids))
        if s is not None:
            part = part.set_column(1, "s", pa.array(s, pa.string()))
        if b is not None:
            part = part.set_column(3, "b", pa.array(b, pa.int64()))
        return part.set_column(4, "k", pa.array([1] * len(ids), pa.int64()))   # `where` keeps all

    return [
        rows([0], s=["abc"]),
        rows([1], s=["5"], b=[2]),
        rows(list(range(2, 12)), b=[0] * 10),
        rows(list(range(12, 20)), s=["x"] + ["7"] * 6 + ["y"], b=[1] * 8),
        base.slice(20),                                             # a large mixed batch
    ]


async def test_rows_whose_expressions_fail_are_rejected_with_a_reason_and_all_others_reach_the_output(
        congregation, tmp_path):
    """From a file (one large batch) and from published batches that put bad rows at every edge."""
    filed = raw(15_000)
    pq.write_table(filed, tmp_path / "raw.parquet")
    db = congregation.db()
    await db.submit({"tradecraft": "filed", "analytics": [
        {"name": "raw", "kind": "stream", "source": {"path": str(tmp_path / "raw.parquet")}}, CLEAN]})
    await db.submit({"tradecraft": "pushed", "analytics": [
        {"name": "raw", "kind": "stream",
         "schema": {"id": "int64", "s": "string", "a": "int64", "b": "int64", "k": "int64"}}, CLEAN]})
    parts = batch_edges(raw(6_000, seed=9))
    for i, part in enumerate(parts):
        await db.publish("pushed/raw", part, end=i == len(parts) - 1)

    for tradecraft, table in (("filed", filed), ("pushed", pa.concat_tables(parts))):
        good, failed, dropped = reference(table)
        assert 20 < failed.sum() < 2_000
        got = await read(db, f"{tradecraft}/clean")
        assert_rows_equal(got, good, f"{tradecraft}/clean")
        rejected = await read(db, f"{tradecraft}/clean.rejected")
        check_rejected(rejected, table, failed, f"{tradecraft}/clean.rejected")
        check_nothing_lost_or_repeated(got["id"].to_pylist(), rejected["id"].to_pylist(), table, dropped)
        await wait_state(db, tradecraft)


# ---- with a UDF beside the document ----------------------------------------------------------

UDF_MODULE = '''
import pyarrow as pa
import pyarrow.compute as pc


def total(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Adds total = n * 10 + q to the transformed rows."""
    value = pc.add(pc.multiply(batch.column("n"), 10), batch.column("q"))
    return batch.append_column("total", value)
'''


async def test_udf_module_beside_the_document_runs_after_expressions_and_failing_rows_are_rejected(
        congregation, tmp_path):
    """The module lies beside the document (not on the daemon's path): the congregation imports it
    to validate the document, and the worker imports it to run it."""
    (tmp_path / "hj_udf_total.py").write_text(textwrap.dedent(UDF_MODULE))
    table = raw(20_000, seed=4)
    pq.write_table(table, tmp_path / "raw.parquet")
    document = {"tradecraft": "tc", "analytics": [
        {"name": "raw", "kind": "stream", "source": {"path": "raw.parquet"}},
        {"name": "clean", "kind": "transform", "input": "raw", "derive": DERIVE,
         "where": "k % 5 != 0", "select": ["id", "n", "q"], "udf": "hj_udf_total:total"}]}
    (tmp_path / "doc.json").write_text(json.dumps(document))
    db = congregation.db()
    await db.submit(json.loads((tmp_path / "doc.json").read_text()), base_dir=tmp_path)

    good, failed, dropped = reference(table)
    good = good.append_column("total", pa.array(good["n"].to_numpy() * 10 + good["q"].to_numpy()))
    got = await read(db, "tc/clean")
    assert_rows_equal(got, good, "tc/clean")
    rejected = await read(db, "tc/clean.rejected")
    check_rejected(rejected, table, failed, "tc/clean.rejected")
    check_nothing_lost_or_repeated(got["id"].to_pylist(), rejected["id"].to_pylist(), table, dropped)
    await wait_state(db, "tc")


STRICT_MODULE = '''
import pyarrow as pa
import pyarrow.compute as pc


def strict(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Refuses a batch holding a negative a: plain Python errors from user code."""
    if batch.num_rows and pc.any(pc.less(batch.column("a"), 0)).as_py():
        raise ValueError("negative a")
    return batch.append_column("twice", pc.multiply(batch.column("a"), 2))
'''


async def test_rows_a_udf_raises_on_are_rejected_and_the_rest_reach_the_output(congregation, tmp_path):
    (tmp_path / "hj_udf_strict.py").write_text(textwrap.dedent(STRICT_MODULE))
    rng = np.random.default_rng(21)
    n = 5_000
    a = rng.integers(0, 1000, n)
    a[rng.random(n) < 0.01] *= -1
    a[0], a[-1] = -1, -2
    table = pa.table({"id": np.arange(n, dtype=np.int64), "a": a})
    pq.write_table(table, tmp_path / "in.parquet")
    db = congregation.db()
    await db.submit({"tradecraft": "tc", "analytics": [
        {"name": "nums", "kind": "stream", "source": {"path": "in.parquet"}},
        {"name": "checked", "kind": "transform", "input": "nums", "udf": "hj_udf_strict:strict"}]},
        base_dir=tmp_path)

    negative = a < 0
    kept = table.filter(pa.array(~negative))
    got = await read(db, "tc/checked")
    assert_rows_equal(got, kept.append_column("twice", pa.array(kept["a"].to_numpy() * 2)), "tc/checked")
    rejected = await read(db, "tc/checked.rejected")
    assert_rows_equal(rejected.sort_by("id").select(["id", "a"]), table.filter(pa.array(negative)),
                      "tc/checked.rejected")
    assert all("negative a" in r for r in rejected["reason"].to_pylist())
    await wait_state(db, "tc")
