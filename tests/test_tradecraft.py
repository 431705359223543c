"""A tradecraft document is validated whole at submit: typed outputs, or every fault, each by its JSON path."""
from __future__ import annotations

import copy
import json
import re
import uuid
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hallelujah.errors import NotFound, TradecraftError
from hallelujah.tradecraft import (
    TYPES, Congestion, TradecraftFaults, json_schema, parse_document, parse_type, schema_from_json, schema_to_json,
    type_name,
)

DESIGN = Path(__file__).resolve().parent.parent.parent / "shared" / "DESIGN.md"
US = pa.timestamp("us")

# The document of DESIGN.md "Tradecraft document v1", kept here so the test stands alone.
EXAMPLE: dict[str, Any] = {
    "tradecraft": "gps",
    "congestion": {"busy": 0.85, "for": "2s"},
    "analytics": [
        {"name": "positions", "kind": "stream", "time": "ts", "lateness": "5s",
         "schema": {"ts": "timestamp[us]", "device_id": "int64", "lat": "float64", "lon": "float64"}},
        {"name": "tiles", "kind": "ingest", "every": "1h", "source": {"path": "tiles.parquet", "format": "parquet"}},
        {"name": "tiled", "kind": "transform", "input": "positions",
         "derive": {"tile": "floor(lat + 90) * 360 + floor(lon + 180)"}, "where": "abs(lat) <= 90"},
        {"name": "countries", "kind": "join", "stream": "tiled", "dataset": "tiles",
         "on": {"tile": "tile"}, "fields": ["country"], "how": "left"},
        {"name": "hourly", "kind": "aggregate", "input": "countries", "time": "ts", "window": "1h",
         "group": ["country"], "measures": {"devices": "count_distinct(device_id)", "fixes": "count()"}},
    ],
}
POSITIONS = pa.schema([("ts", US), ("device_id", pa.int64()), ("lat", pa.float64()), ("lon", pa.float64())])
# pyarrow's floor keeps float64, so the tile computed in "tiled" is float64 and the dataset's must be too.
TILES = pa.schema([("tile", pa.float64()), ("country", pa.string()), ("name", pa.string())])


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """A document directory holding the example's dataset file."""
    pq.write_table(pa.table({"tile": [1.0, 2.0], "country": ["fr", "de"], "name": ["a", "b"]}, schema=TILES),
                   tmp_path / "tiles.parquet")
    return tmp_path


def doc(change: Callable[[dict], Any] | None = None) -> dict:
    """A fresh copy of the example, changed by `change` (which may edit in place)."""
    d = copy.deepcopy(EXAMPLE)
    if change is not None:
        change(d)
    return d


def at(i: int, **keys: Any) -> Callable[[dict], None]:
    """Set keys of analytics[i]; a value of None removes the key."""
    def change(d: dict) -> None:
        for k, v in keys.items():
            d["analytics"][i].pop(k, None) if v is None else d["analytics"][i].__setitem__(k, v)
    return change


def add(*analytics: dict) -> Callable[[dict], None]:
    return lambda d: d["analytics"].extend(copy.deepcopy(analytics))


def every(*changes: Callable[[dict], Any]) -> Callable[[dict], None]:
    """All of `changes`, in order."""
    def change(d: dict) -> None:
        for c in changes:
            c(d)
    return change


ROUTER = {"name": "router", "kind": "director", "input": "positions", "key": "device_id",
          "routes": {"1": "high", "2": "high", "3": "low"}, "default": "rest"}
PHASES = {"name": "phases", "kind": "manager", "input": "positions", "time": "ts",
          "routes": [{"until": "2024-01-01T00:00:00Z", "to": "old"}, {"until": "2024-06-01T00:00:00", "to": "mid"},
                     {"to": "new"}]}


# ---- the example ------------------------------------------------------------------------------

def test_the_design_example_is_the_one_in_design_md() -> None:
    if not DESIGN.exists():
        pytest.skip("DESIGN.md is not beside the project")
    text = DESIGN.read_text().split("## Tradecraft document v1\n```json\n")[1].split("```")[0]
    assert json.loads(text) == EXAMPLE


def test_the_design_example_validates_with_its_output_schemas(base: Path) -> None:
    tc = parse_document(EXAMPLE, base)
    assert tc.name == "gps" and tc.congestion == Congestion(0.85, 2.0)
    s = {a.name: a.schema for a in tc.analytics}
    assert s["positions"] == POSITIONS
    assert s["tiles"] == TILES
    assert s["tiled"] == POSITIONS.append(pa.field("tile", pa.float64()))
    assert s["countries"] == s["tiled"].append(pa.field("country", pa.string(), nullable=True))
    assert s["hourly"] == pa.schema([("window_start", US), ("window_end", US), ("country", pa.string()),
                                     ("devices", pa.int64()), ("fixes", pa.int64())])
    assert [a.inputs for a in tc.analytics] == [(), (), ("positions",), ("tiled", "tiles"), ("countries",)]
    assert [a.path for a in tc.analytics] == [f"analytics[{i}]" for i in range(5)]
    assert [a.name for a in tc.outputs()] == ["hourly"]
    assert all(a.routes == () for a in tc.analytics)


def test_rejected_rows_carry_the_input_fields_and_a_reason(base: Path) -> None:
    tc = parse_document(EXAMPLE, base)
    reason = pa.field("reason", pa.string())
    assert tc.analytic("positions").rejected_schema == POSITIONS.append(reason)
    assert tc.analytic("tiled").rejected_schema == POSITIONS.append(reason)
    assert tc.stream_schema("countries.rejected") == tc.stream_schema("tiled").append(reason)
    assert tc.analytic("hourly.rejected").name == "hourly"


def test_source_paths_are_made_absolute_without_changing_the_callers_document(base: Path) -> None:
    original = doc()
    tc = parse_document(original, base)
    assert original == EXAMPLE
    absolute = str(base / "tiles.parquet")
    assert tc.analytic("tiles").spec["source"]["path"] == absolute
    assert tc.document["analytics"][1]["source"]["path"] == absolute


def test_json_text_and_bytes_are_accepted(base: Path) -> None:
    assert parse_document(json.dumps(EXAMPLE), base).analytic("hourly").schema.names[-1] == "fixes"
    assert parse_document(json.dumps(EXAMPLE).encode(), str(base)).name == "gps"


def test_relative_paths_resolve_against_the_working_directory(base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(base)
    assert parse_document(EXAMPLE).analytic("tiles").spec["source"]["path"] == str(base / "tiles.parquet")


def test_analytics_are_ordered_producers_first(base: Path) -> None:
    reversed_doc = doc(lambda d: d["analytics"].reverse())
    tc = parse_document(reversed_doc, base)
    order = [a.name for a in tc.topological()]
    for a in tc.analytics:
        for ref in a.inputs:
            assert order.index(ref.split(".")[0]) < order.index(a.name)


def test_unknown_streams_are_not_found(base: Path) -> None:
    tc = parse_document(EXAMPLE, base)
    for ref in ("nothing", "tiled.high", "hourly.x"):
        with pytest.raises(NotFound):
            tc.stream_schema(ref)


# ---- the kinds --------------------------------------------------------------------------------
# Analytics added to the example; together they use every kind and key, so the JSON Schema test
# below can check that it accepts all of them.
REPLAY = {"name": "replay", "kind": "stream", "time": "ts", "source": {"path": "replay.parquet", "rate": 100}}
DERIVED = {"name": "derived", "kind": "transform", "input": "positions",
           "derive": {"lat": "cast(lat, 'int64')", "twice": "lat * 2", "label": "concat('d', 'x')"},
           "where": "twice > 0", "select": ["label", "twice", "lat"]}
BOTH = {"name": "both", "kind": "join", "stream": "tiled", "dataset": "tiles", "on": {"tile": "tile"},
        "fields": ["tile", "country"], "how": "inner"}
RESPONSES = {"name": "responses", "kind": "stream", "schema": {"ts": "timestamp[ms]", "device_id": "int64", "ok": "bool"}}
PAIRED = {"name": "paired", "kind": "join", "stream": "positions", "with": "responses", "on": {"device_id": "device_id"},
          "time": {"stream": "ts", "with": "ts"}, "window": "10s", "how": "left"}
STATS = {"name": "stats", "kind": "aggregate", "input": "positions", "time": "ts", "window": "1m", "hop": "20s",
         "measures": {"n": "count()", "north": "count_if(lat > 0)", "ids": "sum(device_id)", "lats": "sum(lat)",
                      "avg": "mean(device_id)", "first": "min(ts)", "top": "max(lat)"}}
SESSIONS = {"name": "sessions", "kind": "aggregate", "input": "positions", "time": "ts", "session": "30s",
            "group": ["device_id"], "measures": {}}
HOT = {"name": "hot", "kind": "transform", "input": "router.high"}
EARLY = {"name": "early", "kind": "transform", "input": "phases.old", "output": True}
LOADED = {"name": "loaded", "kind": "ingest", "every": "1d", "offset": "2h", "run_on_start": False,
          "source": {"path": "later.csv", "format": "csv"}, "schema": {"k": "int32", "at": "timestamp[s]"}}
TOPPED = {"name": "topped", "kind": "aggregate", "input": "positions", "time": "ts", "window": "1m", "hop": "30s",
          "group": ["device_id"], "top": {"n": 3, "by": "lat", "order": "asc", "with_ties": True}}
SESSION_TOP = {**{k: v for k, v in TOPPED.items() if k not in ("window", "hop")}, "session": "30s"}
EVERYTHING = [REPLAY, DERIVED, BOTH, RESPONSES, PAIRED, STATS, SESSIONS, ROUTER, PHASES, HOT, EARLY, LOADED, TOPPED]


@pytest.fixture
def replay(base: Path) -> Path:
    pq.write_table(pa.table({"ts": pa.array([0], US), "v": [1.5]}), base / "replay.parquet")
    return base


def test_a_stream_with_a_source_takes_its_schema_from_the_file(replay: Path) -> None:
    assert parse_document(doc(add(REPLAY)), replay).stream_schema("replay") == pa.schema([("ts", US), ("v", pa.float64())])


def test_a_named_format_overrides_the_extension(replay: Path) -> None:
    (replay / "replay.parquet").rename(replay / "replay.data")
    d = doc(add({**REPLAY, "source": {"path": "replay.data", "format": "parquet"}}))
    assert parse_document(d, replay).stream_schema("replay").names == ["ts", "v"]


def test_a_file_with_a_field_twice_is_refused(base: Path) -> None:
    (base / "twice.csv").write_text("a,b,a\n1,2,3\n")
    d = doc(at(1, source={"path": "twice.csv"}))
    with pytest.raises(TradecraftError, match=r'^analytics\[1\]\.source: ".*twice.csv" has the field "a" twice$'):
        parse_document(d, base)


def test_an_ingest_with_a_schema_needs_no_file_yet(base: Path) -> None:
    tc = parse_document(doc(add(LOADED)), base)
    assert schema_to_json(tc.stream_schema("loaded")) == LOADED["schema"]


def test_derives_see_earlier_derives_and_may_replace_a_field(base: Path) -> None:
    assert parse_document(doc(add(DERIVED)), base).stream_schema("derived") == pa.schema(
        [("label", pa.string()), ("twice", pa.int64()), ("lat", pa.int64())])


def test_a_udf_s_output_schema_is_learned_from_an_empty_batch(base: Path) -> None:
    module = f"tc_udf_{uuid.uuid4().hex}"
    (base / f"{module}.py").write_text(
        "import pyarrow as pa\n"
        "def speed(batch):\n"
        "    return batch.append_column('speed', pa.array([0.0] * batch.num_rows, pa.float64()))\n")
    d = doc(add({"name": "fast", "kind": "transform", "input": "positions", "select": ["ts"], "udf": f"{module}:speed"}))
    assert parse_document(d, base).stream_schema("fast") == pa.schema([("ts", US), ("speed", pa.float64())])


def test_a_clashing_dataset_field_is_prefixed_with_the_dataset_name(base: Path) -> None:
    s = parse_document(doc(add(BOTH)), base).stream_schema("both")
    assert s.names == POSITIONS.names + ["tile", "tiles.tile", "country"]
    assert s.field("tiles.tile").type == pa.float64()


def test_a_stream_join_takes_every_field_of_the_other_stream(base: Path) -> None:
    tc = parse_document(doc(add(RESPONSES, PAIRED)), base)
    s = tc.stream_schema("paired")
    assert s.names == POSITIONS.names + ["responses.ts", "responses.device_id", "ok"]
    assert s.field("responses.ts").type == pa.timestamp("ms") and s.field("ok").nullable
    assert tc.analytic("paired").inputs == ("positions", "responses")
    assert not tc.analytic("responses").output


def test_measures_have_their_types(base: Path) -> None:
    tc = parse_document(doc(add(STATS, SESSIONS)), base)
    assert schema_to_json(tc.stream_schema("stats")) == {
        "window_start": "timestamp[us]", "window_end": "timestamp[us]", "n": "int64", "north": "int64", "ids": "int64",
        "lats": "float64", "avg": "float64", "first": "timestamp[us]", "top": "float64"}
    assert tc.stream_schema("sessions").names == ["window_start", "window_end", "device_id"]


def test_a_top_aggregate_keeps_its_input_s_fields_and_a_rank(base: Path) -> None:
    tc = parse_document(doc(add(TOPPED, {**TOPPED, "name": "again", "input": "hourly", "time": "window_end",
                                         "group": ["country"], "top": {"n": 1, "by": "fixes"}})), base)
    assert tc.stream_schema("topped") == pa.schema([("window_start", US), ("window_end", US), ("device_id", pa.int64()),
                                                    ("ts", US), ("lat", pa.float64()), ("lon", pa.float64()),
                                                    ("rank", pa.int64())])
    assert tc.stream_schema("again").names == ["window_start", "window_end", "country", "hourly.window_start",
                                               "hourly.window_end", "devices", "fixes", "rank"]
    # what a planner reads of every aggregate: a top has no measures of its own
    assert tc.analytic("topped").spec["measures"] == {} and "measures" not in TOPPED


def test_routes_are_read_as_analytic_dot_route(base: Path) -> None:
    tc = parse_document(doc(add(ROUTER, PHASES, HOT, EARLY)), base)
    assert tc.analytic("router").routes == ("high", "low", "rest")
    assert tc.analytic("phases").routes == ("old", "mid", "new")
    assert tc.stream_schema("router.low") == POSITIONS
    assert tc.analytic("phases.new").name == "phases"
    assert tc.analytic("hot").inputs == ("router.high",)
    assert not tc.analytic("router").output and not tc.analytic("positions").output
    assert {a.name for a in tc.outputs()} == {"hourly", "hot", "early"}


def test_output_true_retains_an_intermediate_analytic_and_rejected_reads_do_not_consume(base: Path) -> None:
    d = doc(add({"name": "bad", "kind": "transform", "input": "hourly.rejected"}))
    d["analytics"][2]["output"] = True
    tc = parse_document(d, base)
    assert [a.name for a in tc.outputs()] == ["tiled", "hourly", "bad"]
    assert tc.stream_schema("bad") == tc.stream_schema("countries").append(pa.field("reason", pa.string()))


def test_every_kind_together_validates(replay: Path) -> None:
    tc = parse_document(doc(add(*EVERYTHING)), replay)
    assert len(tc.analytics) == 5 + len(EVERYTHING)
    assert [a.name for a in tc.topological()][:2] == ["positions", "tiles"]


def test_types_and_schemas_round_trip() -> None:
    for name, t in TYPES.items():
        assert parse_type(name, "x") == t and type_name(t) == name
    declared = {"ts": "timestamp[ms]", "n": "int32", "ok": "bool"}
    assert schema_to_json(schema_from_json(declared, "analytics[0].schema")) == declared


# ---- the faults -------------------------------------------------------------------------------

def _set(path: list, value: Any) -> Callable[[dict], None]:
    def change(d: dict) -> None:
        obj = d
        for key in path[:-1]:
            obj = obj[key]
        if value is _DELETE:
            del obj[path[-1]]
        else:
            obj[path[-1]] = value
    return change


_DELETE = object()
A = "analytics"

# (change to the example, the exact JSON path of the fault, text the message must contain)
FAULTS: list[tuple[str, Callable[[dict], Any], str, str]] = [
    ("bad tradecraft name", _set(["tradecraft"], "GPS"), "tradecraft", '"GPS" is not a tradecraft name'),
    ("unknown top-level key", _set(["analytic"], []), "analytic", 'unknown key "analytic"'),
    ("no analytics", _set([A], []), "analytics", "[] is not a non-empty list"),
    ("busy above one", _set(["congestion", "busy"], 1.5), "congestion.busy", "1.5 is not a busy fraction"),
    ("busy zero", _set(["congestion", "busy"], 0), "congestion.busy", "0 is not a busy fraction"),
    ("congestion for", _set(["congestion", "for"], "2 seconds"), "congestion.for", '"2 seconds" is not a duration'),
    ("checkpoint period", _set(["checkpoint"], "soon"), "checkpoint", '"soon" is not a duration'),
    ("checkpoint zero", _set(["checkpoint"], "0s"), "checkpoint", "must be longer than zero"),
    ("analytic not an object", _set([A, 1], "tiles"), "analytics[1]", '"tiles" is not an analytic'),
    ("bad analytic name", at(2, name="Tiled"), "analytics[2].name", '"Tiled" is not an analytic name'),
    ("duplicate name", at(2, name="positions"), "analytics[2].name", '"positions" is already the name of analytics[0]'),
    ("unknown kind", at(2, kind="tranform"), "analytics[2].kind", '"tranform" is not a kind (did you mean "transform"?)'),
    ("unknown key", at(2, inpt="positions"), "analytics[2].inpt", 'unknown key "inpt" for a transform'),
    ("missing key", at(2, input=None), "analytics[2].input", 'a transform needs "input"'),
    ("output not bool", at(2, output="yes"), "analytics[2].output", '"yes" is not true or false'),
    ("unknown reference", at(2, input="positons"), "analytics[2].input", 'no analytic is named "positons" (did you mean "positions"?)'),
    ("cycle", at(2, input="countries"), "analytics[2].input",
     '"countries" makes a cycle: "tiled" reads "countries", which reads "tiled"'),
    ("self cycle", at(4, input="hourly"), "analytics[4].input", '"hourly" reads "hourly"'),
    ("bad type", _set([A, 0, "schema", "lat"], "float"), "analytics[0].schema.lat", '"float" is not a type'),
    ("bad field name", _set([A, 0, "schema", "2d"], "int64"), "analytics[0].schema.2d", '"2d" is not a field name'),
    ("bad lateness", at(0, lateness="5 sec"), "analytics[0].lateness", '"5 sec" is not a duration'),
    ("lateness without time", at(0, time=None), "analytics[0].lateness", '"5s": lateness needs a "time" field'),
    ("time not a field", at(0, time="tss"), "analytics[0].time", 'field "tss" is not in the schema of "positions"'),
    ("time not a timestamp", at(0, time="lat"), "analytics[0].time", 'field "lat" of "positions" is float64'),
    ("stream without schema", at(0, schema=None), "analytics[0].schema", 'a stream needs a "schema"'),
    ("rate not positive", at(0, source={"path": "p.csv", "rate": 0}), "analytics[0].source.rate", "0 is not a rate"),
    ("follow parquet", at(0, source={"path": "p.parquet", "follow": True}), "analytics[0].source.follow", "not parquet"),
    ("follow not bool", at(0, source={"path": "p.csv", "follow": "yes"}), "analytics[0].source.follow", '"yes" is not true'),
    ("unknown source key", at(1, source={"path": "tiles.parquet", "rate": 5}), "analytics[1].source.rate",
     'unknown key "rate" for the source of an ingest'),
    ("ingest without source", at(1, source=None), "analytics[1].source", 'an ingest needs "source"'),
    ("missing file", at(1, source={"path": "nowhere.parquet"}), "analytics[1].source.path", "nowhere.parquet\" does not exist"),
    ("bad format", at(1, source={"path": "tiles.parquet", "format": "xls"}), "analytics[1].source.format", '"xls" is not a format'),
    ("unknown extension", at(1, source={"path": "tiles.xls"}), "analytics[1].source.path", '"tiles.xls"'),
    ("sqlite without table", at(1, source={"path": "t.db"}), "analytics[1].source.table", "a sqlite source needs one"),
    ("bad every", at(1, every="0s"), "analytics[1].every", '"0s" must be longer than zero'),
    ("offset without every", at(1, every=None, offset="5m"), "analytics[1].offset", '"5m": an offset shifts "every"'),
    ("run_on_start not bool", at(1, run_on_start=1), "analytics[1].run_on_start", "1 is not true or false"),
    ("bad derive", _set([A, 2, "derive", "tile"], "floor(latt + 90)"), "analytics[2].derive.tile",
     'unknown field "latt" at position 6'),
    ("derive syntax", _set([A, 2, "derive", "tile"], "floor(lat +)"), "analytics[2].derive.tile", '"floor(lat +)"'),
    ("where not bool", at(2, where="lat + 1"), "analytics[2].where", '"lat + 1" is float64; a filter must be true or false'),
    ("in list of another type", at(2, where="device_id in (7, 'x')"), "analytics[2].where",
     "operator \"in\": 'x' is not a value of int64 at position 17 in \"device_id in (7, 'x')\""),
    ("in list not literals", at(2, where="lat not in (lon, 1)"), "analytics[2].where",
     'operator "not in" takes only literals in its list at position 12'),
    ("select unknown", at(2, select=["tile", "speed"]), "analytics[2].select[1]", 'field "speed" is not in'),
    ("udf missing module", at(2, udf="no_such_module_xyz:f"), "analytics[2].udf", 'no module "no_such_module_xyz" in'),
    ("udf from the standard library", at(2, udf="os:getcwd"), "analytics[2].udf", '"os:getcwd": no module "os" in'),
    ("udf_path without udf", at(2, udf_path="."), "analytics[2].udf_path", '".": a udf_path needs a "udf"'),
    ("udf malformed", at(2, udf="just_a_name"), "analytics[2].udf", '"just_a_name" is not a UDF'),
    ("join on missing field", at(3, on={"tyle": "tile"}), "analytics[3].on",
     'field "tyle" is not in the output of "tiled" (did you mean "tile"?) (it has: ts, device_id, lat, lon, tile)'),
    ("join on missing dataset field", at(3, on={"tile": "tyle"}), "analytics[3].on.tile", 'field "tyle" is not in the output of "tiles"'),
    ("join on unlike types", at(3, on={"device_id": "tile"}), "analytics[3].on.device_id",
     'field "device_id" of "tiled" is int64 but field "tile" of "tiles" is float64'),
    ("join fields unknown", at(3, fields=["countri"]), "analytics[3].fields[0]", 'field "countri" is not in the output of "tiles"'),
    ("join how", at(3, how="outer"), "analytics[3].how", '"outer" is not a join'),
    ("join dataset not ingest", at(3, dataset="positions"), "analytics[3].dataset", '"positions" is not a dataset'),
    ("join both sides", at(3, **{"with": "positions"}), "analytics[3].with", 'not both'),
    ("join with stream takes no fields", at(3, dataset=None, **{"with": "positions"}), "analytics[3].fields",
     'unknown key "fields" for a join with a stream'),
    ("stream read as dataset", at(2, input="tiles"), "analytics[2].input", '"tiles" is a dataset'),
    ("window and session", at(4, session="5m"), "analytics[4].session", 'exactly one of "window"'),
    ("neither window nor session", at(4, window=None), "analytics[4].window", 'exactly one of "window"'),
    ("hop not dividing", at(4, hop="7m"), "analytics[4].hop", '"7m" must divide the window ("1h")'),
    ("hop with session", at(4, window=None, session="5m", hop="1m"), "analytics[4].hop", '"1m": session windows do not hop'),
    ("aggregate time", at(4, time="country"), "analytics[4].time", 'field "country" of "countries" is string'),
    ("group unknown", at(4, group=["cuntry"]), "analytics[4].group[0]", 'field "cuntry" is not in the output of "countries"'),
    ("unknown measure", _set([A, 4, "measures", "devices"], "median(lat)"), "analytics[4].measures.devices",
     '"median(lat)" is not a measure'),
    ("measure field", _set([A, 4, "measures", "devices"], "sum(speed)"), "analytics[4].measures.devices", 'field "speed"'),
    ("sum of strings", _set([A, 4, "measures", "devices"], "sum(country)"), "analytics[4].measures.devices",
     '"sum(country)": field "country" is string; sum needs a number'),
    ("count_if not bool", _set([A, 4, "measures", "fixes"], "count_if(lat)"), "analytics[4].measures.fixes", "count_if needs true"),
    ("measure clash", _set([A, 4, "measures", "country"], "count()"), "analytics[4].measures.country", '"country" is already a field'),
    ("top and measures", add({**TOPPED, "measures": {"n": "count()"}}), "analytics[5].measures",
     'an aggregate takes "measures" (one row per window and group) or "top" (rows of its input), not both'),
    ("neither top nor measures", at(4, measures=None), "analytics[4].measures", 'an aggregate needs "measures" (or "top")'),
    ("top not an object", add({**TOPPED, "top": 3}), "analytics[5].top", "3 is not an object"),
    ("top with session", add({**SESSION_TOP}), "analytics[5].top", 'session windows take "measures", not "top"'),
    ("session gap zero", add({**SESSIONS, "session": "0s"}), "analytics[5].session", '"0s"'),
    ("session gap not a duration", add({**SESSIONS, "session": 30}), "analytics[5].session", "30"),
    ("top without n", add({**TOPPED, "top": {"by": "lat"}}), "analytics[5].top.n", 'top needs "n", how many rows'),
    ("top n zero", add({**TOPPED, "top": {"n": 0, "by": "lat"}}), "analytics[5].top.n",
     "0 is not a number of rows (a whole number from 1 to 10,000)"),
    ("top n not whole", add({**TOPPED, "top": {"n": 2.5, "by": "lat"}}), "analytics[5].top.n", "2.5 is not a number"),
    ("top n too many", add({**TOPPED, "top": {"n": 10_001, "by": "lat"}}), "analytics[5].top.n", "10001 is not a number"),
    ("top by unknown", add({**TOPPED, "top": {"n": 1, "by": "latt"}}), "analytics[5].top.by",
     'field "latt" is not in the output of "positions" (did you mean "lat"?)'),
    ("top without by", add({**TOPPED, "top": {"n": 1}}), "analytics[5].top.by", 'top needs "by", the field to rank'),
    ("top order", add({**TOPPED, "top": {"n": 1, "by": "lat", "order": "up"}}), "analytics[5].top.order",
     '"up" is not an order ("desc": the largest first, or "asc")'),
    ("top with_ties", add({**TOPPED, "top": {"n": 1, "by": "lat", "with_ties": "yes"}}), "analytics[5].top.with_ties",
     '"yes" is not true or false'),
    ("top unknown key", add({**TOPPED, "top": {"n": 1, "by": "lat", "ties": True}}), "analytics[5].top.ties",
     'unknown key "ties" for top (it takes: n, by, order, with_ties)'),
    ("top group rank", add({"name": "ranked", "kind": "transform", "input": "positions", "derive": {"rank": "lat"}},
                           {**TOPPED, "input": "ranked", "group": ["rank"]}),
     "analytics[6].group[0]", '"rank" clashes with the rank field of the same name'),
    ("director key value", add({**ROUTER, "routes": {"abc": "x"}}), "analytics[5].routes.abc",
     '"abc" is not a value of key "device_id", which is int64'),
    ("director key field", add({**ROUTER, "key": "dev"}), "analytics[5].key", 'field "dev" is not in the output of "positions"'),
    ("director route name", add({**ROUTER, "default": "Rest"}), "analytics[5].default", '"Rest" is not a route name'),
    ("director read by name", add(ROUTER, {"name": "t", "kind": "transform", "input": "router"}), "analytics[6].input",
     '"router" is a director: read one of its routes (router.high, router.low, router.rest)'),
    ("unknown route", add(ROUTER, {"name": "t", "kind": "transform", "input": "router.medium"}), "analytics[6].input",
     '"router" has no route "medium"'),
    ("route of a transform", at(3, stream="tiled.high"), "analytics[3].stream", '"tiled" has no route "high" (it has no routes'),
    ("manager descending", add({**PHASES, "routes": [{"until": "2024-06-01T00:00:00Z", "to": "a"},
                                                     {"until": "2024-01-01T00:00:00Z", "to": "b"}, {"to": "c"}]}),
     "analytics[5].routes[1].until", '"2024-01-01T00:00:00Z" is not after the route before it'),
    ("manager last has until", add({**PHASES, "routes": [{"until": "2024-06-01T00:00:00Z", "to": "a"}]}),
     "analytics[5].routes[0].until", '"2024-06-01T00:00:00Z": the last route takes what is left'),
    ("manager bad timestamp", add({**PHASES, "routes": [{"until": "June", "to": "a"}, {"to": "b"}]}),
     "analytics[5].routes[0].until", '"June" is not an ISO-8601 timestamp'),
    ("route named rejected", add({**PHASES, "routes": [{"to": "rejected"}]}), "analytics[5].routes[0].to", '"rejected" names the rows an analytic could not process'),
]


@pytest.mark.parametrize(("change", "path", "says"), [f[1:] for f in FAULTS], ids=[f[0] for f in FAULTS])
def test_a_fault_names_its_json_path_and_value(base: Path, change: Callable[[dict], Any], path: str, says: str) -> None:
    with pytest.raises(TradecraftError) as e:
        parse_document(doc(change), base)
    assert e.value.path == path
    assert str(e.value).startswith(f"{path}: ")
    assert says in str(e.value)
    assert e.value.exit_code == 2


def _paths(obj: Any, path: tuple = ()) -> list[tuple]:
    """Every JSON path in `obj`, as key tuples."""
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    return [path] + [p for k, v in items for p in _paths(v, (*path, k))]


_EVERY_PATH = _paths(doc(add(*EVERYTHING)))[1:]
_JUNK = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12),
                  st.sampled_from(["positions", "router.high", "x.rejected", "1h", "ts", "count()", "lat > 0"]),
                  st.lists(st.sampled_from(["ts", "lat", 1]), max_size=3),
                  st.dictionaries(st.sampled_from(["ts", "to", "until", "path", "1"]), st.sampled_from(["ts", 1]),
                                  max_size=2))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(_EVERY_PATH), junk=_JUNK, remove=st.booleans())
def test_any_wrong_value_anywhere_is_a_tradecraft_error_never_a_crash(replay: Path, where: tuple, junk: Any,
                                                                       remove: bool) -> None:
    d = doc(add(*EVERYTHING))
    parent = d
    for key in where[:-1]:
        parent = parent[key]
    if remove and isinstance(parent, dict):
        del parent[where[-1]]
    else:
        parent[where[-1]] = junk
    try:
        parse_document(d, replay)
    except TradecraftError as e:
        assert e.path.split(".")[0].split("[")[0] in ("tradecraft", "congestion", "analytics")


@pytest.mark.parametrize(("text", "says"), [(b"{", "not valid JSON"), ("[1]", "is a JSON object, not [1]"),
                                            (b"\xff", "UTF-8"), ("[" * 100_000, "nested too deeply")])
def test_a_document_that_is_not_an_object_is_refused(text: str | bytes, says: str) -> None:
    with pytest.raises(TradecraftError, match=re.escape(says)):
        parse_document(text)


# ---- every fault at once ----------------------------------------------------------------------

def _faults(d: dict, base: Path, allowed: Any = None) -> list[tuple[str, str]]:
    """(path, message) of every fault `parse_document` reports for `d`, in its order."""
    with pytest.raises(TradecraftError) as e:
        parse_document(d, base, allowed)
    faults = getattr(e.value, "faults", (e.value,))
    assert str(e.value).split("\n") == [str(f) for f in faults], "one line per fault, in the same order"
    assert e.value.path == faults[0].path and e.value.exit_code == 2
    return [(f.path, f.detail) for f in faults]


def test_a_join_missing_how_with_a_bad_on_field_reports_both(base: Path) -> None:
    found = _faults(doc(at(3, how=None, on={"tyle": "tile"})), base)
    assert [p for p, _ in found] == ["analytics[3].how", "analytics[3].on"]
    assert 'needs "how"' in found[0][1] and 'field "tyle" is not in the output of "tiled"' in found[1][1]


def test_faults_of_every_analytic_come_in_document_order_each_with_its_path(base: Path) -> None:
    def change(d: dict) -> None:
        d["tradecraft"] = "GPS"
        d["congestion"] = {"busy": 2, "fo": "1s"}
        d["analytics"][4].update(window="1 hour", group=["cuntry", "country"], measures={
            "n": "count()", "s": "sum(country)", "m": "median(lat)", "c": "count_if(lat)"})
        # "twice" is refused and "thrice" reads it (not typed, so not refused for it); neither is
        # selected, so what "tiled" makes is still known, and what reads it is checked
        d["analytics"][2].update(derive={"tile": "floor(lat)", "twice": "tyle * 2", "thrice": "twice * 3"},
                                 where="lon + 1", select=["ts", "device_id", "lat", "lon", "tile"])
        d["analytics"][0]["lateness"] = "5 sec"
    found = _faults(doc(change), base)
    assert [p for p, _ in found] == [
        "tradecraft", "congestion.fo", "congestion.busy",
        "analytics[0].lateness",
        "analytics[2].derive.twice", "analytics[2].where",
        "analytics[4].window", "analytics[4].group[0]", "analytics[4].measures.s", "analytics[4].measures.m",
        "analytics[4].measures.c"]
    assert found[4][1].startswith('unknown field "tyle"')


def test_a_refused_derive_leaves_the_output_unknown(base: Path) -> None:
    found = _faults(doc(every(_set([A, 2, "derive", "tile"], "floor(latt)"), at(3, how="outer"), at(4, time="lat"))),
                    base)
    assert [p for p, _ in found] == ["analytics[2].derive.tile", "analytics[3].how"]


def test_what_reads_a_refused_analytic_is_not_refused_for_it(base: Path) -> None:
    """A compiler's rule: no fault that only follows from another. "tiled" is refused, so the join
    and the aggregate after it cannot be typed, and are not (their own keys are still checked)."""
    found = _faults(doc(every(at(2, input="positons"), at(3, how="outer"), at(4, output="yes"))), base)
    assert [p for p, _ in found] == ["analytics[2].input", "analytics[3].how", "analytics[4].output"]


def test_a_refused_source_is_never_read_while_other_faults_are_found(base: Path) -> None:
    from hallelujah.allowed import Allowed
    allowed = Allowed.of([], [str(base / "elsewhere")])
    found = _faults(doc(every(at(1, source={"path": "tiles.parquet", "rate": 5}), at(2, where="lat"))), base)
    assert [p for p, _ in found] == ["analytics[1].source.rate", "analytics[2].where"]
    assert [p for p, _ in _faults(doc(at(2, where="lat")), base, allowed)] == [
        "analytics[1].source.path", "analytics[2].where"]


def test_a_thousand_faults_are_listed_up_to_a_hundred(base: Path) -> None:
    d = doc(add(*({"name": f"t{i}", "kind": "transform", "input": "positions", "where": "lat"} for i in range(1000))))
    with pytest.raises(TradecraftFaults) as e:
        parse_document(d, base)
    lines = str(e.value).split("\n")
    assert len(e.value.faults) == 1000 and len(lines) == 101
    assert lines[0].startswith("analytics[5].where: ") and lines[-1] == "... and 900 more faults"


def _has(obj: Any, key: Any) -> bool:
    return isinstance(obj, dict) and key in obj or isinstance(obj, list) and isinstance(key, int) and key < len(obj)


def _at(obj: Any, keys: tuple) -> Any:
    """What `keys` lead to in `obj`, or None where an earlier change took the way away."""
    for key in keys:
        if not _has(obj, key):
            return None
        obj = obj[key]
    return obj


_CHANGES = st.lists(st.tuples(st.sampled_from(_EVERY_PATH), _JUNK, st.booleans()), min_size=2, max_size=6)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=_CHANGES)
def test_several_wrong_values_are_each_reported_never_a_crash(replay: Path, changes: list[tuple]) -> None:
    d = doc(add(*EVERYTHING))
    for where, junk, remove in changes:
        parent = _at(d, where[:-1])
        if isinstance(parent, dict) and remove:
            parent.pop(where[-1], None)
        elif isinstance(parent, dict) or isinstance(parent, list) and _has(parent, where[-1]):
            parent[where[-1]] = junk
    try:
        parse_document(d, replay)
    except TradecraftError as e:
        faults = getattr(e, "faults", (e,))
        paths = [f.path for f in faults]
        assert all(p.split(".")[0].split("[")[0] in ("tradecraft", "congestion", "analytics") for p in paths)
        positions = [int(p.split("[")[1].split("]")[0]) if p.startswith("analytics[") else -1 for p in paths]
        assert positions == sorted(positions)
        assert len(set(zip(paths, (f.detail for f in faults)))) == len(faults)


# ---- the JSON Schema for editors --------------------------------------------------------------

def check(instance: Any, schema: Any, root: dict) -> list[str]:
    """A tiny draft 2020-12 checker for the keywords our schema uses: the faults found, [] if valid."""
    if schema is True:
        return []
    if schema is False:
        return ["false schema"]
    faults: list[str] = []
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        faults += check(instance, target, root)
    kinds = {"object": dict, "array": list, "string": str, "boolean": bool, "number": (int, float), "integer": int}
    if "type" in schema:
        t = schema["type"]
        ok = isinstance(instance, kinds[t]) and not (t in ("number", "integer") and isinstance(instance, bool))
        if not ok:
            return faults + [f"{instance!r} is not {t}"]
    if "enum" in schema and instance not in schema["enum"]:
        faults.append(f"{instance!r} not in enum")
    if "const" in schema and instance != schema["const"]:
        faults.append(f"{instance!r} != const")
    if isinstance(instance, str):
        if "pattern" in schema and not re.search(schema["pattern"], instance):
            faults.append(f"{instance!r} does not match {schema['pattern']}")
        if len(instance) < schema.get("minLength", 0):
            faults.append("too short")
    if isinstance(instance, (int, float)) and not isinstance(instance, bool):
        if "exclusiveMinimum" in schema and not instance > schema["exclusiveMinimum"]:
            faults.append("too small")
        if "maximum" in schema and not instance <= schema["maximum"]:
            faults.append("too large")
    if isinstance(instance, dict):
        props = schema.get("properties", {})
        faults += [f"missing {k}" for k in schema.get("required", []) if k not in instance]
        faults += [f"{k} needs {n}" for k, needs in schema.get("dependentRequired", {}).items() if k in instance
                   for n in needs if n not in instance]
        if len(instance) < schema.get("minProperties", 0):
            faults.append("too few properties")
        for k, v in instance.items():
            if "propertyNames" in schema:
                faults += check(k, schema["propertyNames"], root)
            if k in props:
                faults += check(v, props[k], root)
            elif "additionalProperties" in schema:
                faults += [f"{k}: {f}" for f in check(v, schema["additionalProperties"], root)]
    if isinstance(instance, list):
        if len(instance) < schema.get("minItems", 0):
            faults.append("too few items")
        if schema.get("uniqueItems") and len({json.dumps(x) for x in instance}) < len(instance):
            faults.append("items not unique")
        for item in instance if "items" in schema else []:
            faults += check(item, schema["items"], root)
    for sub in schema.get("allOf", []):
        faults += check(instance, sub, root)
    if "anyOf" in schema and all(check(instance, s, root) for s in schema["anyOf"]):
        faults.append("no anyOf matches")
    if "oneOf" in schema and sum(not check(instance, s, root) for s in schema["oneOf"]) != 1:
        faults.append("not exactly one oneOf matches")
    if "not" in schema and not check(instance, schema["not"], root):
        faults.append(f"{instance!r} matches a not")
    if "if" in schema and not check(instance, schema["if"], root):
        faults += check(instance, schema.get("then", True), root)
    return faults


def validate(instance: Any) -> list[str]:
    schema = json_schema()
    return check(instance, schema, schema)


def test_the_json_schema_is_draft_2020_12_and_a_fresh_copy() -> None:
    s = json_schema()
    assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    s["title"] = "changed"
    assert json_schema()["title"] != "changed"


def test_the_json_schema_accepts_every_valid_example() -> None:
    examples = [doc(), doc(add(*EVERYTHING)),
                doc(add({"name": "fast", "kind": "transform", "input": "positions", "udf": "m.sub:f", "select": ["ts"]})),
                doc(add({"name": "r", "kind": "stream", "source": {"path": "x.csv", "follow": True, "rate": 5}},
                        {"name": "s", "kind": "aggregate", "input": "r", "time": "ts", "session": "30s",
                         "measures": {"n": "count()", "m": "count_if(a > 1)"}},
                        {"name": "j", "kind": "join", "stream": "positions", "with": "r", "on": {"a": "b"},
                         "time": {"stream": "ts", "with": "ts"}, "window": "1h30m", "how": "inner"}))]
    examples[0]["$schema"] = "./tradecraft.schema.json"
    for example in examples:
        assert validate(example) == []


@pytest.mark.parametrize(("name", "change"), [
    ("unknown top key", _set(["analytic"], [])),
    ("no analytics", _set([A], [])),
    ("bad name", _set(["tradecraft"], "GPS")),
    ("busy", _set(["congestion", "busy"], 2)),
    ("unknown kind", at(2, kind="tranform")),
    ("unknown key", at(2, inpt="x")),
    ("missing input", at(2, input=None)),
    ("bad type", _set([A, 0, "schema", "lat"], "float")),
    ("bad duration", at(4, window="1 hour")),
    ("window and session", at(4, session="1m")),
    ("join both sides", at(3, **{"with": "positions"})),
    ("how", at(3, how="outer")),
    ("measure", _set([A, 4, "measures", "fixes"], "median(x)")),
    ("output", at(0, output="yes")),
    ("stream without schema", at(0, schema=None)),
    ("lateness without time", at(0, time=None)),
    ("route named rejected", add({**ROUTER, "default": "rejected"})),
    ("top and measures", add({**TOPPED, "measures": {"n": "count()"}})),
    ("neither top nor measures", at(4, measures=None)),
    ("top without n", add({**TOPPED, "top": {"by": "lat"}})),
    ("top n zero", add({**TOPPED, "top": {"n": 0, "by": "lat"}})),
    ("top with session", add(SESSION_TOP)),
    ("top order", add({**TOPPED, "top": {"n": 1, "by": "lat", "order": "up"}})),
])
def test_the_json_schema_refuses_structural_faults(name: str, change: Callable[[dict], Any]) -> None:
    assert validate(doc(change)) != []


def test_the_json_schema_is_valid_for_a_real_validator_too() -> None:
    jsonschema = pytest.importorskip("jsonschema")  # not a dependency: checked where it happens to be installed
    jsonschema.Draft202012Validator.check_schema(json_schema())
    validator = jsonschema.Draft202012Validator(json_schema())
    assert validator.is_valid(doc(add(*EVERYTHING)))
    assert not validator.is_valid(doc(at(2, kind="tranform")))


# ---- what a document may reach (hallelujah.allowed) --------------------------------------------

def test_a_udf_that_exits_or_interrupts_fails_the_document_not_the_process(base: Path) -> None:
    (base / "hj_rude.py").write_text("import sys\ndef bye(batch):\n    sys.exit(4)\n"
                                     "def stop(batch):\n    raise KeyboardInterrupt\n")
    (base / "hj_rude_import.py").write_text("raise SystemExit('at import')\n")
    for udf, says in (("hj_rude:bye", "raised SystemExit: 4"), ("hj_rude:stop", "raised KeyboardInterrupt"),
                      ("hj_rude_import:f", "raised SystemExit: at import"),
                      ("hj_rude:nothing", 'no function "nothing"')):
        with pytest.raises(TradecraftError, match=re.escape(says)) as e:
            parse_document(doc(at(2, udf=udf)), base)
        assert e.value.path == "analytics[2].udf"


def test_allowed_limits_udf_dirs_and_source_roots_by_real_path(base: Path,
                                                               tmp_path_factory: pytest.TempPathFactory) -> None:
    from hallelujah.allowed import Allowed
    outside = tmp_path_factory.mktemp("outside")
    pq.write_table(pa.table({"tile": [1.0], "country": ["fr"], "name": ["a"]}, schema=TILES), outside / "t.parquet")
    (base / "escape").symlink_to(outside)
    (base / "hj_ok.py").write_text("def same(batch):\n    return batch\n")
    allowed = Allowed.of([str(base)], [str(base)], [str(base / "data")])
    with_udf = doc(at(2, udf="hj_ok:same"))
    assert parse_document(with_udf, base, allowed).stream_schema("tiled").names[-1] == "tile"
    for path in (str(outside / "t.parquet"), "escape/t.parquet", "../" + outside.name + "/t.parquet",
                 "data/catalog.db"):
        with pytest.raises(TradecraftError, match="is not under a directory this congregation reads sources") as e:
            parse_document(doc(at(1, source={"path": path, "format": "parquet"})), base, allowed)
        assert e.value.path == "analytics[1].source.path" and json.dumps(path) in str(e.value)
    for udf_path in (str(outside), "escape", ".."):
        with pytest.raises(TradecraftError, match="is not a directory this congregation loads UDFs") as e:
            parse_document(doc(at(2, udf="hj_ok:same", udf_path=udf_path)), base, allowed)
        assert e.value.path == "analytics[2].udf_path"
    with pytest.raises(TradecraftError, match="its operator allows: none"):
        parse_document(with_udf, base, Allowed.of([], [str(base)]))


def test_a_stream_with_a_bad_type_leaves_what_selects_its_fields_unrefused(base: Path) -> None:
    """Its schema is refused, so its fields are untold: a select of them is not a fault of its own."""
    d = {"tradecraft": "t", "analytics": [
        {"name": "orders", "kind": "stream", "schema": {"id": "int64", "qty": "int65"}},
        {"name": "some", "kind": "transform", "input": "orders", "select": ["id", "item"]}]}
    assert [p for p, _ in _faults(d, base)] == ["analytics[0].schema.qty"]
