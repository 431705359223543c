"""The expression language: every operator and function, the errors a user sees, the syntax that is
refused, and a property test comparing evaluate() with a plain-Python reference evaluator."""
from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hallelujah.errors import ExpressionError, HallelujahError
from hallelujah.expressions import MAX_IN_ITEMS, EvaluationError, parse

BATCH = pa.record_batch({
    "i": pa.array([7, -7, None, 0, 3], pa.int64()),
    "j": pa.array([2, 2, 5, None, -2], pa.int32()),
    "x": pa.array([1.5, -2.5, None, 0.0, 2.0]),
    "s": pa.array(["Ab", "héllo", None, "", "xyz"]),
    "b": pa.array([True, False, None, True, False]),
    "ts": pa.array([1, 2, 3, None, 5], pa.timestamp("s")),
    "responses.ts": pa.array([10, 20, 30, 40, 50], pa.timestamp("ms")),
})
T = dt.datetime(1970, 1, 1)


def ev(text: str, data: pa.RecordBatch | pa.Table = BATCH) -> list[Any]:
    """Evaluate, checking the promises every result keeps: one value per row, of type type_in()."""
    expr = parse(text)
    out = expr.evaluate(data)
    assert out.type == expr.type_in(data.schema)
    assert len(out) == data.num_rows
    return out.to_pylist()


def type_of(text: str) -> pa.DataType:
    return parse(text).type_in(BATCH.schema)


@pytest.mark.parametrize("text, expected, typ", [
    ("42", [42] * 5, pa.int64()),
    ("-1.5", [-1.5] * 5, pa.float64()),
    ("'text'", ["text"] * 5, pa.string()),
    ('"text"', ["text"] * 5, pa.string()),
    ("true", [True] * 5, pa.bool_()),
    ("False", [False] * 5, pa.bool_()),
    ("null", [None] * 5, pa.null()),
    ("-9223372036854775808", [-2**63] * 5, pa.int64()),
    ("j", [2, 2, 5, None, -2], pa.int32()),
    ("responses.ts", [T + dt.timedelta(milliseconds=10 * k) for k in range(1, 6)], pa.timestamp("ms")),
])
def test_literals_and_fields_broadcast_to_every_row(text: str, expected: list[Any], typ: pa.DataType) -> None:
    assert ev(text) == expected
    assert type_of(text) == typ


@pytest.mark.parametrize("text, expected, typ", [
    ("i + j", [9, -5, None, None, 1], pa.int64()),
    ("i - j", [5, -9, None, None, 5], pa.int64()),
    ("i * j", [14, -14, None, None, -6], pa.int64()),
    ("i / j", [3.5, -3.5, None, None, -1.5], pa.float64()),
    ("i // j", [3, -4, None, None, -2], pa.int64()),
    ("i % j", [1, 1, None, None, -1], pa.int64()),
    ("x + i", [8.5, -9.5, None, 0.0, 5.0], pa.float64()),
    ("x // 2", [0.0, -2.0, None, 0.0, 1.0], pa.float64()),
    ("x % 2", [1.5, 1.5, None, 0.0, 0.0], pa.float64()),
    ("-i", [-7, 7, None, 0, -3], pa.int64()),
    ("+j", [2, 2, 5, None, -2], pa.int64()),
    ("2 + 3 * 4 - (1 - 2)", [15] * 5, pa.int64()),
    ("null + 1", [None] * 5, pa.int64()),
])
def test_arithmetic_follows_python_and_promotes_int_widths(text: str, expected: list[Any], typ: pa.DataType) -> None:
    assert ev(text) == expected
    assert type_of(text) == typ


@pytest.mark.parametrize("text, expected", [
    ("i == 7", [True, False, None, False, False]),
    ("i != 7", [False, True, None, True, True]),
    ("i < 0", [False, True, None, False, False]),
    ("i <= 0", [False, True, None, True, False]),
    ("i > 0", [True, False, None, False, True]),
    ("i >= 3", [True, False, None, False, True]),
    ("x > i", [False, True, None, False, False]),
    ("s < 'b'", [True, False, None, True, False]),
    ("b == true", [True, False, None, True, False]),
    ("0 <= i < 5", [False, False, None, True, True]),
    ("ts > responses.ts", [True, True, True, None, True]),
    ("ts >= cast('1970-01-01T00:00:03', 'timestamp[s]')", [False, False, True, None, True]),
    ("i == null", [None] * 5),
])
def test_comparisons_give_bools_and_null_for_null(text: str, expected: list[Any]) -> None:
    assert ev(text) == expected
    assert type_of(text) == pa.bool_()


def test_and_or_not_use_kleene_logic() -> None:
    values = [True, False, None]
    batch = pa.record_batch({"p": pa.array([p for p in values for _ in values], pa.bool_()),
                             "q": pa.array([q for _ in values for q in values], pa.bool_())})
    assert ev("p and q", batch) == [True, False, None, False, False, False, None, False, None]
    assert ev("p or q", batch) == [True, True, True, True, False, None, True, None, None]
    assert ev("not p", batch) == [False] * 3 + [True] * 3 + [None] * 3


@pytest.mark.parametrize("text, expected, typ", [
    ("floor(x)", [1.0, -3.0, None, 0.0, 2.0], pa.float64()),
    ("ceil(x)", [2.0, -2.0, None, 0.0, 2.0], pa.float64()),
    ("floor(j)", [2, 2, 5, None, -2], pa.int64()),
    ("abs(i)", [7, 7, None, 0, 3], pa.int64()),
    ("abs(x)", [1.5, 2.5, None, 0.0, 2.0], pa.float64()),
    ("round(x)", [2.0, -2.0, None, 0.0, 2.0], pa.float64()),
    ("round(1.25, 1)", [1.2] * 5, pa.float64()),
    ("round(1250, -2)", [1200] * 5, pa.int64()),
    ("sqrt(16)", [4.0] * 5, pa.float64()),
    ("log(1)", [0.0] * 5, pa.float64()),
    ("lower(s)", ["ab", "héllo", None, "", "xyz"], pa.string()),
    ("upper(s)", ["AB", "HÉLLO", None, "", "XYZ"], pa.string()),
    ("concat(s, '-', s)", ["Ab-Ab", "héllo-héllo", None, "-", "xyz-xyz"], pa.string()),
    ("substr(s, 1, 3)", ["b", "éll", None, "", "yz"], pa.string()),
    ("substr(s, 2, 9223372036854775807)", ["", "llo", None, "", "z"], pa.string()),
    ("if_else(i > 0, 'pos', s)", ["pos", "héllo", None, "", "pos"], pa.string()),
    ("if_else(b, i, x)", [7.0, -2.5, None, 0.0, 2.0], pa.float64()),
    ("coalesce(i, j, 100)", [7, -7, 5, 0, 3], pa.int64()),
    ("coalesce(null, null)", [None] * 5, pa.null()),
    ("is_null(x)", [False, False, True, False, False], pa.bool_()),
    ("cast(x, 'int64')", [1, -2, None, 0, 2], pa.int64()),
    ("cast(i, 'int32')", [7, -7, None, 0, 3], pa.int32()),
    ("cast(i, 'float64')", [7.0, -7.0, None, 0.0, 3.0], pa.float64()),
    ("cast(i, 'bool')", [True, True, None, False, True], pa.bool_()),
    ("cast(i, 'string')", ["7", "-7", None, "0", "3"], pa.string()),
    ("cast('2024-01-02 03:04:05', 'timestamp[s]')", [dt.datetime(2024, 1, 2, 3, 4, 5)] * 5, pa.timestamp("s")),
    ("cast(responses.ts, 'timestamp[s]')", [T] * 5, pa.timestamp("s")),
    ("cast(ts, 'timestamp[us]')", [T + dt.timedelta(seconds=k) for k in (1, 2, 3)] + [None, T + dt.timedelta(seconds=5)],
     pa.timestamp("us")),
])
def test_functions(text: str, expected: list[Any], typ: pa.DataType) -> None:
    assert ev(text) == expected
    assert type_of(text) == typ


def test_hash_is_the_partition_hash_as_int64() -> None:
    from jah.kernels.hashing import hash_columns

    got = parse("hash(i, s)").evaluate(BATCH)
    want = np.asarray(hash_columns([BATCH.column("i"), BATCH.column("s")]), dtype=np.uint64)
    assert got.type == pa.int64()
    assert got.to_pylist() == want.view(np.int64).tolist()
    assert ev("hash(j)") == ev("hash(cast(j, 'int64'))")  # equal values hash equal whatever the width
    assert ev("hash(1)") == ev("hash(i * 0 + 1)")[:1] * 5
    table = pa.Table.from_batches([BATCH.slice(0, 2), BATCH.slice(2)])
    assert ev("hash(s, ts)", table) == ev("hash(s, ts)")


def test_fields_lists_every_field_read_once() -> None:
    assert parse("if_else(responses.ts > ts, x + x, 0)").fields() == {"responses.ts", "ts", "x"}
    assert parse("1 + 2").fields() == frozenset()


def test_a_table_gives_a_chunked_array_equal_to_the_batch_result() -> None:
    table = pa.Table.from_batches([BATCH.slice(0, 2), BATCH.slice(2)])
    got = parse("i // j + x").evaluate(table)
    assert isinstance(got, pa.ChunkedArray)
    assert got.to_pylist() == ev("i // j + x")
    assert ev("42", BATCH.slice(0, 0)) == []


def test_unknown_field_is_named_with_its_position_and_the_fields_there_are() -> None:
    schema = pa.schema([("ts", pa.timestamp("s")), ("lat", pa.float64()), ("lon", pa.float64())])
    with pytest.raises(ExpressionError) as caught:
        parse("lat + lat2").type_in(schema)
    assert str(caught.value) == 'unknown field "lat2" at position 6 (fields: ts, lat, lon)'
    assert (caught.value.position, caught.value.text) == (6, "lat + lat2")
    with pytest.raises(ExpressionError, match='"lat2" at position 6'):
        parse("lat + lat2").evaluate(pa.Table.from_pylist([], schema))


@pytest.mark.parametrize("text, position, words", [
    ("s + 1", 2, "string"),
    ("not i", 4, "bool"),
    ("x == s", 2, "cannot combine"),
    ("if_else(i, 1, 2)", 8, "condition"),
    ("concat(s, i)", 10, "string"),
    ("upper(b)", 6, "string"),
    ("cast(b, 'timestamp[s]')", 0, "cannot cast bool"),
    ("hash(i, x)", 8, "cannot hash double"),
    ("-s", 0, "numbers"),
    ("'héé' + zz", 8, "zz"),  # positions count characters, not UTF-8 bytes
    ("(i +\n  zz)", 7, "zz"),
])
def test_type_errors_name_the_fault_and_its_position(text: str, position: int, words: str) -> None:
    with pytest.raises(ExpressionError, match=words) as caught:
        parse(text).type_in(BATCH.schema)
    assert caught.value.position == position
    assert f"at position {position}" in str(caught.value)


@pytest.mark.parametrize("text, position", [
    ("__import__('os').system('x')", 0),
    ("().__class__", 0),
    ("x.__class__", 0),
    ("__builtins__", 0),
    ("[x for x in y]", 0),
    ("lambda: 1", 0),
    ("a[0]", 0),
    ("open('f')", 0),
    ("f(x=1)", 0),
    ("floor(x=1)", 6),
    ("floor(*a)", 6),
    ("x if b else 1", 0),
    ("f'{x}'", 0),
    ("(y := 1)", 1),
    ("i ** 2", 2),
    ("~i", 0),
    ("i is None", 2),
    ("i in (1, 2) in (true,)", 2),
    ("b'x'", 0),
    ("1j", 0),
    ("{1: 2}", 0),
    ("9223372036854775808", 0),
    ("floor(1, 2)", 0),
    ("substr(s, 0)", 0),
    ("round(x, j)", 9),
    ("round(x, 301)", 9),
    ("substr(s, -1, 2)", 10),
    ("cast(x, 'int8')", 8),
    ("i +", 3),
    ("  i + )", 6),
    ("", 0),
    ("1" + " + 1" * 300, 0),
])
def test_forbidden_or_malformed_text_is_refused_at_parse(text: str, position: int) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse(text)
    assert caught.value.position == position, str(caught.value)
    assert caught.value.text == text


@pytest.mark.parametrize("text", [
    "i // 0", "i % (j - 2)", "i / 0", "x / 0.0", "x // 0", "i * 9223372036854775807", "-(i - 9223372036854775807 - 1)",
    "cast(s, 'int64')", "cast(i * 1000000000000, 'int32')", "cast(x * 1e30, 'int64')", "sqrt(-1)", "log(0)",
])
def test_data_that_makes_evaluation_fail_raises_evaluation_error(text: str) -> None:
    with pytest.raises(EvaluationError) as caught:
        parse(text).evaluate(BATCH)
    assert isinstance(caught.value, HallelujahError)
    assert caught.value.text == text
    assert "at position" in str(caught.value)


def test_integer_division_by_zero_names_the_operator() -> None:
    with pytest.raises(EvaluationError, match='"//" at position 2 .*divide by zero'):
        parse("i // 0").evaluate(BATCH)


def test_division_by_zero_in_a_null_row_is_just_null() -> None:
    assert ev("i // (j - 5)", BATCH.slice(2, 1)) == [None]


# ---- property test: evaluate() against a plain-Python reference evaluator ----------------------

Row = dict[str, Any]
Ref = Callable[[Row], Any]
Gen = tuple[str, Ref]
FIELDS = {"i": pa.int64(), "j": pa.int32(), "x": pa.float64(), "y": pa.float64(),
          "s": pa.string(), "t": pa.string(), "b": pa.bool_()}
BIG = st.sampled_from([2**62, -2**63, 2**63 - 1])
ALPHABET = "aAzZ é Ω0"


class Overflow(Exception):
    """An int64 result out of range: the engine must raise EvaluationError."""


def _int(v: Any) -> Any:
    if v is not None and not -2**63 <= v < 2**63:
        raise Overflow
    return v


def _ffloor(v: float) -> float:
    return float(math.floor(v)) if math.isfinite(v) else v


def _fround(v: float) -> float:
    return float(round(v)) if math.isfinite(v) else v


def _trunc_int(v: float) -> int:
    if not math.isfinite(v):
        raise Overflow
    return _int(math.trunc(v))


def _arith(op: str, a: Any, b: Any) -> Any:
    """The documented semantics: ints stay exact int64; with a float (or for /) both are float64."""
    if isinstance(a, float) or isinstance(b, float) or op == "/":
        a, b = float(a), float(b)
        if op in ("/", "//", "%"):
            if b == 0:
                raise ZeroDivisionError
            q = _ffloor(a / b)  # float // and % are defined through floor(a / b)
            return a / b if op == "/" else q if op == "//" else a - q * b
    if op in ("//", "%") and b == 0:
        raise ZeroDivisionError
    result = {"+": a + b, "-": a - b, "*": a * b}[op] if op in "+-*" else a // b if op == "//" else a % b
    return result if isinstance(result, float) else _int(result)


def _compare(op: str, a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        a, b = float(a), float(b)
    return {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def _and(a: Any, b: Any) -> Any:
    return False if a is False or b is False else None if a is None or b is None else True


def _or(a: Any, b: Any) -> Any:
    return True if a is True or b is True else None if a is None or b is None else False


def strict(fn: Callable[..., Any], *refs: Ref) -> Ref:
    """Evaluate every argument (as the engine does), then null in gives null out."""
    def ref(row: Row) -> Any:
        values = [r(row) for r in refs]
        return None if any(v is None for v in values) else fn(*values)
    return ref


def eager(fn: Callable[..., Any], *refs: Ref) -> Ref:
    return lambda row: fn(*[r(row) for r in refs])


def call(name: str, *args: Gen, extra: str = "") -> tuple[str, list[Ref]]:
    return f"{name}({', '.join(a[0] for a in args)}{extra})", [a[1] for a in args]


def _leaves(kind: str) -> st.SearchStrategy[Gen]:
    def field(name: str) -> Gen:
        return name, lambda row: row[name]

    def lit(text: str, value: Any) -> Gen:
        return text, lambda row: value

    null = st.just(lit("null", None))
    if kind == "int":
        return st.one_of(st.sampled_from([field("i"), field("j")]),
                         st.integers(-5, 5).map(lambda v: lit(str(v), v)), null)
    if kind == "float":
        return st.one_of(st.sampled_from([field("x"), field("y")]),
                         st.floats(-5, 5).map(lambda v: lit(repr(v), v)))
    if kind == "str":
        return st.one_of(st.sampled_from([field("s"), field("t")]),
                         st.text(ALPHABET, max_size=3).map(lambda v: lit(repr(v), v)), null)
    return st.sampled_from([field("b"), lit("true", True), lit("false", False), lit("null", None)])


@cache
def exprs(kind: str, depth: int) -> st.SearchStrategy[Gen]:
    """Random expressions of one kind with their reference; composites are parenthesized."""
    if depth == 0:
        return _leaves(kind)
    sub: Callable[[str], st.SearchStrategy[Gen]] = lambda k: exprs(k, depth - 1)
    num = st.one_of(sub("int"), sub("float"))

    def binop(ops: list[str], left: st.SearchStrategy[Gen], right: st.SearchStrategy[Gen]) -> st.SearchStrategy[Gen]:
        return st.tuples(st.sampled_from(ops), left, right).map(
            lambda t: (f"({t[1][0]} {t[0]} {t[2][0]})", strict(lambda a, b, op=t[0]: _arith(op, a, b), t[1][1], t[2][1])))

    def fn(name: str, f: Callable[..., Any], *args: st.SearchStrategy[Gen], how: Callable[..., Ref] = strict,
           extra: str = "") -> st.SearchStrategy[Gen]:
        def build(gens: tuple[Gen, ...]) -> Gen:
            text, refs = call(name, *gens, extra=extra)
            return text, how(f, *refs)
        return st.tuples(*args).map(build)

    choose = lambda c, a, b: None if c is None else a if c else b
    first = lambda *vs: next((v for v in vs if v is not None), None)
    same = [fn("if_else", choose, sub("bool"), sub(kind), sub(kind), how=eager),
            fn("coalesce", first, sub(kind), sub(kind), how=eager)]
    if kind == "int":
        options = [binop(["+", "-", "*", "//", "%"], sub("int"), sub("int")),
                   fn("abs", lambda v: _int(abs(v)), sub("int")),
                   st.tuples(sub("int")).map(lambda t: (f"(-{t[0][0]})", strict(lambda v: _int(-v), t[0][1]))),
                   fn("floor", lambda v: v, sub("int")), fn("round", lambda v: v, sub("int")),
                   fn("cast", _trunc_int, sub("float"), extra=", 'int64'")]
    elif kind == "float":
        options = [binop(["+", "-", "*", "/", "//", "%"], sub("float"), num),
                   binop(["+", "-", "*", "/", "//", "%"], num, sub("float")),
                   binop(["/"], sub("int"), sub("int")),
                   fn("floor", _ffloor, sub("float")), fn("ceil", lambda v: -_ffloor(-v), sub("float")),
                   fn("round", _fround, sub("float")), fn("abs", abs, sub("float")),
                   fn("sqrt", lambda v: math.sqrt(abs(v)), fn("abs", abs, sub("float"))),
                   fn("cast", float, sub("int"), extra=", 'float64'")]
    elif kind == "str":
        options = [fn("concat", lambda *vs: "".join(vs), sub("str"), sub("str"), sub("str")),
                   fn("lower", str.lower, sub("str")), fn("upper", str.upper, sub("str")),
                   st.tuples(sub("str"), st.integers(0, 3), st.integers(0, 3)).map(lambda t: (
                       f"substr({t[0][0]}, {t[1]}, {t[2]})",
                       strict(lambda v, a=t[1], n=t[2]: v[a:a + n], t[0][1]))),
                   fn("cast", str, sub("int"), extra=", 'string'")]
    else:
        ops = ["==", "!=", "<", "<=", ">", ">="]
        cmp = lambda left, right, ops=ops: st.tuples(st.sampled_from(ops), left, right).map(
            lambda t: (f"({t[1][0]} {t[0]} {t[2][0]})", strict(lambda a, b, op=t[0]: _compare(op, a, b), t[1][1], t[2][1])))
        chained = st.tuples(st.sampled_from(ops), st.sampled_from(ops), num, num, num).map(lambda t: (
            f"({t[2][0]} {t[0]} {t[3][0]} {t[1]} {t[4][0]})",
            eager(_and, strict(lambda a, b, op=t[0]: _compare(op, a, b), t[2][1], t[3][1]),
                  strict(lambda a, b, op=t[1]: _compare(op, a, b), t[3][1], t[4][1]))))
        logic = st.tuples(st.sampled_from(["and", "or"]), sub("bool"), sub("bool")).map(lambda t: (
            f"({t[1][0]} {t[0]} {t[2][0]})", eager(_and if t[0] == "and" else _or, t[1][1], t[2][1])))
        options = [cmp(num, num), cmp(sub("str"), sub("str")), cmp(sub("bool"), sub("bool"), ["==", "!="]),
                   chained, logic,
                   st.tuples(sub("bool")).map(lambda t: (f"(not {t[0][0]})", strict(lambda v: not v, t[0][1]))),
                   st.one_of(*(sub(k) for k in ("int", "float", "str", "bool"))).map(
                       lambda g: (f"is_null({g[0]})", eager(lambda v: v is None, g[1])))]
    return st.one_of(_leaves(kind), *options, *same)


ROWS = st.lists(st.fixed_dictionaries({
    "i": st.one_of(st.none(), st.integers(-1000, 1000), BIG),
    "j": st.one_of(st.none(), st.integers(-50, 50)),
    "x": st.one_of(st.none(), st.floats(-1e6, 1e6)),
    "y": st.floats(-100, 100),
    "s": st.one_of(st.none(), st.text(ALPHABET, max_size=4)),
    "t": st.text(ALPHABET, max_size=4),
    "b": st.one_of(st.none(), st.booleans()),
}), min_size=1, max_size=8)


def _same(got: Any, want: Any) -> bool:
    if isinstance(got, float) and isinstance(want, float) and math.isnan(got):
        return math.isnan(want)
    return got == want and type(got) is type(want) if want is not None else got is None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=ROWS, kind=st.sampled_from(["int", "float", "str", "bool"]), data=st.data())
def test_evaluate_matches_a_python_reference(rows: list[Row], kind: str, data: st.DataObject) -> None:
    text, ref = data.draw(exprs(kind, 3), label="expression")
    batch = pa.record_batch({name: pa.array([row[name] for row in rows], typ) for name, typ in FIELDS.items()})
    table = pa.Table.from_batches([batch.slice(0, len(rows) // 2), batch.slice(len(rows) // 2)])
    expr = parse(text)
    try:
        want = [ref(row) for row in rows]
    except (ZeroDivisionError, Overflow):
        for data_ in (batch, table):
            with pytest.raises(EvaluationError):
                expr.evaluate(data_)
        return
    for data_ in (batch, table):
        got = expr.evaluate(data_)
        assert got.type == expr.type_in(batch.schema)
        values = got.to_pylist()
        assert len(values) == len(want)
        assert all(_same(g, w) for g, w in zip(values, want)), (text, values, want)


# ---- in / not in -------------------------------------------------------------------------------

def _sql_in(values: list[Any], items: list[Any], negate: bool) -> list[Any]:
    """SQL's three-valued `x [not] in (items)` through numpy: null for a null x, and for no match when a literal is null."""
    listed = [v for v in items if v is not None]
    x = np.array([0 if v is None else v for v in values], dtype=object)
    found = np.isin(x, np.array(listed, dtype=object)) if listed else np.zeros(len(x), bool)
    unknown = np.array([v is None for v in values]) | (~found & (len(listed) < len(items)))
    return [None if u else bool(f) != negate for f, u in zip(found, unknown)]


@pytest.mark.parametrize("field, items", [
    ("i", [7, 0, 99]), ("i", [7, None]), ("j", [2, -2]), ("j", [5.0, 2.5]), ("x", [1.5, 0, 7]),
    ("s", ["Ab", "", "nope"]), ("s", ["xyz", None]), ("b", [True]), ("i", [None]),
])
@pytest.mark.parametrize("negate", [False, True])
def test_in_and_not_in_match_numpy_with_sql_nulls(field: str, items: list[Any], negate: bool) -> None:
    text = f"{field} {'not in' if negate else 'in'} ({', '.join('null' if v is None else repr(v) for v in items)},)"
    assert type_of(text) == pa.bool_()
    assert ev(text) == _sql_in(BATCH.column(field).to_pylist(), items, negate)


def test_in_takes_a_list_too_and_a_where_drops_its_null_rows() -> None:
    kept = BATCH.filter(parse("i in [7, -7, 3]").evaluate(BATCH))
    assert kept.column("i").to_pylist() == [7, -7, 3]  # the null row is neither in nor not in
    assert BATCH.filter(parse("i not in [7, -7, 3]").evaluate(BATCH)).column("i").to_pylist() == [0]


def test_in_over_a_table_of_chunks_and_with_a_literal_on_the_left() -> None:
    table = pa.Table.from_batches([BATCH, BATCH])
    assert ev("s in ('Ab', 'xyz')", table) == [True, False, None, False, True] * 2
    assert ev("3 in (1, 3)") == [True] * 5
    assert ev("null not in (1, 3)") == [None] * 5


@pytest.mark.parametrize("text, position, words", [
    ("i in (1, 'x')", 9, "'x' is not a value of int64"),
    ("s not in ('NL', 2)", 16, "2 is not a value of string"),
    ("b in (true, 1)", 12, "1 is not a value of bool"),
    ("ts in ('1970-01-01',)", 7, "is not a value of timestamp[s]"),
])
def test_an_in_list_is_typed_against_its_operand_naming_the_value(text: str, position: int, words: str) -> None:
    with pytest.raises(ExpressionError) as e:
        type_of(text)
    assert e.value.position == position
    assert words in str(e.value)


@pytest.mark.parametrize("text, position", [
    ("i in j", 5), ("i in (j, 1)", 6), ("i in ()", 5), ("i in (1 + 1,)", 6), ("1 < i in (1, 2)", 6),
    ("i in {1, 2}", 5), ("i in (abs(1),)", 6),
])
def test_an_in_list_must_be_written_out_in_literals(text: str, position: int) -> None:
    with pytest.raises(ExpressionError) as e:
        parse(text)
    assert e.value.position == position


def test_a_long_in_list_is_refused_past_its_limit_and_positions_in_it_count_characters() -> None:
    many = ", ".join(repr(f"é{k}") for k in range(MAX_IN_ITEMS - 1))
    assert ev(f"s in ({many}, 'xyz')") == [False, False, None, False, True]
    with pytest.raises(ExpressionError, match="at most 10,000 literals, got 10,001 at position 5"):
        parse(f"s in ({many}, 'a', 'b')")
    with pytest.raises(ExpressionError) as e:  # positions count characters past many non-ASCII ones
        parse(f"s in ({many}, x)")
    assert e.value.position == len(f"s in ({many}, ")
