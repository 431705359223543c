"""Parse and validate a tradecraft document into typed analytics.

Everything is checked at submit, before anything runs (seed datablox: type-check before running):
a document either becomes a `Tradecraft` whose every analytic knows what it reads and the schema
it produces, or is refused with every fault it has, as a compiler reports them: each a
`TradecraftError` naming the JSON path and the value at fault (``analytics[3].on: field "tile"
is not in the output of "tiled" (it has: ...)``), several together a `TradecraftFaults`, one line
each. A fault that only follows from another (a type of an analytic whose input is refused) is
not reported.
The kinds themselves — their keys and output schemas — live in `hallelujah.tradecraft_schemas`.
"""
from __future__ import annotations

import copy
import heapq
import importlib.resources
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pyarrow as pa

from hallelujah import formats
from hallelujah import udf as udf_files
from hallelujah.allowed import Allowed
from hallelujah.errors import HallelujahError, NotFound, TradecraftError
from hallelujah.tradecraft_schemas import (
    DERIVE, NAME, TYPES, Input, _a, _object, check_bool, collecting, fault, faults_so_far, go_on, known_keys,
    parse_type, positive_duration, rejected_schema, schema_from_json, schema_to_json, show, suggest, type_name,
)

__all__ = [
    "TYPES", "parse_type", "type_name", "schema_from_json", "schema_to_json", "Congestion", "Analytic",
    "Tradecraft", "TradecraftFaults", "parse_document", "json_schema",
]

TOP_KEYS = ("$schema", "tradecraft", "description", "congestion", "checkpoint", "analytics")
KINDS = ("stream", "ingest", "transform", "aggregate", "join", "director", "manager")
COMMON_KEYS = ("name", "kind", "output", "description")
_JOIN = ("stream", "on", "how")
KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {   # label: (the keys it takes, those it needs)
    "stream": (("schema", "source", "time", "lateness"), ()),
    "ingest": (("source", "every", "offset", "run_on_start", "schema"), ("source",)),
    "transform": (("input", "derive", "where", "select", "udf", "udf_path"), ("input",)),
    "aggregate": (("input", "time", "window", "session", "hop", "group", "measures", "top"), ("input", "time")),
    "join with a dataset": ((*_JOIN, "dataset", "fields"), (*_JOIN, "dataset", "fields")),
    "join with a stream": ((*_JOIN, "with", "time", "window"), (*_JOIN, "with", "time", "window")),
    "director": (("input", "key", "routes", "default"), ("input", "key", "routes", "default")),
    "manager": (("input", "time", "routes"), ("input", "time", "routes")),
}
SOURCE_KEYS = {"stream": ("path", "format", "table", "follow", "rate"), "ingest": ("path", "format", "table")}
REFERENCE_KEYS = ("input", "stream", "dataset", "with")   # the keys by which an analytic reads others
ROUTERS = ("director", "manager")   # analytics whose output is read by route, "x.route"
PATH_CHARS = 400                    # of a refused path, in its message
MAX_FAULTS = 100                    # listed in one refusal: a hostile document cannot make the answer huge
BLOCKING = (*REFERENCE_KEYS, "source")   # missing, nothing of the analytic can be typed


class TradecraftFaults(TradecraftError):
    """Several faults of one document, in document order (`faults`). Its message has one line per
    fault, "path: what is wrong"; its `path` is the first's, so it reads, and travels to a client
    (the path apart, the lines in the message), as a single TradecraftError does."""

    def __init__(self, faults: Sequence[TradecraftError]) -> None:
        self.faults = tuple(faults)
        lines = [_one_line(faults[0].detail)] + [_one_line(str(f)) for f in faults[1:MAX_FAULTS]]
        if len(faults) > MAX_FAULTS:
            lines.append(f"... and {len(faults) - MAX_FAULTS} more faults")
        super().__init__(faults[0].path, "\n".join(lines))


def _one_line(text: str) -> str:
    return " ".join(text.split("\n"))


@dataclass(frozen=True)
class Congestion:
    """When a unit counts as congested: busy above `busy` (a fraction) for `for_seconds` on end."""

    busy: float = 0.85
    for_seconds: float = 2.0


@dataclass(frozen=True)
class Analytic:
    """One validated step of a tradecraft, with the schemas of what it produces."""

    index: int
    name: str
    kind: str
    spec: dict                      # the analytic's JSON object as submitted, source paths made absolute
    inputs: tuple[str, ...]         # references it reads, in key order input/stream/dataset/with
    schema: pa.Schema               # its output (a director's or manager's: its input's, on every route)
    routes: tuple[str, ...]         # director/manager route names, else ()
    rejected_schema: pa.Schema      # rows it could not process: its input's fields + "reason"
    output: bool                    # retained: nothing reads it, or "output" says so

    @property
    def path(self) -> str:
        """The JSON path of its object, the prefix of every message about it."""
        return f"analytics[{self.index}]"


@dataclass(frozen=True)
class Tradecraft:
    """A validated document: its analytics in document order, and the document itself."""

    name: str
    analytics: tuple[Analytic, ...]
    congestion: Congestion
    document: dict                  # as submitted, source paths made absolute: what the catalog stores
    checkpoint: float | None = None     # seconds between its checkpoints; None: the congregation's

    def analytic(self, name: str) -> Analytic:
        """The analytic named `name`; also takes a stream reference ("router.high", "x.rejected")."""
        base, _, part = name.partition(".")
        for a in self.analytics:
            if a.name == base and (not part or part == "rejected" or part in a.routes):
                return a
        raise NotFound(f'tradecraft "{self.name}" has no analytic or stream "{name}" '
                       f'(it has: {", ".join(a.name for a in self.analytics)})')

    def stream_schema(self, ref: str) -> pa.Schema:
        """The schema of the stream "x", "x.route" or "x.rejected"; NotFound otherwise."""
        a = self.analytic(ref)
        return a.rejected_schema if ref.partition(".")[2] == "rejected" else a.schema

    def topological(self) -> list[Analytic]:
        """Producers before their consumers, otherwise in document order: the order to start them in."""
        index = {a.name: a.index for a in self.analytics}
        deps = [{index[ref.partition(".")[0]] for ref in a.inputs} for a in self.analytics]
        return [self.analytics[i] for i in _topological(deps)[0]]

    def outputs(self) -> list[Analytic]:
        """The analytics whose output is retained and readable after the tradecraft ends."""
        return [a for a in self.analytics if a.output]


def parse_document(doc: dict | str | bytes, base_dir: str | Path | None = None,
                   allowed: Allowed | None = None) -> Tradecraft:
    """Validate a whole document (dict or JSON text) and return it typed.

    Relative `source.path` values are resolved against `base_dir` (the document's directory;
    default the current one), which is also where a UDF's module is looked for unless `udf_path`
    says otherwise. Reads the source files of streams and ingests that declare no schema, and
    runs each UDF on an empty batch. Raises a TradecraftError for a single fault and a
    TradecraftFaults for several, in document order; never returns a partly checked document.
    `doc` is not modified. `allowed` (a congregation's, or `run`'s) limits which UDF directories
    and source files it may name, and is checked before any of them is touched; None for a
    client checking its own document.
    """
    obj = _load(doc)
    base = Path(os.path.abspath(base_dir if base_dir is not None else os.getcwd()))
    with collecting() as found:
        tc = _walk(obj, base, allowed)
    if found:
        raise _refusal(found)
    assert tc is not None
    return tc


def _refusal(found: list[TradecraftError]) -> TradecraftError:
    """One fault as itself; several, each once, ordered by the analytic they are in."""
    unique = list({(f.path, f.detail): f for f in found}.values())
    unique.sort(key=_position)
    return unique[0] if len(unique) == 1 else TradecraftFaults(unique)


def _position(fault: TradecraftError) -> int:
    m = re.match(r"analytics\[(\d+)\]", fault.path)
    return int(m.group(1)) if m else -1


def _walk(obj: dict, base: Path, allowed: Allowed | None) -> Tradecraft | None:
    """Check everything that can be checked, keeping the faults; the Tradecraft when there are none."""
    known_keys(obj, "", TOP_KEYS, "a tradecraft document")
    name = obj.get("tradecraft")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        fault("tradecraft", f"{show(name)} is not a tradecraft name ([a-z][a-z0-9_-]*)"
              if "tradecraft" in obj else 'a document needs "tradecraft", its name')
    for key in ("$schema", "description"):
        if key in obj and not isinstance(obj[key], str):
            fault(key, f"{show(obj[key])} is not a string")
    congestion = _congestion(obj.get("congestion", {}))
    checkpoint = None
    if "checkpoint" in obj:
        with go_on():
            checkpoint = positive_duration(obj["checkpoint"], "checkpoint")
    specs = obj.get("analytics")
    if not isinstance(specs, list) or not specs:
        fault("analytics", f"{show(specs)} is not a non-empty list of analytics"
              if "analytics" in obj else 'a document needs "analytics", a list')
        return None

    by_name: dict[str, int] = {}
    routes: list[tuple[str, ...] | None] = []
    typed = []              # analytics whose types can be checked: their shape is sound
    for i, spec in enumerate(specs):
        typed.append(_structure(spec, i, by_name, base, allowed))
        routers = typed[i] and spec["kind"] in ROUTERS
        routes.append(_routes_of(spec["kind"], spec, f"analytics[{i}]") if routers else ())

    refs: list[dict[str, str]] = [{} for _ in specs]
    for i, spec in enumerate(specs):
        for key in REFERENCE_KEYS if typed[i] else ():
            if key in spec:
                with go_on() as step:
                    refs[i][key] = _reference(spec[key], f"analytics[{i}].{key}", key, specs, by_name, routes)
                typed[i] = typed[i] and step.ok
    deps = [{by_name[ref.partition(".")[0]] for ref in r.values()} for r in refs]
    order, stuck = _topological(deps)
    if stuck:
        with go_on():
            _refuse_cycle(stuck, deps, refs, specs)

    schemas: dict[int, pa.Schema] = {}
    for i in order:
        spec = specs[i]
        if not typed[i]:
            continue
        inputs = {key: _input(ref, specs, by_name, schemas) for key, ref in refs[i].items()}
        with go_on():
            schema = DERIVE[spec["kind"]](spec, f"analytics[{i}]", inputs)
            if schema is not None and all(inp.known for inp in inputs.values()):
                schemas[i] = schema
    if faults_so_far():
        return None

    read = {by_name[ref.partition(".")[0]] for r in refs for ref in r.values() if not ref.endswith(".rejected")}
    analytics = []
    for i, spec in enumerate(specs):
        primary = next((key for key in REFERENCE_KEYS if key in refs[i]), None)
        rejected_of = schemas[i] if primary is None else _stream_schema(refs[i][primary], specs, by_name, schemas)
        analytics.append(Analytic(
            index=i, name=spec["name"], kind=spec["kind"], spec=spec, inputs=tuple(refs[i].values()),
            schema=schemas[i], routes=routes[i] or (), rejected_schema=rejected_schema(rejected_of),
            output=spec.get("output", i not in read),
        ))
    return Tradecraft(name=str(name), analytics=tuple(analytics), congestion=congestion, document=obj,
                      checkpoint=checkpoint)


@cache
def _schema_text() -> str:
    return importlib.resources.files("hallelujah").joinpath("tradecraft.schema.json").read_text("utf-8")


def json_schema() -> dict:
    """The JSON Schema (draft 2020-12) of a document, for editors: structure only, not types or references."""
    return json.loads(_schema_text())


# ---- the steps of parse_document --------------------------------------------------------------

def _load(doc: dict | str | bytes) -> dict:
    """A private deep copy of the document, so resolving paths never changes the caller's."""
    if isinstance(doc, (bytes, bytearray)):
        try:
            doc = doc.decode("utf-8")
        except UnicodeDecodeError as e:
            raise TradecraftError("", f"a tradecraft document is UTF-8 JSON: {e}") from None
    try:
        if isinstance(doc, str):
            doc = json.loads(doc)
        if not isinstance(doc, dict):
            raise TradecraftError("", f"a tradecraft document is a JSON object, not {show(doc)}")
        return copy.deepcopy(doc)
    except json.JSONDecodeError as e:
        raise TradecraftError("", f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise TradecraftError("", "the document is nested too deeply to be a tradecraft") from None


def _congestion(value: object) -> Congestion:
    if not isinstance(value, dict):
        fault("congestion", f'{show(value)} is not an object {{"busy": fraction, "for": duration}}')
        return Congestion()
    known_keys(value, "congestion", ("busy", "for"), "congestion")
    busy = value.get("busy", Congestion.busy)
    if isinstance(busy, bool) or not isinstance(busy, (int, float)) or not 0 < busy <= 1:
        fault("congestion.busy", f"{show(busy)} is not a busy fraction (above 0, at most 1)")
        busy = Congestion.busy
    seconds = Congestion.for_seconds
    if "for" in value:
        with go_on():
            seconds = positive_duration(value["for"], "congestion.for")
    return Congestion(busy=float(busy), for_seconds=seconds)


def _structure(spec: object, i: int, by_name: dict[str, int], base: Path, allowed: Allowed | None) -> bool:
    """Check one analytic's shape — name, kind, keys — and resolve its source path and UDF
    directory in place, refusing what `allowed` does not let it reach; a valid, new name is
    entered in `by_name`. Whether its types can be checked: not when it is no analytic, has a
    bad name or kind, misses what it reads, or names a source or UDF that is refused (then no
    file it names is read). A missing key of another kind is a fault, but the rest is typed."""
    path = f"analytics[{i}]"
    if not isinstance(spec, dict):
        fault(path, f"{show(spec)} is not an analytic (expected an object with name and kind)")
        return False
    typed = True
    name = spec.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        fault(f"{path}.name", f"{show(name)} is not an analytic name ([a-z][a-z0-9_-]*)"
              if "name" in spec else 'an analytic needs a "name"')
        typed = False
    elif name in by_name:
        fault(f"{path}.name", f'"{name}" is already the name of analytics[{by_name[name]}]')
        typed = False
    else:
        by_name[name] = i
    kind = spec.get("kind")
    if kind not in KINDS:
        hint = suggest(kind, KINDS) if isinstance(kind, str) else ""
        fault(f"{path}.kind", f"{show(kind)} is not a kind{hint} (kinds: {', '.join(KINDS)})"
              if "kind" in spec else f'analytic "{name}" needs a "kind" ({", ".join(KINDS)})')
        return False
    label = kind
    if kind == "join":
        if "dataset" in spec and "with" in spec:
            fault(f"{path}.with", f'{show(spec["with"])}: a join takes "dataset" (a finite '
                                  'dataset) or "with" (a stream), not both')
            return False
        if "dataset" not in spec and "with" not in spec:
            fault(path, f'join "{name}" needs "dataset" (a finite dataset) or "with" (a stream)')
            return False
        label = "join with a dataset" if "dataset" in spec else "join with a stream"
    takes, needs = KEYS[label]
    known_keys(spec, path, COMMON_KEYS + takes, _a(label))
    for key in needs:
        if key not in spec:
            fault(f"{path}.{key}", f'{_a(label)} needs "{key}"')
            typed = typed and key not in BLOCKING
    if "output" in spec:
        with go_on():
            check_bool(spec["output"], f"{path}.output")
    if "description" in spec and not isinstance(spec["description"], str):
        fault(f"{path}.description", f"{show(spec['description'])} is not a string")
    before = faults_so_far()
    if "source" in spec:
        with go_on():
            _resolve_source(kind, spec, path, base, allowed)
    if "udf" in spec:
        with go_on():
            _udf_reference(spec, path, base, allowed)
    elif "udf_path" in spec:
        fault(f"{path}.udf_path", f'{show(spec["udf_path"])}: a udf_path needs a "udf"')
    if kind == "aggregate" and "top" in spec:
        spec.setdefault("measures", {})     # what a planner reads of every aggregate: none of its own here
    return typed and faults_so_far() == before


def _udf_reference(spec: dict, path: str, base: Path, allowed: Allowed | None) -> None:
    """Check a UDF's reference and where its module is, and make `udf_path` absolute in place.

    The directory (the document's unless `udf_path` names one) is kept in the document, so the
    congregation and its workers load the same file. Under `allowed`, the directory and the
    module file (symlinks followed) must lie in a directory the operator allowed.
    """
    udf = spec["udf"]
    if not isinstance(udf, str) or not udf_files.REFERENCE.fullmatch(udf):
        raise TradecraftError(f"{path}.udf", f'{show(udf)} is not a UDF (expected "module:function")')
    given = spec.setdefault("udf_path", str(base))
    if not isinstance(given, str) or not given:
        raise TradecraftError(f"{path}.udf_path", f"{show(given)} is not a directory")
    directory = Path(os.path.abspath(base / os.path.expanduser(given)))
    spec["udf_path"] = str(directory)
    if allowed is not None and not allowed.may_import(directory):
        dirs = ", ".join(str(d) for d in allowed.udf_dirs) or "none"
        raise TradecraftError(f"{path}.udf_path", f"{show(given, PATH_CHARS)} is not a directory this "
                                                  f"congregation loads UDFs from (its operator allows: {dirs})")
    module = udf.partition(":")[0]
    found = udf_files.module_file(module, directory)
    if found is None:
        raise TradecraftError(f"{path}.udf", f'{show(udf)}: no module "{module}" in {directory} '
                                             f"(looked for {udf_files.looked_for(module)})")
    if allowed is not None and not allowed.may_import(found):
        raise TradecraftError(f"{path}.udf", f'{show(udf)}: module "{module}" leads out of {directory} '
                                             "(a symlink to a file elsewhere)")

def _resolve_source(kind: str, spec: dict, path: str, base_dir: Path, allowed: Allowed | None) -> None:
    """Check a source's keys and make its path absolute in place, relative to the document's
    directory; under `allowed`, its real path must lie under a source root."""
    source = _object(spec["source"], f"{path}.source", 'a source {"path": ..., "format": ...}')
    known_keys(source, f"{path}.source", SOURCE_KEYS[kind], f"the source of {_a(kind)}")
    p = source.get("path")
    if not isinstance(p, str) or not p:
        raise TradecraftError(f"{path}.source.path", f"{show(p)} is not a file path" if "path" in source
                              else "a source needs a path")
    source["path"] = os.path.abspath(base_dir / os.path.expanduser(p))
    if allowed is not None and not allowed.may_read(source["path"]):
        roots = ", ".join(str(r) for r in allowed.source_roots) or "none"
        raise TradecraftError(f"{path}.source.path", f"{show(p, PATH_CHARS)} is not under a directory this "
                                                     f"congregation reads sources from (its operator allows: {roots})")
    rate = source.get("rate", 1)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
        fault(f"{path}.source.rate", f"{show(rate)} is not a rate (rows per second, above zero)")
    fmt = source.get("format")
    if "format" in source and fmt not in formats.READ_FORMATS:
        raise TradecraftError(f"{path}.source.format", f"{show(fmt)} is not a format to read "
                                                       f"(formats: {', '.join(formats.READ_FORMATS)})")
    if fmt is None:
        try:
            fmt = formats.format_of(source["path"])
        except (HallelujahError, ValueError):
            raise TradecraftError(f"{path}.source.path", f"{show(p)}: cannot tell the format from the extension; "
                                  f'name it in "format" ({", ".join(formats.READ_FORMATS)})') from None
    if fmt == "sqlite" and not (isinstance(source.get("table"), str) and source["table"]):
        fault(f"{path}.source.table", f"{show(source.get('table'))} is not a table name; a sqlite source needs one")
    if fmt != "sqlite" and "table" in source:
        fault(f"{path}.source.table", f"{show(source['table'])}: only a sqlite source has tables, this one is {fmt}")
    if "follow" in source:
        with go_on():
            if check_bool(source["follow"], f"{path}.source.follow") and fmt not in ("csv", "jsonl"):
                raise TradecraftError(f"{path}.source.follow", f"true: only a csv or jsonl file can be followed, "
                                                               f"not {fmt}")


def _routes_of(kind: str, spec: dict, path: str) -> tuple[str, ...] | None:
    """The route names of a director or manager, distinct, in order of first mention; None when
    a fault (kept) leaves them unknown."""
    if "routes" not in spec or (kind == "director" and "default" not in spec):
        return None                     # its needs are refused already
    before = faults_so_far()
    named: list[tuple[str, object]] = []
    routes = spec["routes"]
    if kind == "director":
        if not isinstance(routes, dict):
            fault(f"{path}.routes", f"{show(routes)} is not an object {{key value: route}}")
            return None
        named = [(f"{path}.routes.{k}", v) for k, v in routes.items()] + [(f"{path}.default", spec["default"])]
    else:
        if not isinstance(routes, list):
            fault(f"{path}.routes", f'{show(routes)} is not a list of {{"until": time, "to": route}}')
            return None
        for i, r in enumerate(routes):
            if not isinstance(r, dict):
                fault(f"{path}.routes[{i}]", f'{show(r)} is not a route {{"until": timestamp, "to": route}}')
                continue
            known_keys(r, f"{path}.routes[{i}]", ("until", "to"), "a route")
            named.append((f"{path}.routes[{i}].to", r.get("to")))
    if not routes:
        fault(f"{path}.routes", f"{show(routes)} has no routes")
    for at, route in named:
        if not isinstance(route, str) or not NAME.fullmatch(route):
            fault(at, f"{show(route)} is not a route name ([a-z][a-z0-9_-]*)")
        elif route == "rejected":
            fault(at, '"rejected" names the rows an analytic could not process; name the route otherwise')
    if faults_so_far() > before:
        return None
    return tuple(dict.fromkeys(route for _, route in named))  # type: ignore[misc]


def _reference(ref: object, path: str, key: str, specs: list[dict], by_name: dict[str, int],
               routes: list[tuple[str, ...] | None]) -> str:
    """Check that `ref` names what this key can read: a stream, a route, x.rejected, or (for "dataset") an ingest.
    An analytic whose kind or routes are refused cannot be told apart: any reference to it passes here."""
    if not isinstance(ref, str) or not ref:
        raise TradecraftError(path, f"{show(ref)} is not an analytic name")
    base, _, part = ref.partition(".")
    if base not in by_name:
        raise TradecraftError(path, f'no analytic is named "{base}"{suggest(base, by_name)} '
                                    f'(there are: {", ".join(by_name)})')
    i = by_name[base]
    kind = specs[i].get("kind")
    known = routes[i]
    if kind not in KINDS or (part and part != "rejected" and known is None):
        return ref
    if key == "dataset":
        if part or kind != "ingest":
            raise TradecraftError(path, f'"{ref}" is not a dataset: a join\'s "dataset" names an ingest '
                                        f'({_a(kind)} is joined "with")')
        return ref
    if part == "rejected":
        return ref
    if part:
        if known is None or part not in known:
            has = f'its routes: {", ".join(known)}' if known else "it has no routes"
            raise TradecraftError(path, f'"{base}" has no route "{part}" ({has}; '
                                        f'every analytic also has "{base}.rejected")')
        return ref
    if kind == "ingest":
        raise TradecraftError(path, f'"{ref}" is a dataset (an ingest): a join reads it as its "dataset"')
    if kind in ROUTERS:
        choices = f' ({", ".join(f"{ref}.{r}" for r in known)})' if known else ""
        raise TradecraftError(path, f'"{ref}" is {_a(kind)}: read one of its routes{choices}')
    return ref


def _input(ref: str, specs: list[dict], by_name: dict[str, int], schemas: dict[int, pa.Schema]) -> Input:
    """What an analytic reads by `ref`: unknown when its producer's output is (a fault of its own)."""
    if by_name[ref.partition(".")[0]] not in schemas:
        return Input(ref, pa.schema([]), known=False)
    return Input(ref, _stream_schema(ref, specs, by_name, schemas))


def _stream_schema(ref: str, specs: list[dict], by_name: dict[str, int], schemas: dict[int, pa.Schema]) -> pa.Schema:
    """The schema of a checked reference, once its producer's schema is known."""
    base, _, part = ref.partition(".")
    i = by_name[base]
    if part != "rejected":
        return schemas[i]
    primary = next((specs[i][key] for key in REFERENCE_KEYS if key in specs[i]), None)
    return rejected_schema(schemas[i] if primary is None else _stream_schema(primary, specs, by_name, schemas))


def _topological(deps: list[set[int]]) -> tuple[list[int], set[int]]:
    """Kahn's order (lowest index first among the ready) and the nodes left stuck in cycles."""
    waiting = [len(d) for d in deps]
    readers: list[list[int]] = [[] for _ in deps]
    for i, d in enumerate(deps):
        for p in d:
            readers[p].append(i)
    ready = [i for i, n in enumerate(waiting) if n == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for r in readers[i]:
            waiting[r] -= 1
            if waiting[r] == 0:
                heapq.heappush(ready, r)
    return order, set(range(len(deps))) - set(order)


def _refuse_cycle(stuck: set[int], deps: list[set[int]], refs: list[dict[str, str]], specs: list[dict]) -> None:
    """Name one cycle, from its first analytic in document order; every stuck node reads a stuck node."""
    walk = [min(stuck)]
    while (nxt := min(p for p in deps[walk[-1]] if p in stuck)) not in walk:
        walk.append(nxt)
    cycle = walk[walk.index(nxt):]
    start = cycle.index(min(cycle))
    cycle = cycle[start:] + cycle[:start]
    first, second = cycle[0], cycle[1 % len(cycle)]
    key = next(k for k, ref in refs[first].items() if ref.partition(".")[0] == specs[second]["name"])
    names = [specs[i]["name"] for i in cycle] + [specs[first]["name"]]
    chain = f'"{names[0]}" reads ' + ", which reads ".join(f'"{n}"' for n in names[1:])
    raise TradecraftError(f"analytics[{first}].{key}", f"{show(refs[first][key])} makes a cycle: {chain}")
