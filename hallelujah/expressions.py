"""The expression language of tradecraft documents, run vectorized with ``pyarrow.compute``.

Text is read by ``ast.parse(text, mode="eval")`` only; every node is checked against a whitelist
and turned into this module's own small tree, so user text is never compiled or evaluated.
`Expression.type_in` runs at submit, against the input schema, so a bad field or operand is
reported with its position before any data flows; `Expression.evaluate` then walks the tree
over whole batches: no Python runs per row.

Semantics, where Python and Arrow could differ: ints of every width compute as int64 and raise
on overflow; with a float (and always for ``/``) both sides are float64; ``//`` and ``%`` follow
Python's signs (for floats through ``floor(a / b)``); division by zero raises, even for floats.
Nulls propagate, except through Kleene ``and``/``or``, ``coalesce`` and ``is_null``. ``x in (a, b)``
takes literals only and is SQL's: null when x is null, or when nothing matches and a literal is null.
"""
from __future__ import annotations

import ast
import itertools
import re
import warnings
from collections.abc import Callable
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hallelujah.errors import EvaluationError, ExpressionError

MAX_DEPTH = 100  # deeper trees are refused at parse, so typing and evaluation cannot exhaust the stack
MAX_IN_ITEMS = 10_000  # literals in one `in` list: a longer one is data, better joined as a dataset

INT64, FLOAT64, BOOL, STRING, NULL = pa.int64(), pa.float64(), pa.bool_(), pa.string(), pa.null()
CAST_TYPES: dict[str, pa.DataType] = {
    "int32": pa.int32(), "int64": INT64, "float64": FLOAT64, "bool": BOOL, "string": STRING,
    "timestamp[s]": pa.timestamp("s"), "timestamp[ms]": pa.timestamp("ms"), "timestamp[us]": pa.timestamp("us"),
}
# name: (fewest, most) arguments, None for any number
FUNCTIONS: dict[str, tuple[int, int | None]] = {
    "floor": (1, 1), "ceil": (1, 1), "abs": (1, 1), "round": (1, 2), "sqrt": (1, 1), "log": (1, 1),
    "lower": (1, 1), "upper": (1, 1), "concat": (1, None), "substr": (3, 3), "if_else": (3, 3),
    "coalesce": (1, None), "is_null": (1, 1), "cast": (2, 2), "hash": (1, None),
}
_ARITH = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%"}
_COMPARE = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}
_CMP_FN: dict[str, Callable[..., Any]] = {"==": pc.equal, "!=": pc.not_equal, "<": pc.less,
                                          "<=": pc.less_equal, ">": pc.greater, ">=": pc.greater_equal}
_ARITH_FN: dict[str, Callable[..., Any]] = {"+": pc.add_checked, "-": pc.subtract_checked,
                                            "*": pc.multiply_checked, "/": pc.divide_checked}
_UNARY = {ast.USub: "-", ast.UAdd: "+", ast.Not: "not"}
_MATH: dict[str, tuple[Callable[..., Any], pa.DataType]] = {
    "sqrt": (pc.sqrt_checked, FLOAT64), "log": (pc.ln_checked, FLOAT64),
    "lower": (pc.utf8_lower, STRING), "upper": (pc.utf8_upper, STRING),
}
_OTHER_OPS = {ast.Pow: "**", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.LShift: "<<",
              ast.RShift: ">>", ast.MatMult: "@", ast.Invert: "~", ast.Is: "is", ast.IsNot: "is not",
              ast.In: "in", ast.NotIn: "not in"}
_REFUSED = {ast.Subscript: "subscripts", ast.Lambda: "lambdas", ast.ListComp: "comprehensions",
            ast.SetComp: "comprehensions", ast.DictComp: "comprehensions", ast.GeneratorExp: "comprehensions",
            ast.IfExp: "conditional expressions (use if_else(cond, a, b))", ast.JoinedStr: "f-strings",
            ast.NamedExpr: "assignment expressions", ast.Starred: "starred arguments", ast.Tuple: "tuples",
            ast.List: "lists", ast.Set: "sets", ast.Dict: "dicts"}
_NUM, _STR, _BOOL = {"int", "float", "null"}, {"string", "null"}, {"bool", "null"}
_ORDERED = {"int", "float", "string", "bool", "timestamp", "null"}
_HASHABLE = (pa.types.is_integer, pa.types.is_boolean, pa.types.is_timestamp, pa.types.is_date,
             pa.types.is_time, pa.types.is_duration, pa.types.is_string, pa.types.is_large_string,
             pa.types.is_binary, pa.types.is_large_binary, pa.types.is_dictionary, pa.types.is_null)
_UNITS = ("s", "ms", "us", "ns")
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)?")

Value: TypeAlias = "pa.Array | pa.ChunkedArray | pa.Scalar"
Memo: TypeAlias = "dict[int, pa.DataType]"
Data: TypeAlias = "pa.RecordBatch | pa.Table"


def _kind(t: pa.DataType) -> str:
    """The family a type belongs to for the typing rules; any other type is a family of its own."""
    for kind, test in (("null", pa.types.is_null), ("bool", pa.types.is_boolean), ("int", pa.types.is_integer),
                       ("float", pa.types.is_floating), ("string", pa.types.is_string),
                       ("string", pa.types.is_large_string), ("timestamp", pa.types.is_timestamp)):
        if test(t):
            return kind
    return str(t)


def _numeric(types: list[pa.DataType], what: str, pos: int) -> pa.DataType:
    """Arithmetic's type: ints widen to int64, anything with a float to float64 (null counts as int)."""
    if not {_kind(t) for t in types} <= _NUM:
        raise ExpressionError(f"{what} needs numbers, got {' and '.join(map(str, types))} at position {pos}", pos)
    return FLOAT64 if any(pa.types.is_floating(t) for t in types) else INT64


def _common(types: list[pa.DataType], what: str, pos: int) -> pa.DataType:
    """The one type that values of `types` are converted to before they are compared or merged."""
    known = [t for t in types if not pa.types.is_null(t)]
    kinds = {_kind(t) for t in known}
    if not known:
        return NULL
    if kinds <= _NUM:
        return _numeric(known, what, pos)
    if kinds == {"timestamp"} and len({t.tz for t in known}) == 1:
        return max(known, key=lambda t: _UNITS.index(t.unit))  # the finest unit loses nothing
    if kinds == {"string"} or len(set(known)) == 1:
        return STRING if kinds == {"string"} else known[0]
    raise ExpressionError(f"{what} cannot combine {' and '.join(map(str, types))} at position {pos}", pos)


def _expect(node: _Node, t: pa.DataType, kinds: set[str], what: str) -> None:
    if _kind(t) not in kinds:
        want = " or ".join(sorted(kinds - {"null"}))
        raise ExpressionError(f"{what} needs {want}, got {t} at position {node.pos}", node.pos)


def _to(value: Value, t: pa.DataType) -> Value:
    """`value` as type `t`: overflow raises, but ints past 2**53 round to float64 as Python's float() does."""
    if value.type == t:
        return value
    lossy = pa.types.is_floating(t) and pa.types.is_integer(value.type)
    return pc.cast(value, options=pc.CastOptions(t, allow_float_truncate=lossy))


class _Node:
    """One node of a parsed expression; `pos` is its 0-based offset in the expression text."""

    label = "expression"

    def __init__(self, pos: int, *args: _Node) -> None:
        self.pos, self.args = pos, args

    def fields(self) -> set[str]:
        return set().union(*(a.fields() for a in self.args))

    def typed(self, schema: pa.Schema, memo: Memo) -> pa.DataType:
        """This node's result type, kept in `memo` so that evaluation converts to exactly it."""
        if id(self) not in memo:
            memo[id(self)] = self._type([a.typed(schema, memo) for a in self.args], schema)
        return memo[id(self)]

    def run(self, data: Data, memo: Memo) -> Value:
        values, out = [a.run(data, memo) for a in self.args], memo[id(self)]
        try:
            return _to(self._run(values, [memo[id(a)] for a in self.args], out, data), out)
        except pa.ArrowException as e:
            raise EvaluationError(f"{self.label} at position {self.pos} failed: {e}", self.pos) from e

    def _type(self, types: list[pa.DataType], schema: pa.Schema) -> pa.DataType:
        raise NotImplementedError

    def _run(self, values: list[Value], types: list[pa.DataType], out: pa.DataType, data: Data) -> Value:
        raise NotImplementedError


class _Literal(_Node):
    def __init__(self, pos: int, value: object) -> None:
        super().__init__(pos)
        self.value = value
        self.type = {int: INT64, float: FLOAT64, str: STRING, bool: BOOL}.get(type(value), NULL)
        self.scalar = pa.scalar(value, self.type)

    def _type(self, types: list[pa.DataType], schema: pa.Schema) -> pa.DataType:
        return self.type

    def _run(self, values: list[Value], types: list[pa.DataType], out: pa.DataType, data: Data) -> Value:
        return self.scalar


class _Field(_Node):
    def __init__(self, pos: int, name: str) -> None:
        super().__init__(pos)
        self.name = name

    def fields(self) -> set[str]:
        return {self.name}

    def _type(self, types: list[pa.DataType], schema: pa.Schema) -> pa.DataType:
        if self.name not in schema.names:
            raise ExpressionError(f'unknown field "{self.name}" at position {self.pos} '
                                  f'(fields: {", ".join(schema.names)})', self.pos)
        return schema.field(schema.names.index(self.name)).type

    def _run(self, values: list[Value], types: list[pa.DataType], out: pa.DataType, data: Data) -> Value:
        return data.column(data.schema.names.index(self.name))


class _Operator(_Node):
    """A unary (- + not) or binary (arithmetic, comparison, and, or) operator."""

    def __init__(self, pos: int, op: str, *args: _Node) -> None:
        super().__init__(pos, *args)
        self.op, self.label = op, f'operator "{op}"'

    def _type(self, types: list[pa.DataType], schema: pa.Schema) -> pa.DataType:
        if self.op in ("and", "or", "not"):
            for arg, t in zip(self.args, types):
                _expect(arg, t, _BOOL, self.label)
            return BOOL
        if self.op in _CMP_FN:
            if _kind(common := _common(types, self.label, self.pos)) not in _ORDERED:
                raise ExpressionError(f"{self.label} cannot compare {common} at position {self.pos}", self.pos)
            return BOOL
        return FLOAT64 if self.op == "/" else _numeric(types, self.label, self.pos)

    def _run(self, values: list[Value], types: list[pa.DataType], out: pa.DataType, data: Data) -> Value:
        op = self.op
        if op in _CMP_FN:
            common = _common(types, self.label, self.pos)
            return _CMP_FN[op](*(_to(v, BOOL if common == NULL else common) for v in values))
        args = [_to(v, out) for v in values]
        if len(args) == 1:
            return pc.invert(args[0]) if op == "not" else pc.negate_checked(args[0]) if op == "-" else args[0]
        if op in ("and", "or"):
            return (pc.and_kleene if op == "and" else pc.or_kleene)(*args)
        if op in _ARITH_FN:
            return _ARITH_FN[op](*args)
        quotient, remainder = _floor_divmod(args[0], args[1], out == INT64)
        return quotient if op == "//" else remainder


class _In(_Node):
    """`x in (a, b, ...)` or `x not in (...)`: one ``is_in`` over a value set of literals, with SQL's nulls."""

    def __init__(self, pos: int, negate: bool, arg: _Node, items: list[_Literal]) -> None:
        super().__init__(pos, arg)
        self.negate, self.items = negate, items
        self.sets: dict[pa.DataType, pa.Array] = {}  # the value set, built once per type compared at
        self.label = f'operator "{"not in" if negate else "in"}"'

    def _type(self, types: list[pa.DataType], schema: pa.Schema) -> pa.DataType:
        for item in self.items:  # each literal against the operand, so a fault names its value
            try:
                _common([types[0], item.type], self.label, item.pos)
            except ExpressionError:
                raise ExpressionError(f"{self.label}: {item.value!r} is not a value of {types[0]} "
                                      f"at position {item.pos}", item.pos) from None
        return BOOL

    def _run(self, values: list[Value], types: list[pa.DataType], out: pa.DataType, data: Data) -> Value:
        common = _common([types[0]] + [i.type for i in self.items], self.label, self.pos)
        if common == NULL:  # the operand is null, so is every answer
            return pa.scalar(None, BOOL)
        x = _to(values[0], common)
        if common not in self.sets:
            self.sets[common] = pa.array([i.value for i in self.items if i.value is not None], common)
        found = pc.is_in(x, value_set=self.sets[common], skip_nulls=True)
        if any(i.value is None for i in self.items):  # no match against a null is unknown, not false
            found = pc.if_else(found, True, pa.scalar(None, BOOL))
        if x.null_count if not isinstance(x, pa.Scalar) else not x.is_valid:
            found = pc.if_else(pc.is_valid(x), found, pa.scalar(None, BOOL))
        return pc.invert(found) if self.negate else found


def _floor_divmod(a: Value, b: Value, integer: bool) -> tuple[Value, Value]:
    """Python's // and %: the quotient rounds down, the remainder takes the divisor's sign."""
    if not integer:
        q = pc.floor(pc.divide_checked(a, b))
        return q, pc.subtract(a, pc.multiply(q, b))
    q = pc.divide_checked(a, b)  # Arrow truncates toward zero; step down where the signs differ
    r = pc.subtract_checked(a, pc.multiply_checked(q, b))
    fix = pc.and_(pc.not_equal(r, 0), pc.not_equal(pc.less(r, 0), pc.less(b, 0)))
    return pc.subtract(q, pc.cast(fix, INT64)), pc.add(r, pc.if_else(fix, b, 0))


class _Call(_Node):
    """A whitelisted function; `consts` holds arguments that must be literals (ndigits, bounds, type)."""

    def __init__(self, pos: int, name: str, args: list[_Node], consts: tuple[Any, ...]) -> None:
        super().__init__(pos, *args)
        self.name, self.consts, self.label = name, consts, f"{name}()"

    def _type(self, types: list[pa.DataType], schema: pa.Schema) -> pa.DataType:
        name, args = self.name, self.args
        if name in ("floor", "ceil", "abs", "round", "sqrt", "log"):
            _expect(args[0], types[0], _NUM, self.label)
            return _MATH[name][1] if name in _MATH else _numeric(types, self.label, self.pos)
        if name in ("lower", "upper", "concat", "substr"):
            for arg, t in zip(args, types):
                _expect(arg, t, _STR, self.label)
            return STRING
        if name == "if_else":
            _expect(args[0], types[0], _BOOL, "if_else() condition")
        if name in ("if_else", "coalesce"):
            return _common(types[1:] if name == "if_else" else types, self.label, self.pos)
        if name == "hash":
            for arg, t in zip(args, types):
                if not any(test(t) for test in _HASHABLE):
                    raise ExpressionError(f"hash() cannot hash {t} at position {arg.pos}", arg.pos)
            return INT64
        if name == "cast":
            try:  # Arrow knows from the types alone whether it has a cast kernel
                pa.array([], types[0]).cast(CAST_TYPES[self.consts[0]])
            except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
                raise ExpressionError(f"cannot cast {types[0]} to {self.consts[0]} at position {self.pos}",
                                      self.pos) from None
            return CAST_TYPES[self.consts[0]]
        return BOOL  # is_null

    def _run(self, values: list[Value], types: list[pa.DataType], out: pa.DataType, data: Data) -> Value:
        name, x = self.name, values[0]
        if name in _MATH:
            return _MATH[name][0](_to(x, _MATH[name][1]))
        if name in ("floor", "ceil", "abs", "round"):
            x = _to(x, out)
            if name == "abs":
                return pc.abs_checked(x)
            if out == INT64 and (name != "round" or self.consts[0] >= 0):
                return x  # already whole
            if name == "round":
                return pc.round(x, self.consts[0], round_mode="half_to_even")  # as Python's round()
            return pc.floor(x) if name == "floor" else pc.ceil(x)
        if name == "concat":
            return pc.binary_join_element_wise(*(_to(v, STRING) for v in values), "")
        if name == "substr":
            start, length = self.consts
            return pc.utf8_slice_codeunits(_to(x, STRING), start, min(start + length, 2**63 - 1))
        if name in ("if_else", "coalesce") and out == NULL:
            return pa.scalar(None, NULL)
        if name == "if_else":
            return pc.if_else(_to(x, BOOL), _to(values[1], out), _to(values[2], out))
        if name == "coalesce":
            return pc.coalesce(*(_to(v, out) for v in values))
        if name == "is_null":
            return pc.is_null(x)
        if name == "cast":
            if _kind(types[0]) == "float" and _kind(out) == "int":
                x = pc.trunc(x)  # as Python's int(); the cast below still refuses overflow and NaN
            return pc.cast(x, options=pc.CastOptions(out, allow_time_truncate=True,
                                                     allow_float_truncate=_kind(types[0]) == "int"))
        return self._hash(values, data.num_rows)

    def _hash(self, values: list[Value], n: int) -> pa.Array:
        from jah.kernels.hashing import hash_columns  # Numba loads only for expressions that hash

        columns = [pa.repeat(v, n) if isinstance(v, pa.Scalar) else v for v in values]
        try:
            hashes = np.asarray(hash_columns(columns), dtype=np.uint64)
        except (ValueError, TypeError) as e:
            raise EvaluationError(f"hash() at position {self.pos} failed: {e}", self.pos) from e
        return pa.array(hashes.view(np.int64), type=INT64)


class Expression:
    """A parsed expression: type it against a schema, then evaluate it over batches."""

    def __init__(self, text: str, root: _Node) -> None:
        self.text = text
        self._root = root

    def __repr__(self) -> str:
        return f"parse({self.text!r})"

    def fields(self) -> frozenset[str]:
        """The field names the expression reads, so a caller can check or project its input."""
        return frozenset(self._root.fields())

    def type_in(self, schema: pa.Schema) -> pa.DataType:
        """The result type over rows of `schema`; raises ExpressionError naming the fault and its position."""
        return self._typed(schema, {})

    def evaluate(self, batch: pa.RecordBatch | pa.Table) -> pa.Array | pa.ChunkedArray:
        """One value per row of `batch`, of type ``type_in(batch.schema)``; the batch is not changed.

        Raises ExpressionError if the expression does not fit the batch's schema, and
        EvaluationError if the data make it fail (division by zero, overflow, a failed cast).
        Every argument of if_else/coalesce/and/or is computed, so a failure in any of them raises.
        """
        memo: Memo = {}
        self._typed(batch.schema, memo)
        try:
            out = self._root.run(batch, memo)
        except EvaluationError as e:
            e.text = self.text
            raise
        return pa.repeat(out, batch.num_rows) if isinstance(out, pa.Scalar) else out

    def _typed(self, schema: pa.Schema, memo: Memo) -> pa.DataType:
        try:
            return self._root.typed(schema, memo)
        except ExpressionError as e:
            e.text = self.text
            raise


def parse(text: str) -> Expression:
    """Parse `text` into an Expression; raises ExpressionError with the position of the fault.

    Only whitelisted syntax is accepted and nothing is evaluated; types are checked by type_in.
    """
    if not isinstance(text, str):
        raise ExpressionError(f"an expression must be a string, got {type(text).__name__}", 0, repr(text))
    if "\x00" in text:
        raise ExpressionError(f"NUL character at position {text.index(chr(0))}", text.index(chr(0)), text)
    body = text.lstrip()  # Python would call leading spaces an indent
    if not body:
        raise ExpressionError(f"empty expression at position {len(text)}", len(text), text)
    converter = _Converter(text, len(text) - len(body))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an invalid escape such as '\d' stays a backslash and a d
            tree = ast.parse(body, mode="eval")
    except SyntaxError as e:
        if not e.offset:  # Python gives no offset when the text ends too early
            pos, msg = len(text.rstrip()), "the expression ends too early"
        else:
            pos, msg = converter.char_at(e.lineno or 1, e.offset - 1), e.msg
        raise ExpressionError(f"syntax error: {msg} at position {pos}", pos, text) from None
    except (RecursionError, MemoryError):
        raise ExpressionError("expression is too deeply nested at position 0", 0, text) from None
    return Expression(text, converter.convert(tree.body, 0))


class _Converter:
    """Turns a whitelisted Python AST into _Nodes, mapping AST offsets to character positions."""

    def __init__(self, text: str, lead: int) -> None:
        self.text, self.lead = text, lead
        self.lines = _LINE.findall(text[lead:])
        self.starts = list(itertools.accumulate([0] + [len(line) for line in self.lines]))
        self.ascii = [line.isascii() for line in self.lines]  # where a byte is a character
        self.chars: dict[int, list[int]] = {}  # for the other lines: characters before each byte

    def char_at(self, lineno: int, chars: int) -> int:
        i = max(0, min(lineno - 1, len(self.lines) - 1))
        return min(len(self.text), self.lead + self.starts[i] + max(0, chars))

    def pos(self, node: ast.AST, end: bool = False) -> int:
        """0-based character offset of `node`; AST columns count UTF-8 bytes, users count characters."""
        lineno, col = (node.end_lineno, node.end_col_offset) if end else (node.lineno, node.col_offset)  # type: ignore[attr-defined]
        i = max(0, min(lineno - 1, len(self.lines) - 1))
        if self.ascii[i]:
            return self.char_at(lineno, col)
        if i not in self.chars:  # counted once, so a long line of many nodes is not quadratic
            leads = (b & 0xC0 != 0x80 for b in self.lines[i].encode())
            self.chars[i] = list(itertools.accumulate(leads, initial=0))
        return self.char_at(lineno, self.chars[i][min(col, len(self.chars[i]) - 1)])

    def between(self, left: ast.AST, right: ast.AST) -> int:
        """Position of the operator written between two operands (past spaces and parentheses)."""
        start = self.pos(left, end=True)
        found = re.search(r"[^\s()\\]", self.text[start:self.pos(right)])
        return start + found.start() if found else start

    def refuse(self, node: ast.AST, what: str, pos: int | None = None) -> ExpressionError:
        pos = self.pos(node) if pos is None else pos
        return ExpressionError(f"{what} at position {pos}", pos, self.text)

    def convert(self, node: ast.AST, depth: int) -> _Node:
        if depth > MAX_DEPTH:
            raise self.refuse(node, f"expression is nested more than {MAX_DEPTH} deep")
        pos, depth = self.pos(node), depth + 1
        if isinstance(node, ast.Constant):
            return self.constant(node, node.value)
        if isinstance(node, ast.Name):
            if node.id in ("true", "false", "null"):
                return _Literal(pos, {"true": True, "false": False, "null": None}[node.id])
            return _Field(pos, self.name(node, [node.id]))
        if isinstance(node, ast.Attribute):
            parts: list[str] = []
            base: ast.expr = node
            while isinstance(base, ast.Attribute):
                parts.append(base.attr)
                base = base.value
            if not isinstance(base, ast.Name):
                raise self.refuse(node, "only field names may be dotted (as in responses.ts)")
            return _Field(pos, self.name(node, [base.id, *reversed(parts)]))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            op, arg = _UNARY[type(node.op)], node.operand
            if op != "not" and isinstance(arg, ast.Constant) and type(arg.value) in (int, float):
                assert isinstance(arg.value, (int, float))
                return self.constant(node, -arg.value if op == "-" else arg.value)  # -1.5 is one literal
            return _Operator(pos, op, self.convert(arg, depth))
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
            return _Operator(self.between(node.left, node.right), _ARITH[type(node.op)],
                             self.convert(node.left, depth), self.convert(node.right, depth))
        if isinstance(node, ast.BoolOp):
            op = "and" if isinstance(node.op, ast.And) else "or"
            tree = self.convert(node.values[0], depth)
            for prev, value in itertools.pairwise(node.values):
                tree = _Operator(self.between(prev, value), op, tree, self.convert(value, depth))
            return tree
        if isinstance(node, ast.Compare):
            return self.compare(node, depth)
        if isinstance(node, ast.Call):
            return self.call(node, depth)
        if isinstance(node, (ast.UnaryOp, ast.BinOp)):
            at = self.between(node.left, node.right) if isinstance(node, ast.BinOp) else pos
            raise self.refuse(node, f'operator "{_OTHER_OPS.get(type(node.op), "?")}" is not allowed', at)
        what = _REFUSED.get(type(node), f"{type(node).__name__} nodes")
        raise self.refuse(node, f"{what} are not allowed")

    def constant(self, node: ast.AST, value: object) -> _Literal:
        if type(value) not in (int, float, str, bool, type(None)):
            raise self.refuse(node, f"{type(value).__name__} literals are not allowed")
        if isinstance(value, int) and not -(2**63) <= value < 2**63:  # bool is in range
            raise self.refuse(node, "integer literal is out of the int64 range")
        return _Literal(self.pos(node), value)

    def name(self, node: ast.AST, parts: list[str]) -> str:
        if any(part.startswith("__") for part in parts):
            raise self.refuse(node, f'name "{".".join(parts)}" is not allowed (it starts with "__")')
        return ".".join(parts)

    def compare(self, node: ast.Compare, depth: int) -> _Node:
        """a < b < c means (a < b) and (b < c), as in Python, with each operand parsed once."""
        operands = [node.left, *node.comparators]
        places = [self.between(a, b) for a, b in itertools.pairwise(operands)]
        if isinstance(node.ops[0], (ast.In, ast.NotIn)) and len(node.ops) == 1:
            return self.member(node, places[0], depth)
        for op, pos in zip(node.ops, places):
            if isinstance(op, (ast.In, ast.NotIn)):
                raise self.refuse(node, f'operator "{_OTHER_OPS[type(op)]}" cannot be chained with '
                                        "another comparison (use and)", pos)
            if type(op) not in _COMPARE:
                hint = " (use is_null(x))" if isinstance(op, (ast.Is, ast.IsNot)) else ""
                raise self.refuse(node, f'operator "{_OTHER_OPS.get(type(op), "?")}" is not allowed{hint}', pos)
        nodes = [self.convert(n, depth) for n in operands]
        tree: _Node = _Operator(places[0], _COMPARE[type(node.ops[0])], nodes[0], nodes[1])
        for i in range(1, len(node.ops)):
            pair = _Operator(places[i], _COMPARE[type(node.ops[i])], nodes[i], nodes[i + 1])
            tree = _Operator(places[i], "and", tree, pair)
        return tree

    def member(self, node: ast.Compare, pos: int, depth: int) -> _In:
        """`x in (1, 2)`: the list must be written out, of literals only, so it is typed at submit."""
        negate, listed = isinstance(node.ops[0], ast.NotIn), node.comparators[0]
        op = "not in" if negate else "in"
        if not isinstance(listed, (ast.Tuple, ast.List)) or not listed.elts:
            raise self.refuse(listed, f'operator "{op}" needs a list of literals, as in x {op} (1, 2)')
        if len(listed.elts) > MAX_IN_ITEMS:
            raise self.refuse(listed, f'operator "{op}" takes at most {MAX_IN_ITEMS:,} literals, '
                                      f"got {len(listed.elts):,}")
        items = [self.convert(e, depth + 1) for e in listed.elts]
        for elt, item in zip(listed.elts, items):
            if not isinstance(item, _Literal):
                raise self.refuse(elt, f'operator "{op}" takes only literals in its list')
        return _In(pos, negate, self.convert(node.left, depth), items)  # type: ignore[arg-type]

    def call(self, node: ast.Call, depth: int) -> _Node:
        pos = self.pos(node)
        if not isinstance(node.func, ast.Name):
            raise self.refuse(node, f"only the functions {', '.join(FUNCTIONS)} may be called")
        name = node.func.id
        if name not in FUNCTIONS:
            raise ExpressionError(f'unknown function "{name}" at position {pos} '
                                  f'(functions: {", ".join(FUNCTIONS)})', pos, self.text)
        if node.keywords:
            raise self.refuse(node.keywords[0], "keyword arguments are not allowed")
        fewest, most = FUNCTIONS[name]
        if len(node.args) < fewest or (most is not None and len(node.args) > most):
            want = f"{fewest}" if fewest == most else f"{fewest} to {most}" if most else f"at least {fewest}"
            raise self.refuse(node, f"{name}() takes {want} argument(s), got {len(node.args)}")
        args = [self.convert(a, depth) for a in node.args]
        consts: tuple[Any, ...] = ()
        if name == "round":
            consts = (self.literal(node, args, 1, int, lambda v: abs(v) <= 300, "an integer literal in -300..300")
                      if len(args) > 1 else 0,)
        elif name == "substr":
            consts = tuple(self.literal(node, args, i, int, lambda v: v >= 0, "a non-negative integer literal")
                           for i in (1, 2))
        elif name == "cast":
            consts = (self.literal(node, args, 1, str, lambda v: v in CAST_TYPES,
                                   f"one of the type names {', '.join(map(repr, CAST_TYPES))}"),)
        # round's ndigits, substr's bounds and cast's type are options of a kernel, not columns
        return _Call(pos, name, args[:1] if consts else args, consts)

    def literal(self, node: ast.Call, args: list[_Node], i: int, kind: type, ok: Callable[[Any], bool],
                want: str) -> Any:
        arg = args[i]
        if isinstance(arg, _Literal) and type(arg.value) is kind and ok(arg.value):
            return arg.value
        raise self.refuse(node.args[i], f"{node.func.id}() argument {i + 1} must be {want}")  # type: ignore[attr-defined]
