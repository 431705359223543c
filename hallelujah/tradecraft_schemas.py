"""What each kind of analytic takes and what it produces: Arrow types, keys, output schemas.

`hallelujah.tradecraft` walks the document and the graph; this module knows the kinds. Each
`derive_<kind>` checks one analytic's keys against the schemas of what it reads and returns its
output schema (None when a fault leaves it unknown), so a type fault is found at submit, never
while events flow.

Checks report every fault of a document, not only the first, as a compiler does: each check whose
fault need not stop the others runs in a `go_on()` block, which (inside `collecting()`, as
`parse_document` runs them) keeps the fault and lets the walk carry on. A check that depends on one
that failed is not run, so no fault is reported that only follows from another: an analytic that
reads one whose output is unknown is checked with that input `known=False`, and each check that
needs its fields raises `Untold`, which skips the check without a fault.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import json
import re
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Iterator

import pyarrow as pa

from hallelujah import expressions, formats
from hallelujah import udf as udf_files
from hallelujah.durations import parse_duration
from hallelujah.errors import ExpressionError, HallelujahError, NotFound, TradecraftError

TYPES: dict[str, pa.DataType] = {
    "int32": pa.int32(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_(),
    "string": pa.string(), "timestamp[s]": pa.timestamp("s"), "timestamp[ms]": pa.timestamp("ms"),
    "timestamp[us]": pa.timestamp("us"),
}
_TYPE_NAMES = {t: name for name, t in TYPES.items()}
NAME = re.compile(r"[a-z][a-z0-9_-]*")          # tradecrafts, analytics, routes
FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")   # declared, derived and measure fields: what expressions can name
NOT_A_FIELD = "is not a field name (letters, digits and _, not first a digit)"
WINDOW_TYPE = pa.timestamp("us")
MEASURES = ("count", "count_if", "count_distinct", "sum", "min", "max", "mean")
WINDOW_FIELDS = ("window_start", "window_end")
RANK = "rank"                                   # a top row's place in its window and group
TOP_KEYS = ("n", "by", "order", "with_ties")
TOP_MAX = 10_000                                # rows kept per window and group: state is bounded by it


_FAULTS: ContextVar[list[TradecraftError] | None] = ContextVar("tradecraft_faults", default=None)


class Untold(Exception):
    """A check needs the fields of an input whose own faults left them unknown: it is skipped."""


class Step:
    """What became of one `go_on` block: `ok` is False once its fault was kept."""

    def __init__(self) -> None:
        self.ok = True


@contextlib.contextmanager
def collecting() -> Iterator[list[TradecraftError]]:
    """Within it, every `go_on` block keeps its fault in the list yielded, and the walk goes on."""
    found: list[TradecraftError] = []
    token = _FAULTS.set(found)
    try:
        yield found
    finally:
        _FAULTS.reset(token)


@contextlib.contextmanager
def go_on() -> Iterator[Step]:
    """One check whose fault need not stop the others: within `collecting`, its TradecraftError
    is kept and the code after the block runs (`step.ok` False); elsewhere it is raised."""
    step = Step()
    found = _FAULTS.get()
    try:
        yield step
    except TradecraftError as e:
        if found is None:
            raise
        found.append(e)
        step.ok = False
    except Untold:
        if found is None:
            raise
        step.ok = False


def fault(path: str, message: str) -> None:
    """A fault that need not stop the walk: kept within `collecting`, raised elsewhere."""
    with go_on():
        raise TradecraftError(path, message)


def faults_so_far() -> int:
    """How many faults `collecting` has kept yet: a caller compares counts to learn whether the
    checks it ran in between found any."""
    found = _FAULTS.get()
    return 0 if found is None else len(found)


@dataclass(frozen=True)
class Input:
    """One stream an analytic reads: the reference as written and the schema it carries."""

    ref: str
    schema: pa.Schema
    label: str = ""  # how messages name it, when not 'the output of "ref"'
    known: bool = True  # False: its producer was refused, `schema` is empty and its fields untold

    @property
    def described(self) -> str:
        return self.label or f'the output of "{self.ref}"'


def show(value: object, limit: int = 60) -> str:
    """Render a JSON value for a message, short enough for one line (`limit` is larger for a
    path: its end is what tells it apart)."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def suggest(word: str, choices: Any) -> str:
    """' (did you mean "x"?)' when a close choice exists: most faults are typos."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.7)
    return f' (did you mean "{close[0]}"?)' if close else ""


def parse_type(name: str, path: str) -> pa.DataType:
    """The Arrow type of a document type name; TradecraftError naming the value otherwise."""
    if isinstance(name, str) and name in TYPES:
        return TYPES[name]
    hint = suggest(name, TYPES) if isinstance(name, str) else ""
    raise TradecraftError(path, f"{show(name)} is not a type{hint} (types: {', '.join(TYPES)})")


def type_name(t: pa.DataType) -> str:
    """The document name of an Arrow type (float64, not Arrow's "double"); Arrow's own name otherwise."""
    return _TYPE_NAMES.get(t, str(t))


def schema_from_json(obj: dict, path: str) -> pa.Schema:
    """Read a declared schema {field: type name}; fields are nullable, as events may lack a value."""
    if not isinstance(obj, dict) or not obj:
        raise TradecraftError(path, f'{show(obj)} is not a schema (expected an object such as {{"ts": "int64"}})')
    fields = []
    for field, name in obj.items():
        with go_on():
            if not FIELD.fullmatch(field):
                raise TradecraftError(f"{path}.{field}", f'"{field}" {NOT_A_FIELD}')
            fields.append(pa.field(field, parse_type(name, f"{path}.{field}")))
    return pa.schema(fields)


def schema_to_json(s: pa.Schema) -> dict:
    """The document form of a schema, for `describe` and for submitting again."""
    return {f.name: type_name(f.type) for f in s}


def rejected_schema(s: pa.Schema) -> pa.Schema:
    """The schema of `x.rejected`: the rows x could not process, plus why ("rejected.reason" if "reason" is taken)."""
    name = "reason" if "reason" not in s.names else "rejected.reason"
    return s.append(pa.field(name, pa.string()))


# ---- small checks shared by the kinds ---------------------------------------------------------

def _has(s: pa.Schema) -> str:
    return f"(it has: {', '.join(s.names)})" if s.names else "(it has no fields)"


def field_of(inp: Input, name: object, path: str, prefix: str = "") -> pa.Field:
    """The field `name` of what `inp` carries; TradecraftError in the house form otherwise."""
    if not isinstance(name, str) or not name:
        raise TradecraftError(path, f"{prefix}{show(name)} is not a field name")
    if not inp.known:
        raise Untold(name)
    if name not in inp.schema.names:
        hint = suggest(name, inp.schema.names)
        raise TradecraftError(path, f'{prefix}field "{name}" is not in {inp.described}{hint} {_has(inp.schema)}')
    return inp.schema.field(name)


def time_field(inp: Input, name: object, path: str, ints: bool = False) -> pa.Field:
    """An event-time field: a timestamp (or an integer where `ints`)."""
    f = field_of(inp, name, path)
    if not (pa.types.is_timestamp(f.type) or (ints and pa.types.is_integer(f.type))):
        allowed = "a timestamp or an integer" if ints else "a timestamp"
        raise TradecraftError(path, f'field "{name}" of "{inp.ref}" is {type_name(f.type)}; '
                                    f"event time must be {allowed}")
    return f


def field_list(value: object, path: str, inp: Input | None = None, unknown: Collection[str] = ()) -> list[str]:
    """A list of distinct field names, each in `inp` when given (or among the `unknown`: fields
    whose type a fault left untold)."""
    if not isinstance(value, list):
        raise TradecraftError(path, f"{show(value)} is not a list of field names")
    for i, name in enumerate(value):
        with go_on():
            if inp is not None and inp.known and not (isinstance(name, str) and name in unknown):
                field_of(inp, name, f"{path}[{i}]")
            elif not isinstance(name, str) or not name:
                raise TradecraftError(f"{path}[{i}]", f"{show(name)} is not a field name")
            if name in value[:i]:
                raise TradecraftError(f"{path}[{i}]", f'field "{name}" is listed twice')
    return value


def check_bool(value: object, path: str) -> bool:
    """`value` if it is a JSON boolean: 1 or "yes" are refused, so a flag means one thing."""
    if not isinstance(value, bool):
        raise TradecraftError(path, f"{show(value)} is not true or false")
    return value


def positive_duration(value: object, path: str) -> float:
    """Seconds of a duration that must pass (a window, a period); zero would never end or never fire."""
    seconds = parse_duration(value, path)  # type: ignore[arg-type]
    if seconds <= 0:
        raise TradecraftError(path, f"{show(value)} must be longer than zero")
    return seconds


def expression_type(text: object, path: str, schema: pa.Schema, unknown: Collection[str] = (),
                    known: bool = True) -> pa.DataType | None:
    """Parse and type an expression against `schema`; its fault becomes a TradecraftError at `path`.
    None when it reads a field of `unknown` (whose type a fault left untold), or none of the schema
    is `known`: only parsed, then."""
    if not isinstance(text, str) or not text.strip():
        raise TradecraftError(path, f"{show(text)} is not an expression (expected a string)")
    try:
        expression = expressions.parse(text)
        if not known or expression.fields() & set(unknown):
            return None
        return expression.type_in(schema)
    except ExpressionError as e:
        where = f" at position {e.position}" if "position" not in e.message else ""
        raise TradecraftError(path, f"{e.message}{where} in {show(text)}") from None


def known_keys(obj: dict, path: str, allowed: tuple[str, ...], what: str) -> None:
    """Every key of `obj` that is not `allowed` is a fault of its own (a typo is suggested a fix)."""
    for key in obj:
        with go_on():
            if key not in allowed:
                at = f"{path}.{key}" if path else str(key)
                hint = suggest(str(key), allowed)
                raise TradecraftError(at, f'unknown key "{key}" for {what}{hint} (it takes: {", ".join(allowed)})')


def _object(value: object, path: str, what: str) -> dict:
    """`value` if it is a JSON object; otherwise a fault saying what was expected there."""
    if not isinstance(value, dict):
        raise TradecraftError(path, f"{show(value)} is not {what}")
    return value


def _a(kind: str) -> str:
    """The kind with its article, for messages ("an ingest", "a join with a stream")."""
    return ("an " if kind[0] in "aeiou" else "a ") + kind


def _declared_or_read(spec: dict, path: str) -> pa.Schema | None:
    """The declared schema, else the source file's: a file must exist to be typed without one.
    None when a declared field is refused (the others are still checked)."""
    if "schema" in spec:
        before = faults_so_far()
        schema = schema_from_json(spec["schema"], f"{path}.schema")
        return schema if faults_so_far() == before else None
    source = dict(spec["source"])
    if "format" not in source:  # checked readable from the extension when the document was walked
        source["format"] = formats.format_of(source["path"])
    try:
        schema = formats.source_schema(source)
    except NotFound as e:
        if Path(source["path"]).is_file():  # the file is there, its table is not
            raise TradecraftError(f"{path}.source.table", f"{show(source.get('table'))}: {e}") from None
        raise TradecraftError(f"{path}.source.path", f'file "{source["path"]}" does not exist '
                                                     '(declare a "schema" to submit before it does)') from None
    except (HallelujahError, OSError, ValueError, pa.ArrowException) as e:
        raise TradecraftError(f"{path}.source", f'cannot read the schema of "{source["path"]}": {e}') from None
    twice = [n for i, n in enumerate(schema.names) if n in schema.names[:i]]
    if twice:  # a field must be nameable: by expressions, keys, and the columns of an output
        raise TradecraftError(f"{path}.source", f'"{source["path"]}" has the field "{twice[0]}" twice')
    return schema


# ---- the kinds --------------------------------------------------------------------------------

def derive_stream(spec: dict, path: str, inputs: dict[str, Input]) -> pa.Schema | None:
    """Its declared schema, or its file's; `time` (timestamp or integer) orders events, `lateness` bounds them."""
    with go_on():
        if "schema" not in spec and "source" not in spec:
            raise TradecraftError(f"{path}.schema", 'a stream needs a "schema", unless a "source" has one')
    schema = _declared_or_read(spec, path) if "schema" in spec or "source" in spec else None
    if "time" in spec and schema is not None:
        own = Input(spec["name"], schema, f'the schema of "{spec["name"]}"')
        with go_on():
            time_field(own, spec["time"], f"{path}.time")
    if "lateness" in spec:
        if "time" not in spec:
            fault(f"{path}.lateness", f'{show(spec["lateness"])}: lateness needs a "time" field')
        with go_on():
            parse_duration(spec["lateness"], f"{path}.lateness")
    return schema


def derive_ingest(spec: dict, path: str, inputs: dict[str, Input]) -> pa.Schema | None:
    """Its declared schema, or its file's; `every` and `offset` make the quantized reload timer."""
    every: float | None = None
    with go_on():
        every = positive_duration(spec["every"], f"{path}.every") if "every" in spec else None
    if "offset" in spec:
        with go_on():
            offset = parse_duration(spec["offset"], f"{path}.offset")
            if "every" not in spec:
                raise TradecraftError(f"{path}.offset", f'{show(spec["offset"])}: an offset shifts "every", '
                                                        "which is missing")
            if every is not None and offset >= every:
                raise TradecraftError(f"{path}.offset", f'{show(spec["offset"])} must be shorter than '
                                                        f'"every" ({spec["every"]})')
    if "run_on_start" in spec:
        with go_on():
            check_bool(spec["run_on_start"], f"{path}.run_on_start")
    return _declared_or_read(spec, path)


def derive_transform(spec: dict, path: str, inputs: dict[str, Input]) -> pa.Schema | None:
    """derive (in order, each seeing the ones before) → where → select → udf.

    A derive that is refused leaves its field's type unknown: what reads it is not typed
    (its fault would only follow from the first), the rest is."""
    inp = inputs["input"]
    schema = inp.schema
    unknown: set[str] = set()
    derives: dict = {}
    with go_on():
        derives = _object(spec.get("derive", {}), f"{path}.derive", "an object {field: expression}")
    for field, text in derives.items():
        t: pa.DataType | None = None
        with go_on():
            if not FIELD.fullmatch(field):
                raise TradecraftError(f"{path}.derive.{field}", f'"{field}" {NOT_A_FIELD}')
            t = expression_type(text, f"{path}.derive.{field}", schema, unknown, inp.known)
        if t is None:
            unknown.add(field)
            continue
        new = pa.field(field, t)
        at = schema.get_field_index(field)
        schema = schema.set(at, new) if at >= 0 else schema.append(new)   # a derive may replace a field, in place
    if "where" in spec:
        with go_on():
            t = expression_type(spec["where"], f"{path}.where", schema, unknown, inp.known)
            if t is not None and not pa.types.is_boolean(t):
                raise TradecraftError(f"{path}.where", f"{show(spec['where'])} is {type_name(t)}; "
                                                       "a filter must be true or false")
    if "select" in spec:
        before = faults_so_far()
        with go_on():
            label = f'the output of "{inp.ref}" and the derives' if "derive" in spec else ""
            names = field_list(spec["select"], f"{path}.select", Input(inp.ref, schema, label, inp.known), unknown)
            if not names:
                raise TradecraftError(f"{path}.select", "[] selects no field")
        if faults_so_far() > before:
            return None
        unknown.intersection_update(names)
        schema = pa.schema([schema.field(n) for n in names if n not in unknown and n in schema.names])
    if unknown or not inp.known:
        return None
    if "udf" in spec:
        schema = _udf_schema(spec["udf"], spec["udf_path"], f"{path}.udf", schema)
    return schema


def _udf_schema(udf: str, directory: str, path: str, schema: pa.Schema) -> pa.Schema:
    """Load the UDF from its directory and learn its output schema by calling it on a zero-row batch.

    The reference's form and its module's place were checked when the document was walked
    (`tradecraft._udf_reference`); here its module runs, so anything it raises is a fault of the
    document, never of the process validating it.
    """
    try:
        fn = udf_files.load(udf, directory)
    except udf_files.UdfError as e:
        raise TradecraftError(path, f"{show(udf)}: {e}") from None
    try:
        return fn(pa.RecordBatch.from_pylist([], schema=schema)).schema
    except udf_files.UdfError as e:
        raise TradecraftError(path, f"{show(udf)} failed on an empty batch: {e}") from None


def _windows(spec: dict, path: str) -> None:
    """Exactly one of a window (which a hop divides) and a session gap (with measures: a session
    folds its rows as it goes, so `top` would need them all kept)."""
    if ("window" in spec) == ("session" in spec):
        fault(f"{path}.session" if "session" in spec else f"{path}.window",
              'an aggregate takes exactly one of "window" (tumbling or hopping) and "session"')
        return
    if "session" in spec:
        with go_on():
            positive_duration(spec["session"], f"{path}.session")
        if "hop" in spec:
            fault(f"{path}.hop", f'{show(spec["hop"])}: session windows do not hop')
        if "top" in spec:
            fault(f"{path}.top", 'session windows take "measures", not "top" (a session\'s rows are not kept)')
        return
    window: float | None = None
    with go_on():
        window = positive_duration(spec["window"], f"{path}.window")
    if "hop" in spec:
        with go_on():
            hop = positive_duration(spec["hop"], f"{path}.hop")
            if window is not None and (hop > window or round(window * 1000) % round(hop * 1000)):
                raise TradecraftError(f"{path}.hop", f'{show(spec["hop"])} must divide the window '
                                                     f'({show(spec["window"])}): a row is in window/hop windows')


def derive_aggregate(spec: dict, path: str, inputs: dict[str, Input]) -> pa.Schema | None:
    """window_start, window_end (timestamp[us]), the group fields, then the measures in document
    order — or, with `top`, the input's other fields and their rank (see `_top_fields`)."""
    inp = inputs["input"]
    if "time" in spec:
        with go_on():
            time_field(inp, spec["time"], f"{path}.time")
    _windows(spec, path)
    before = faults_so_far()        # from here on, a fault leaves the output unknown
    group: list = []
    with go_on():
        group = field_list(spec.get("group", []), f"{path}.group", inp)
    out = [pa.field("window_start", WINDOW_TYPE), pa.field("window_end", WINDOW_TYPE)]
    reserved = (*WINDOW_FIELDS, RANK) if "top" in spec else WINDOW_FIELDS
    for i, name in enumerate(group):
        if name in reserved:
            fault(f"{path}.group[{i}]", f'"{name}" clashes with the {"window" if name != RANK else "rank"} '
                                        "field of the same name")
        elif isinstance(name, str) and name in inp.schema.names:
            out.append(inp.schema.field(name))
    if "top" in spec:
        if spec.get("measures"):
            fault(f"{path}.measures", 'an aggregate takes "measures" (one row per window and group) or "top" '
                                      "(rows of its input), not both")
        top = _top_fields(spec, path, inp, group)
        return pa.schema(out + top) if top is not None and faults_so_far() == before else None
    if "measures" not in spec:
        raise TradecraftError(f"{path}.measures", 'an aggregate needs "measures" (or "top")')
    taken = {f.name for f in out}
    for name, text in _object(spec["measures"], f"{path}.measures", "an object {name: measure}").items():
        mpath = f"{path}.measures.{name}"
        with go_on():
            if not FIELD.fullmatch(name):
                raise TradecraftError(mpath, f'"{name}" {NOT_A_FIELD}')
            if name in taken:
                raise TradecraftError(mpath, f'"{name}" is already a field of the output ({", ".join(taken)})')
            out.append(pa.field(name, _measure_type(text, mpath, inp)))
            taken.add(name)
    return pa.schema(out) if faults_so_far() == before else None


def _top_fields(spec: dict, path: str, inp: Input, group: list) -> list[pa.Field] | None:
    """The fields after the window and group fields of an aggregate's `top` rows: the input's
    other fields, in its order (one the output names already, window_start, window_end or rank,
    comes out as "INPUT.field"), then `rank`, int64 from 1.

    `top` {"n": rows, "by": field, "order": "desc" (the largest first, the default) or "asc",
    "with_ties": false}: per window and group, the n rows first in `by`'s order. Ties are ordered
    by the time field, then by the other fields in the input's order, ascending (nulls last), so
    which rows are kept is defined; rank counts rows (SQL's ROW_NUMBER). With `with_ties`, every
    row equal to the n-th in `by` is kept too, and rank is SQL's RANK (ties share it). Rows whose
    `by` is null or NaN are not ranked.
    """
    at = f"{path}.top"
    top = _object(spec["top"], at, 'an object {"n": rows, "by": field, "order": "desc" or "asc", "with_ties": bool}')
    known_keys(top, at, TOP_KEYS, "top")
    for key, what in (("n", "how many rows to keep per window and group"), ("by", "the field to rank rows by")):
        if key not in top:
            fault(f"{at}.{key}", f'top needs "{key}", {what}')
    n = top.get("n")
    if "n" in top and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= TOP_MAX):
        fault(f"{at}.n", f"{show(n)} is not a number of rows (a whole number from 1 to {TOP_MAX:,})")
    if "by" in top:
        with go_on():
            t = field_of(inp, top["by"], f"{at}.by").type
            if not ordered(t):
                raise TradecraftError(f"{at}.by", f'field "{top["by"]}" is {type_name(t)}, which has no order')
    if top.get("order", "desc") not in ("desc", "asc"):
        fault(f"{at}.order", f'{show(top["order"])} is not an order ("desc": the largest first, or "asc")')
    if "with_ties" in top:
        with go_on():
            check_bool(top["with_ties"], f"{at}.with_ties")
    base = inp.ref.partition(".")[0]
    grouped = {g for g in group if isinstance(g, str)}
    out = []
    for f in inp.schema:
        if f.name in grouped:
            continue
        name = top_name(f.name, base)
        if name != f.name and name in inp.schema.names:
            fault(f"{path}.input", f'"{f.name}" of "{inp.ref}" would come out as "{name}", which it has too; '
                                   "rename one of them before")
            return None
        out.append(f.with_name(name))
    return out + [pa.field(RANK, pa.int64())]


def top_name(name: str, base: str) -> str:
    """What a top row calls its input's field `name`: prefixed with the input analytic's name
    (`base`) when the output names it already (window_start, window_end, rank)."""
    return f"{base}.{name}" if name in (*WINDOW_FIELDS, RANK) else name


def ordered(t: pa.DataType) -> bool:
    """Whether values of `t` can be put in order (min, max, a rank)."""
    return any(test(t) for test in (pa.types.is_integer, pa.types.is_floating, pa.types.is_timestamp,
                                    pa.types.is_string, pa.types.is_boolean))


def _measure_type(text: object, path: str, inp: Input) -> pa.DataType:
    """count* are int64; sum keeps ints int64 and floats float64; mean is float64; min/max keep the field's type."""
    m = re.fullmatch(r"\s*([a-z_]+)\s*\((.*)\)\s*", text, re.S) if isinstance(text, str) else None
    if m is None or m.group(1) not in MEASURES:
        hint = suggest(m.group(1), MEASURES) if m else ""
        raise TradecraftError(path, f"{show(text)} is not a measure{hint} (measures: count(), count_if(expr), "
                                    "count_distinct(f), sum(f), min(f), max(f), mean(f))")
    fn, arg = m.group(1), m.group(2).strip()
    if fn == "count":
        if arg:
            raise TradecraftError(path, f"{show(text)}: count() takes nothing "
                                        "(count_if(expr) counts where expr is true)")
        return pa.int64()
    if fn == "count_if":
        t = expression_type(arg, path, inp.schema, known=inp.known)
        if t is not None and not pa.types.is_boolean(t):
            raise TradecraftError(path, f"{show(text)}: {show(arg)} is {type_name(t)}, count_if needs true or false")
        return pa.int64()
    t = field_of(inp, arg, path, f"{show(text)}: ").type
    if fn == "count_distinct":
        return pa.int64()
    numeric = pa.types.is_integer(t) or pa.types.is_floating(t)
    if fn in ("sum", "mean") and not numeric:
        raise TradecraftError(path, f'{show(text)}: field "{arg}" is {type_name(t)}; {fn} needs a number')
    if fn == "sum":
        return pa.int64() if pa.types.is_integer(t) else pa.float64()
    if fn == "mean":
        return pa.float64()
    if not ordered(t):
        raise TradecraftError(path, f'{show(text)}: field "{arg}" is {type_name(t)}, which has no order')
    return t


def _key_class(t: pa.DataType) -> str | None:
    """Join keys must hash alike on both sides: same class, and timestamps of the same unit."""
    for test, name in ((pa.types.is_integer, "integer"), (pa.types.is_floating, "float"),
                       (pa.types.is_string, "string"), (pa.types.is_large_string, "string"),
                       (pa.types.is_boolean, "bool")):
        if test(t):
            return name
    return str(t) if pa.types.is_timestamp(t) else None


def _join_on(spec: dict, path: str, left: Input, right: Input) -> None:
    if "on" in spec:
        with go_on():
            on = _object(spec["on"], f"{path}.on", "an object {stream field: other field}")
            if not on:
                raise TradecraftError(f"{path}.on", "{} joins on nothing; name at least one pair of fields")
            for mine, theirs in on.items():
                with go_on():
                    a = field_of(left, mine, f"{path}.on")
                    b = field_of(right, theirs, f"{path}.on.{mine}")
                    ka, kb = _key_class(a.type), _key_class(b.type)
                    if ka is None or ka != kb:
                        raise TradecraftError(f"{path}.on.{mine}",
                                              f'field "{mine}" of "{left.ref}" is {type_name(a.type)} but field '
                                              f'"{theirs}" of "{right.ref}" is {type_name(b.type)}; join keys must '
                                              "be alike (integers, floats, strings, bools, timestamps of one unit)")
    if "how" in spec and spec["how"] not in ("left", "inner"):
        fault(f"{path}.how", f'{show(spec["how"])} is not a join (expected "left" or "inner")')


def _joined(left: Input, right: Input, names: list[str], prefix: str, nullable: bool) -> pa.Schema:
    """The stream's fields, then `names` of the other side; a left join may find no match, hence nullable."""
    out = list(left.schema)
    for name in names:
        f = right.schema.field(name)
        f = f.with_name(f"{prefix}.{name}" if name in left.schema.names else name)
        out.append(f.with_nullable(True) if nullable else f)
    return pa.schema(out)


def derive_join(spec: dict, path: str, inputs: dict[str, Input]) -> pa.Schema | None:
    """stream fields, then the other side's; a clashing name gets the other analytic's name as prefix."""
    left = inputs["stream"]
    right = inputs["dataset" if "dataset" in spec else "with"]
    _join_on(spec, path, left, right)
    names: list = right.schema.names
    if "dataset" in spec:
        before = faults_so_far()
        with go_on():
            names = field_list(spec["fields"], f"{path}.fields", right) if "fields" in spec else []
        if "fields" not in spec or faults_so_far() > before:
            return None
    else:
        if "time" in spec:
            _join_times(spec["time"], path, left, right)
        if "window" in spec:
            with go_on():
                positive_duration(spec["window"], f"{path}.window")
    if not (left.known and right.known):
        return None
    return _joined(left, right, names, right.ref.split(".")[0], spec.get("how") == "left")


def _join_times(value: object, path: str, left: Input, right: Input) -> None:
    """A stream join's time fields: {"stream": field of the stream, "with": field of the other}."""
    with go_on():
        times = _object(value, f"{path}.time", 'the time fields {"stream": field, "with": field}')
        for key in times:
            if key not in ("stream", "with"):
                fault(f"{path}.time.{key}", f'unknown key "{key}" (it takes: stream, with)')
        for key, side in (("stream", left), ("with", right)):
            with go_on():
                if key not in times:
                    raise TradecraftError(f"{path}.time", f'{show(times)} lacks "{key}", the time field of '
                                                          f'"{side.ref}"')
                time_field(side, times[key], f"{path}.time.{key}")


def derive_director(spec: dict, path: str, inputs: dict[str, Input]) -> pa.Schema:
    """Its input's schema on every route; each route value (a JSON key, so text) must read as the key's type."""
    inp = inputs["input"]
    if "key" not in spec:
        return inp.schema
    t = field_of(inp, spec["key"], f"{path}.key").type
    if not (pa.types.is_integer(t) or pa.types.is_string(t) or pa.types.is_boolean(t)):
        raise TradecraftError(f"{path}.key", f'field "{spec["key"]}" of "{inp.ref}" is {type_name(t)}; '
                                             "a director routes by an integer, string or bool")
    for value in spec["routes"] if isinstance(spec.get("routes"), dict) else ():
        ok = (pa.types.is_string(t)
              or (pa.types.is_boolean(t) and value in ("true", "false"))
              or (pa.types.is_integer(t) and re.fullmatch(r"-?\d+", value) is not None
                  and abs(int(value)) < 2 ** (t.bit_width - 1)))
        if not ok:
            fault(f"{path}.routes.{value}", f'{show(value)} is not a value of key "{spec["key"]}", '
                                            f"which is {type_name(t)}")
    return inp.schema


def derive_manager(spec: dict, path: str, inputs: dict[str, Input]) -> pa.Schema:
    """Its input's schema on every route; routes ascend in `until`, the last takes what is left."""
    inp = inputs["input"]
    if "time" in spec:
        with go_on():
            time_field(inp, spec["time"], f"{path}.time")
    routes = spec.get("routes")
    if not isinstance(routes, list) or not routes or not all(isinstance(r, dict) for r in routes):
        return inp.schema       # refused when the routes were named
    last: dt.datetime | None = None
    for i, route in enumerate(routes[:-1]):
        with go_on():
            if "until" not in route:
                raise TradecraftError(f"{path}.routes[{i}]", f'{show(route)} needs "until": only the last route '
                                                             "has none")
            at = f"{path}.routes[{i}].until"
            until = _timestamp(route["until"], at)
            if last is not None and until <= last:
                raise TradecraftError(at, f"{show(route['until'])} is not after the route before it (ascending time)")
            last = until
    if "until" in routes[-1]:
        fault(f"{path}.routes[{len(routes) - 1}].until",
              f"{show(routes[-1]['until'])}: the last route takes what is left, until nothing")
    return inp.schema


def _timestamp(value: object, path: str) -> dt.datetime:
    """An ISO-8601 instant; one without a zone is UTC, as event times are."""
    try:
        t = dt.datetime.fromisoformat(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TradecraftError(path, f'{show(value)} is not an ISO-8601 timestamp ("2024-05-01T00:00:00Z")') from None
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


DERIVE: dict[str, Callable[[dict, str, dict[str, Input]], pa.Schema | None]] = {
    "stream": derive_stream, "ingest": derive_ingest, "transform": derive_transform,
    "aggregate": derive_aggregate, "join": derive_join, "director": derive_director, "manager": derive_manager,
}
