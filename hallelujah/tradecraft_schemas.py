"""What each kind of analytic takes and what it produces: Arrow types, keys, output schemas.

`hallelujah.tradecraft` walks the document and the graph; this module knows the kinds. Each
`derive_<kind>` checks one analytic's keys against the schemas of what it reads and returns its
output schema, so a type fault is found at submit, never while events flow.
"""
from __future__ import annotations

import datetime as dt
import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

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


@dataclass(frozen=True)
class Input:
    """One stream an analytic reads: the reference as written and the schema it carries."""

    ref: str
    schema: pa.Schema
    label: str = ""  # how messages name it, when not 'the output of "ref"'

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


def field_list(value: object, path: str, inp: Input | None = None) -> list[str]:
    """A list of distinct field names, each in `inp` when given."""
    if not isinstance(value, list):
        raise TradecraftError(path, f"{show(value)} is not a list of field names")
    for i, name in enumerate(value):
        if inp is not None:
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


def expression_type(text: object, path: str, schema: pa.Schema) -> pa.DataType:
    """Parse and type an expression against `schema`; its fault becomes a TradecraftError at `path`."""
    if not isinstance(text, str) or not text.strip():
        raise TradecraftError(path, f"{show(text)} is not an expression (expected a string)")
    try:
        return expressions.parse(text).type_in(schema)
    except ExpressionError as e:
        where = f" at position {e.position}" if "position" not in e.message else ""
        raise TradecraftError(path, f"{e.message}{where} in {show(text)}") from None


def _object(value: object, path: str, what: str) -> dict:
    """`value` if it is a JSON object; otherwise a fault saying what was expected there."""
    if not isinstance(value, dict):
        raise TradecraftError(path, f"{show(value)} is not {what}")
    return value


def _a(kind: str) -> str:
    """The kind with its article, for messages ("an ingest", "a join with a stream")."""
    return ("an " if kind[0] in "aeiou" else "a ") + kind


def _declared_or_read(spec: dict, path: str) -> pa.Schema:
    """The declared schema, else the source file's: a file must exist to be typed without one."""
    if "schema" in spec:
        return schema_from_json(spec["schema"], f"{path}.schema")
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

def derive_stream(spec: dict, path: str, inputs: dict[str, Input]) -> pa.Schema:
    """Its declared schema, or its file's; `time` (timestamp or integer) orders events, `lateness` bounds them."""
    if "schema" not in spec and "source" not in spec:
        raise TradecraftError(f"{path}.schema", 'a stream needs a "schema", unless a "source" has one')
    schema = _declared_or_read(spec, path)
    if "time" in spec:
        own = Input(spec["name"], schema, f'the schema of "{spec["name"]}"')
        time_field(own, spec["time"], f"{path}.time", ints=True)
    if "lateness" in spec:
        if "time" not in spec:
            raise TradecraftError(f"{path}.lateness", f'{show(spec["lateness"])}: lateness needs a "time" field')
        parse_duration(spec["lateness"], f"{path}.lateness")
    return schema


def derive_ingest(spec: dict, path: str, inputs: dict[str, Input]) -> pa.Schema:
    """Its declared schema, or its file's; `every` and `offset` make the quantized reload timer."""
    every = positive_duration(spec["every"], f"{path}.every") if "every" in spec else None
    if "offset" in spec:
        offset = parse_duration(spec["offset"], f"{path}.offset")
        if every is None:
            raise TradecraftError(f"{path}.offset", f'{show(spec["offset"])}: an offset shifts "every", '
                                                    "which is missing")
        if offset >= every:
            raise TradecraftError(f"{path}.offset", f'{show(spec["offset"])} must be shorter than '
                                                    f'"every" ({spec["every"]})')
    if "run_on_start" in spec:
        check_bool(spec["run_on_start"], f"{path}.run_on_start")
    return _declared_or_read(spec, path)


def derive_transform(spec: dict, path: str, inputs: dict[str, Input]) -> pa.Schema:
    """derive (in order, each seeing the ones before) → where → select → udf."""
    inp = inputs["input"]
    schema = inp.schema
    for field, text in _object(spec.get("derive", {}), f"{path}.derive", "an object {field: expression}").items():
        if not FIELD.fullmatch(field):
            raise TradecraftError(f"{path}.derive.{field}", f'"{field}" {NOT_A_FIELD}')
        new = pa.field(field, expression_type(text, f"{path}.derive.{field}", schema))
        at = schema.get_field_index(field)
        schema = schema.set(at, new) if at >= 0 else schema.append(new)   # a derive may replace a field, in place
    if "where" in spec:
        t = expression_type(spec["where"], f"{path}.where", schema)
        if not pa.types.is_boolean(t):
            raise TradecraftError(f"{path}.where", f"{show(spec['where'])} is {type_name(t)}; "
                                                   "a filter must be true or false")
    if "select" in spec:
        label = f'the output of "{inp.ref}" and the derives' if "derive" in spec else ""
        names = field_list(spec["select"], f"{path}.select", Input(inp.ref, schema, label))
        if not names:
            raise TradecraftError(f"{path}.select", "[] selects no field")
        schema = pa.schema([schema.field(n) for n in names])
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


def derive_aggregate(spec: dict, path: str, inputs: dict[str, Input]) -> pa.Schema:
    """window_start, window_end (timestamp[us]), the group fields, then the measures in document order."""
    inp = inputs["input"]
    time_field(inp, spec["time"], f"{path}.time")
    if ("window" in spec) == ("session" in spec):
        raise TradecraftError(f"{path}.session" if "session" in spec else f"{path}.window",
                              'an aggregate takes exactly one of "window" (tumbling or hopping) and "session"')
    if "session" in spec:
        positive_duration(spec["session"], f"{path}.session")
        if "hop" in spec:
            raise TradecraftError(f"{path}.hop", f'{show(spec["hop"])}: session windows do not hop')
    else:
        window = positive_duration(spec["window"], f"{path}.window")
        if "hop" in spec:
            hop = positive_duration(spec["hop"], f"{path}.hop")
            if hop > window or round(window * 1000) % round(hop * 1000):
                raise TradecraftError(f"{path}.hop", f'{show(spec["hop"])} must divide the window '
                                                     f'({show(spec["window"])}): a row is in window/hop windows')
    group = field_list(spec.get("group", []), f"{path}.group", inp)
    out = [pa.field("window_start", WINDOW_TYPE), pa.field("window_end", WINDOW_TYPE)]
    for i, name in enumerate(group):
        if name in ("window_start", "window_end"):
            raise TradecraftError(f"{path}.group[{i}]", f'"{name}" clashes with the window field of the same name')
        out.append(inp.schema.field(name))
    taken = {f.name for f in out}
    for name, text in _object(spec["measures"], f"{path}.measures", "an object {name: measure}").items():
        mpath = f"{path}.measures.{name}"
        if not FIELD.fullmatch(name):
            raise TradecraftError(mpath, f'"{name}" {NOT_A_FIELD}')
        if name in taken:
            raise TradecraftError(mpath, f'"{name}" is already a field of the output ({", ".join(taken)})')
        out.append(pa.field(name, _measure_type(text, mpath, inp)))
        taken.add(name)
    return pa.schema(out)


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
        t = expression_type(arg, path, inp.schema)
        if not pa.types.is_boolean(t):
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
    if not (numeric or pa.types.is_timestamp(t) or pa.types.is_string(t) or pa.types.is_boolean(t)):
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
    on = _object(spec["on"], f"{path}.on", "an object {stream field: other field}")
    if not on:
        raise TradecraftError(f"{path}.on", "{} joins on nothing; name at least one pair of fields")
    for mine, theirs in on.items():
        a = field_of(left, mine, f"{path}.on")
        b = field_of(right, theirs, f"{path}.on.{mine}")
        ka, kb = _key_class(a.type), _key_class(b.type)
        if ka is None or ka != kb:
            raise TradecraftError(f"{path}.on.{mine}", f'field "{mine}" of "{left.ref}" is {type_name(a.type)} '
                                                       f'but field "{theirs}" of "{right.ref}" is {type_name(b.type)}; '
                                                       "join keys must be alike (integers, floats, strings, bools, "
                                                       "timestamps of one unit)")
    if spec["how"] not in ("left", "inner"):
        raise TradecraftError(f"{path}.how", f'{show(spec["how"])} is not a join (expected "left" or "inner")')


def _joined(left: Input, right: Input, names: list[str], prefix: str, nullable: bool) -> pa.Schema:
    """The stream's fields, then `names` of the other side; a left join may find no match, hence nullable."""
    out = list(left.schema)
    for name in names:
        f = right.schema.field(name)
        f = f.with_name(f"{prefix}.{name}" if name in left.schema.names else name)
        out.append(f.with_nullable(True) if nullable else f)
    return pa.schema(out)


def derive_join(spec: dict, path: str, inputs: dict[str, Input]) -> pa.Schema:
    """stream fields, then the other side's; a clashing name gets the other analytic's name as prefix."""
    left = inputs["stream"]
    if "dataset" in spec:
        right = inputs["dataset"]
        _join_on(spec, path, left, right)
        names = field_list(spec["fields"], f"{path}.fields", right)
    else:
        right = inputs["with"]
        _join_on(spec, path, left, right)
        times = _object(spec["time"], f"{path}.time", 'the time fields {"stream": field, "with": field}')
        for key in times:
            if key not in ("stream", "with"):
                raise TradecraftError(f"{path}.time.{key}", f'unknown key "{key}" (it takes: stream, with)')
        for key, side in (("stream", left), ("with", right)):
            if key not in times:
                raise TradecraftError(f"{path}.time", f'{show(times)} lacks "{key}", the time field of "{side.ref}"')
            time_field(side, times[key], f"{path}.time.{key}")
        positive_duration(spec["window"], f"{path}.window")
        names = right.schema.names
    return _joined(left, right, names, right.ref.split(".")[0], spec["how"] == "left")


def derive_director(spec: dict, path: str, inputs: dict[str, Input]) -> pa.Schema:
    """Its input's schema on every route; each route value (a JSON key, so text) must read as the key's type."""
    inp = inputs["input"]
    t = field_of(inp, spec["key"], f"{path}.key").type
    if not (pa.types.is_integer(t) or pa.types.is_string(t) or pa.types.is_boolean(t)):
        raise TradecraftError(f"{path}.key", f'field "{spec["key"]}" of "{inp.ref}" is {type_name(t)}; '
                                             "a director routes by an integer, string or bool")
    for value in spec["routes"]:
        ok = (pa.types.is_string(t)
              or (pa.types.is_boolean(t) and value in ("true", "false"))
              or (pa.types.is_integer(t) and re.fullmatch(r"-?\d+", value) is not None
                  and abs(int(value)) < 2 ** (t.bit_width - 1)))
        if not ok:
            raise TradecraftError(f"{path}.routes.{value}", f'{show(value)} is not a value of key "{spec["key"]}", '
                                                            f"which is {type_name(t)}")
    return inp.schema


def derive_manager(spec: dict, path: str, inputs: dict[str, Input]) -> pa.Schema:
    """Its input's schema on every route; routes ascend in `until`, the last takes what is left."""
    inp = inputs["input"]
    time_field(inp, spec["time"], f"{path}.time")
    last: dt.datetime | None = None
    for i, route in enumerate(spec["routes"]):
        at = f"{path}.routes[{i}].until"
        if i == len(spec["routes"]) - 1:
            if "until" in route:
                raise TradecraftError(at, f"{show(route['until'])}: the last route takes what is left, until nothing")
            break
        if "until" not in route:
            raise TradecraftError(f"{path}.routes[{i}]", f'{show(route)} needs "until": only the last route has none')
        until = _timestamp(route["until"], at)
        if last is not None and until <= last:
            raise TradecraftError(at, f"{show(route['until'])} is not after the route before it (ascending time)")
        last = until
    return inp.schema


def _timestamp(value: object, path: str) -> dt.datetime:
    """An ISO-8601 instant; one without a zone is UTC, as event times are."""
    try:
        t = dt.datetime.fromisoformat(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TradecraftError(path, f'{show(value)} is not an ISO-8601 timestamp ("2024-05-01T00:00:00Z")') from None
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


DERIVE: dict[str, Callable[[dict, str, dict[str, Input]], pa.Schema]] = {
    "stream": derive_stream, "ingest": derive_ingest, "transform": derive_transform,
    "aggregate": derive_aggregate, "join": derive_join, "director": derive_director, "manager": derive_manager,
}
