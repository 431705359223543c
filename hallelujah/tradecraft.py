"""Parse and validate a tradecraft document into typed analytics.

Everything is checked at submit, before anything runs (seed datablox: type-check before running):
a document either becomes a `Tradecraft` whose every analytic knows what it reads and the schema
it produces, or fails on its first fault with a `TradecraftError` naming the JSON path and the
value at fault (``analytics[3].on: field "tile" is not in the output of "tiled" (it has: ...)``).
The kinds themselves — their keys and output schemas — live in `hallelujah.tradecraft_schemas`.
"""
from __future__ import annotations

import copy
import heapq
import importlib.resources
import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pyarrow as pa

from hallelujah import formats
from hallelujah import udf as udf_files
from hallelujah.allowed import Allowed
from hallelujah.errors import HallelujahError, NotFound, TradecraftError
from hallelujah.tradecraft_schemas import (
    DERIVE, NAME, TYPES, Input, _a, _object, check_bool, parse_type, positive_duration,
    rejected_schema, schema_from_json, schema_to_json, show, suggest, type_name,
)

__all__ = [
    "TYPES", "parse_type", "type_name", "schema_from_json", "schema_to_json", "Congestion", "Analytic",
    "Tradecraft", "parse_document", "json_schema",
]

TOP_KEYS = ("$schema", "tradecraft", "description", "congestion", "analytics")
KINDS = ("stream", "ingest", "transform", "aggregate", "join", "director", "manager")
COMMON_KEYS = ("name", "kind", "output", "description")
_JOIN = ("stream", "on", "how")
KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {   # label: (the keys it takes, those it needs)
    "stream": (("schema", "source", "time", "lateness"), ()),
    "ingest": (("source", "every", "offset", "run_on_start", "schema"), ("source",)),
    "transform": (("input", "derive", "where", "select", "udf", "udf_path"), ("input",)),
    "aggregate": (("input", "time", "window", "session", "hop", "group", "measures"), ("input", "time", "measures")),
    "join with a dataset": ((*_JOIN, "dataset", "fields"), (*_JOIN, "dataset", "fields")),
    "join with a stream": ((*_JOIN, "with", "time", "window"), (*_JOIN, "with", "time", "window")),
    "director": (("input", "key", "routes", "default"), ("input", "key", "routes", "default")),
    "manager": (("input", "time", "routes"), ("input", "time", "routes")),
}
SOURCE_KEYS = {"stream": ("path", "format", "table", "follow", "rate"), "ingest": ("path", "format", "table")}
REFERENCE_KEYS = ("input", "stream", "dataset", "with")   # the keys by which an analytic reads others
ROUTERS = ("director", "manager")   # analytics whose output is read by route, "x.route"
PATH_CHARS = 400                    # of a refused path, in its message


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
    runs each UDF on an empty batch. Raises TradecraftError on the first fault; never returns a
    partly checked document. `doc` is not modified. `allowed` (a congregation's, or `run`'s)
    limits which UDF directories and source files it may name, and is checked before any of them
    is touched; None for a client checking its own document.
    """
    obj = _load(doc)
    base = Path(os.path.abspath(base_dir if base_dir is not None else os.getcwd()))
    _known_keys(obj, "", TOP_KEYS, "a tradecraft document")
    name = obj.get("tradecraft")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise TradecraftError("tradecraft", f"{show(name)} is not a tradecraft name ([a-z][a-z0-9_-]*)"
                              if "tradecraft" in obj else 'a document needs "tradecraft", its name')
    for key in ("$schema", "description"):
        if key in obj and not isinstance(obj[key], str):
            raise TradecraftError(key, f"{show(obj[key])} is not a string")
    congestion = _congestion(obj.get("congestion", {}))
    specs = obj.get("analytics")
    if not isinstance(specs, list) or not specs:
        raise TradecraftError("analytics", f"{show(specs)} is not a non-empty list of analytics"
                              if "analytics" in obj else 'a document needs "analytics", a list')

    by_name: dict[str, int] = {}
    routes: list[tuple[str, ...]] = []
    for i, spec in enumerate(specs):
        _structure(spec, f"analytics[{i}]", by_name, base, allowed)
        by_name[spec["name"]] = i
        routes.append(_routes_of(spec["kind"], spec, f"analytics[{i}]") if spec["kind"] in ROUTERS else ())

    refs = [{key: _reference(spec[key], f"analytics[{i}].{key}", key, specs, by_name, routes)
             for key in REFERENCE_KEYS if key in spec} for i, spec in enumerate(specs)]
    deps = [{by_name[ref.partition(".")[0]] for ref in r.values()} for r in refs]
    order, stuck = _topological(deps)
    if stuck:
        _refuse_cycle(stuck, deps, refs, specs)

    schemas: dict[int, pa.Schema] = {}
    for i in order:
        spec = specs[i]
        inputs = {key: Input(ref, _stream_schema(ref, specs, by_name, schemas)) for key, ref in refs[i].items()}
        schemas[i] = DERIVE[spec["kind"]](spec, f"analytics[{i}]", inputs)

    read = {by_name[ref.partition(".")[0]] for r in refs for ref in r.values() if not ref.endswith(".rejected")}
    analytics = []
    for i, spec in enumerate(specs):
        primary = next((key for key in REFERENCE_KEYS if key in refs[i]), None)
        rejected_of = schemas[i] if primary is None else _stream_schema(refs[i][primary], specs, by_name, schemas)
        analytics.append(Analytic(
            index=i, name=spec["name"], kind=spec["kind"], spec=spec, inputs=tuple(refs[i].values()),
            schema=schemas[i], routes=routes[i], rejected_schema=rejected_schema(rejected_of),
            output=spec.get("output", i not in read),
        ))
    return Tradecraft(name=name, analytics=tuple(analytics), congestion=congestion, document=obj)


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


def _known_keys(obj: dict, path: str, allowed: tuple[str, ...], what: str) -> None:
    for key in obj:
        if key not in allowed:
            at = f"{path}.{key}" if path else str(key)
            hint = suggest(str(key), allowed)
            raise TradecraftError(at, f'unknown key "{key}" for {what}{hint} (it takes: {", ".join(allowed)})')


def _congestion(value: object) -> Congestion:
    obj = _object(value, "congestion", 'an object {"busy": fraction, "for": duration}')
    _known_keys(obj, "congestion", ("busy", "for"), "congestion")
    busy = obj.get("busy", Congestion.busy)
    if isinstance(busy, bool) or not isinstance(busy, (int, float)) or not 0 < busy <= 1:
        raise TradecraftError("congestion.busy", f"{show(busy)} is not a busy fraction (above 0, at most 1)")
    seconds = positive_duration(obj["for"], "congestion.for") if "for" in obj else Congestion.for_seconds
    return Congestion(busy=float(busy), for_seconds=seconds)


def _structure(spec: object, path: str, by_name: dict[str, int], base: Path, allowed: Allowed | None) -> None:
    """Check one analytic's shape — name, kind, keys — and resolve its source path and UDF
    directory in place, refusing what `allowed` does not let it reach."""
    if not isinstance(spec, dict):
        raise TradecraftError(path, f"{show(spec)} is not an analytic (expected an object with name and kind)")
    name = spec.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise TradecraftError(f"{path}.name", f"{show(name)} is not an analytic name ([a-z][a-z0-9_-]*)"
                              if "name" in spec else 'an analytic needs a "name"')
    if name in by_name:
        raise TradecraftError(f"{path}.name", f'"{name}" is already the name of analytics[{by_name[name]}]')
    kind = spec.get("kind")
    if kind not in KINDS:
        hint = suggest(kind, KINDS) if isinstance(kind, str) else ""
        raise TradecraftError(f"{path}.kind", f"{show(kind)} is not a kind{hint} (kinds: {', '.join(KINDS)})"
                              if "kind" in spec else f'analytic "{name}" needs a "kind" ({", ".join(KINDS)})')
    label = kind
    if kind == "join":
        if "dataset" in spec and "with" in spec:
            raise TradecraftError(f"{path}.with", f'{show(spec["with"])}: a join takes "dataset" (a finite '
                                                  'dataset) or "with" (a stream), not both')
        if "dataset" not in spec and "with" not in spec:
            raise TradecraftError(path, f'join "{name}" needs "dataset" (a finite dataset) or "with" (a stream)')
        label = "join with a dataset" if "dataset" in spec else "join with a stream"
    takes, needs = KEYS[label]
    _known_keys(spec, path, COMMON_KEYS + takes, _a(label))
    for key in needs:
        if key not in spec:
            raise TradecraftError(f"{path}.{key}", f'{_a(label)} needs "{key}"')
    if "output" in spec:
        check_bool(spec["output"], f"{path}.output")
    if "description" in spec and not isinstance(spec["description"], str):
        raise TradecraftError(f"{path}.description", f"{show(spec['description'])} is not a string")
    if "source" in spec:
        _resolve_source(kind, spec, path, base, allowed)
    if "udf" in spec:
        _udf_reference(spec, path, base, allowed)
    elif "udf_path" in spec:
        raise TradecraftError(f"{path}.udf_path", f'{show(spec["udf_path"])}: a udf_path needs a "udf"')


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
    _known_keys(source, f"{path}.source", SOURCE_KEYS[kind], f"the source of {_a(kind)}")
    p = source.get("path")
    if not isinstance(p, str) or not p:
        raise TradecraftError(f"{path}.source.path", f"{show(p)} is not a file path" if "path" in source
                              else "a source needs a path")
    source["path"] = os.path.abspath(base_dir / os.path.expanduser(p))
    if allowed is not None and not allowed.may_read(source["path"]):
        roots = ", ".join(str(r) for r in allowed.source_roots) or "none"
        raise TradecraftError(f"{path}.source.path", f"{show(p, PATH_CHARS)} is not under a directory this "
                                                     f"congregation reads sources from (its operator allows: {roots})")
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
        raise TradecraftError(f"{path}.source.table", f"{show(source.get('table'))} is not a table name; "
                                                      "a sqlite source needs one")
    if fmt != "sqlite" and "table" in source:
        raise TradecraftError(f"{path}.source.table", f"{show(source['table'])}: only a sqlite source has tables, "
                                                      f"this one is {fmt}")
    if "follow" in source and check_bool(source["follow"], f"{path}.source.follow") and fmt not in ("csv", "jsonl"):
        raise TradecraftError(f"{path}.source.follow", f"true: only a csv or jsonl file can be followed, not {fmt}")
    rate = source.get("rate", 1)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
        raise TradecraftError(f"{path}.source.rate", f"{show(rate)} is not a rate (rows per second, above zero)")


def _routes_of(kind: str, spec: dict, path: str) -> tuple[str, ...]:
    """The route names of a director or manager, distinct, in order of first mention."""
    if kind == "director":
        routes = _object(spec["routes"], f"{path}.routes", "an object {key value: route}")
        named = [(f"{path}.routes.{k}", v) for k, v in routes.items()] + [(f"{path}.default", spec["default"])]
    else:
        routes = spec["routes"]
        if not isinstance(routes, list):
            raise TradecraftError(f"{path}.routes", f'{show(routes)} is not a list of {{"until": time, "to": route}}')
        named = []
        for i, r in enumerate(routes):
            _object(r, f"{path}.routes[{i}]", 'a route {"until": timestamp, "to": route}')
            _known_keys(r, f"{path}.routes[{i}]", ("until", "to"), "a route")
            named.append((f"{path}.routes[{i}].to", r.get("to")))
    if not routes:
        raise TradecraftError(f"{path}.routes", f"{show(routes)} has no routes")
    for at, route in named:
        if not isinstance(route, str) or not NAME.fullmatch(route):
            raise TradecraftError(at, f"{show(route)} is not a route name ([a-z][a-z0-9_-]*)")
        if route == "rejected":
            raise TradecraftError(at, '"rejected" names the rows an analytic could not process; '
                                      "name the route otherwise")
    return tuple(dict.fromkeys(route for _, route in named))


def _reference(ref: object, path: str, key: str, specs: list[dict], by_name: dict[str, int],
               routes: list[tuple[str, ...]]) -> str:
    """Check that `ref` names what this key can read: a stream, a route, x.rejected, or (for "dataset") an ingest."""
    if not isinstance(ref, str) or not ref:
        raise TradecraftError(path, f"{show(ref)} is not an analytic name")
    base, _, part = ref.partition(".")
    if base not in by_name:
        raise TradecraftError(path, f'no analytic is named "{base}"{suggest(base, by_name)} '
                                    f'(there are: {", ".join(by_name)})')
    i = by_name[base]
    kind = specs[i]["kind"]
    if key == "dataset":
        if part or kind != "ingest":
            raise TradecraftError(path, f'"{ref}" is not a dataset: a join\'s "dataset" names an ingest '
                                        f'({_a(kind)} is joined "with")')
        return ref
    if part == "rejected":
        return ref
    if part:
        if part not in routes[i]:
            has = f'its routes: {", ".join(routes[i])}' if routes[i] else "it has no routes"
            raise TradecraftError(path, f'"{base}" has no route "{part}" ({has}; '
                                        f'every analytic also has "{base}.rejected")')
        return ref
    if kind == "ingest":
        raise TradecraftError(path, f'"{ref}" is a dataset (an ingest): a join reads it as its "dataset"')
    if kind in ROUTERS:
        choices = ", ".join(f"{ref}.{r}" for r in routes[i])
        raise TradecraftError(path, f'"{ref}" is {_a(kind)}: read one of its routes ({choices})')
    return ref


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
