"""The `hallelujah` command line as a user runs it: a subprocess against a real congregation.

Exit codes are the contract: 0 success, 2 the user's input (one line naming the field at fault,
never a traceback), 1 the system. Outputs are compared with pyarrow references computed here.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

import hallelujah

# The console script installed beside this interpreter, as a user runs it (`python -m hallelujah.cli`
# would import the module and exit 0 without running main(): it has no __main__ guard).
HALLELUJAH = Path(sys.executable).with_name("hallelujah")
if not HALLELUJAH.exists():
    HALLELUJAH = Path(shutil.which("hallelujah") or "hallelujah")
# One BLAS thread per CLI process: they are many and short-lived, and on 2 cores start ~20 % sooner.
ENV = {**{k: v for k, v in os.environ.items() if k != "HALLELUJAH_AT"},
       "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


def cli(*args: str, at: str | None = None, cwd: Path | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    command = [str(HALLELUJAH), *(["--at", at] if at else []), *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=ENV, timeout=timeout)


def cli_many(calls: list[tuple[str, ...]], **kw: Any) -> list[subprocess.CompletedProcess[str]]:
    """Several independent CLI calls at once (each is mostly interpreter start-up)."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        return list(pool.map(lambda args: cli(*args, **kw), calls))


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"{result.args} exited {result.returncode}: {result.stderr}"
    assert "Traceback" not in result.stderr
    return result


def refused(result: subprocess.CompletedProcess[str], path: str | None = None) -> str:
    """Exit 2, one line on stderr naming `path` once, no traceback; returns the message."""
    what = " ".join(result.args[1:])
    message = result.stderr.strip()
    assert result.returncode == 2, f"{what}: exit {result.returncode}, expected 2; stderr: {result.stderr!r}"
    assert "Traceback" not in result.stderr + result.stdout, f"{what}: a traceback: {result.stderr}"
    assert message and "\n" not in message, f"{what}: not one line: {result.stderr!r}"
    if path is not None:
        assert message.count(f"{path}: ") == 1, f"{what}: the message does not name {path} once: {message!r}"
    return message


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def assert_rows_match(got: list[dict], expected: pa.Table, what: str, floats: tuple[str, ...] = ()) -> None:
    """Rows as dicts against a table: exact, but floats to 1e-12 (text round trips)."""
    want = expected.to_pylist()
    assert len(got) == len(want), f"{what}: {len(got)} rows, expected {len(want)}"
    for i, (g, e) in enumerate(zip(got, want)):
        assert list(g) == list(e), f"{what}: row {i} has fields {list(g)}, expected {list(e)}"
        for name in e:
            same = g[name] == pytest.approx(e[name], rel=1e-12) if name in floats else g[name] == e[name]
            assert same, f"{what}: row {i} field {name}: {g[name]!r}, expected {e[name]!r}"


# ---- a document, its data and its reference --------------------------------------------------

def orders(start: int, n: int) -> pa.Table:
    rng = np.random.default_rng(start + 1)
    return pa.table({"id": np.arange(start, start + n, dtype=np.int64),
                     "qty": rng.integers(-2, 10, n),
                     "price": rng.integers(1, 100_000, n) / 100,
                     "item": pa.array([f"item-{i % 17}" for i in range(start, start + n)])})


def priced(table: pa.Table) -> pa.Table:
    kept = table.filter(pc.greater(table["qty"], 0))
    return pa.table({"id": kept["id"], "item": kept["item"],
                     "total": kept["qty"].to_numpy() * kept["price"].to_numpy()})


def document(name: str = "shop") -> dict:
    return {"tradecraft": name, "analytics": [
        {"name": "orders", "kind": "stream",
         "schema": {"id": "int64", "qty": "int64", "price": "float64", "item": "string"}},
        {"name": "priced", "kind": "transform", "input": "orders", "derive": {"total": "qty * price"},
         "where": "qty > 0", "select": ["id", "item", "total"]}]}


def write_json(path: Path, obj: Any) -> Path:
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
    return path


def list_json(at: str) -> list[dict]:
    return json.loads(ok(cli("list", "--json", at=at)).stdout)


def retained_rows(db: Any, tradecraft: str) -> dict[str, int]:
    """Retained log (as `describe` names it) -> rows it holds."""
    info = db.describe(tradecraft)
    return {name: log["rows"] for a in info["tradecrafts"][0]["analytics"] for name, log in a["retained"].items()}


# ---- the life of a tradecraft ------------------------------------------------------------------

def test_cli_submits_lists_describes_publishes_streams_and_cancels(congregation, tmp_path):
    at = congregation.address
    doc = write_json(tmp_path / "shop.json", document())
    first, second, third = orders(0, 3_000), orders(3_000, 2_000), orders(5_000, 1_000)
    pq.write_table(first, tmp_path / "first.parquet")
    pa_csv.write_csv(second, tmp_path / "second.csv")
    with pa.ipc.new_file(tmp_path / "third.arrow", third.schema) as f:
        f.write_table(third)
    expected = priced(pa.concat_tables([first, second, third]))

    assert "shop" in ok(cli("submit", str(doc), at=at)).stdout
    listed, described = cli_many([("list", "--json"), ("describe", "shop", "--json")], at=at)
    assert [(t["name"], t["state"]) for t in json.loads(ok(listed).stdout)] == [("shop", "running")]

    info = json.loads(ok(described).stdout)
    (tc,) = info["tradecrafts"]
    assert [(a["name"], a["kind"]) for a in tc["analytics"]] == [("orders", "stream"), ("priced", "transform")]
    assert tc["analytics"][1]["schema"] == {"id": "int64", "item": "string", "total": "float64"}

    ok(cli("publish", "shop/orders", str(tmp_path / "first.parquet"), at=at))
    ok(cli("publish", "shop/orders", str(tmp_path / "second.csv"), at=at))
    ok(cli("publish", "shop/orders", str(tmp_path / "third.arrow"), "--end", at=at))

    limited, everything, as_parquet = cli_many([
        ("stream", "shop/priced", "--from-start", "--limit", "25"),
        ("stream", "shop/priced", "--from-start"),
        ("stream", "shop/orders", "--from-start", "--format", "parquet", "--output", str(tmp_path / "o.parquet")),
    ], at=at)
    assert_rows_match(json_lines(ok(limited).stdout), expected.slice(0, 25), "stream --limit 25",
                      floats=("total",))
    assert_rows_match(json_lines(ok(everything).stdout), expected, "stream --from-start", floats=("total",))
    ok(as_parquet)
    assert pq.read_table(tmp_path / "o.parquet").equals(pa.concat_tables([first, second, third]))

    assert "shop" in ok(cli("cancel", "shop", at=at)).stdout
    listed, again = cli_many([("list", "--json"), ("cancel", "shop")], at=at)
    assert json.loads(ok(listed).stdout) == []
    refused(again)


# ---- documents that are refused ------------------------------------------------------------

def _set(path: list, value: Any) -> Callable[[dict], None]:
    def edit(doc: dict) -> None:
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


def _add(*analytics: dict, ts: bool = False) -> Callable[[dict], None]:
    def edit(doc: dict) -> None:
        if ts:
            doc["analytics"][0]["schema"]["ts"] = "timestamp[us]"
        doc["analytics"].extend(analytics)
    return edit


def _drop(key: str) -> Callable[[dict], None]:
    return lambda doc: doc.pop(key)


# (what is wrong, the edit to a valid document, the JSON path the message must name)
INVALID: list[tuple[str, Callable[[dict], None], str]] = [
    ("no name", _drop("tradecraft"), "tradecraft"),
    ("an unknown type", _set(["analytics", 0, "schema", "qty"], "int65"), "analytics[0].schema.qty"),
    ("a source file that does not exist, and no schema",
     _set(["analytics", 0], {"name": "orders", "kind": "stream", "source": {"path": "missing.parquet"}}),
     "analytics[0].source.path"),
    ("an unknown input", _set(["analytics", 1, "input"], "ordres"), "analytics[1].input"),
    ("an unknown kind", _set(["analytics", 1, "kind"], "transfrom"), "analytics[1].kind"),
    ("an unknown key", _set(["analytics", 1, "filter"], "qty > 0"), "analytics[1].filter"),
    ("an unknown field in an expression", _set(["analytics", 1, "derive", "total"], "qty * cost"),
     "analytics[1].derive.total"),
    ("an expression syntax error", _set(["analytics", 1, "derive", "total"], "qty *"),
     "analytics[1].derive.total"),
    ("a filter that is not boolean", _set(["analytics", 1, "where"], "qty + 1"), "analytics[1].where"),
    ("selecting a missing field", _set(["analytics", 1, "select"], ["id", "colour"]), "analytics[1].select[1]"),
    ("a cycle", _add({"name": "a", "kind": "transform", "input": "b"},
                     {"name": "b", "kind": "transform", "input": "a"}), "analytics[2].input"),
    ("a director keyed by a float", _add({"name": "router", "kind": "director", "input": "orders",
                                          "key": "price", "routes": {"1": "one"}, "default": "rest"}),
     "analytics[2].key"),
    ("reading a director without naming a route",
     _add({"name": "router", "kind": "director", "input": "orders", "key": "qty",
           "routes": {"1": "one"}, "default": "rest"},
          {"name": "after", "kind": "transform", "input": "router"}), "analytics[3].input"),
    ("manager boundaries out of order",
     _add({"name": "clock", "kind": "manager", "input": "orders", "time": "ts", "routes": [
         {"until": "2024-05-02T00:00:00Z", "to": "a"}, {"until": "2024-05-01T00:00:00Z", "to": "b"},
         {"to": "c"}]}, ts=True), "analytics[2].routes[1].until"),
]

# Expressions that try to run code: refused at parse, never evaluated.
ATTACKS: list[tuple[str, str]] = [
    ("derive", "__import__('os').system('touch PWNED')"),
    ("where", "().__class__"),
    ("derive", "open('PWNED', 'w')"),
]


def test_cli_refuses_invalid_documents_and_code_in_expressions_with_exit_2_changing_nothing(
        congregation, tmp_path):
    at = congregation.address
    hallelujah.connect(at).submit(document())          # something to leave unchanged
    before = list_json(at)
    assert [t["name"] for t in before] == ["shop"]

    files, paths = [], []
    for i, (what, edit, path) in enumerate(INVALID):
        doc = copy.deepcopy(document("bad"))
        edit(doc)
        files.append(write_json(tmp_path / f"bad{i}.json", doc))
        paths.append(path)
    files.append(write_json(tmp_path / "same-name.json", document("shop")))   # exists already
    paths.append("tradecraft")
    assert len(files) >= 14
    for i, (key, text) in enumerate(ATTACKS):
        doc = document(f"attack{i}")
        if key == "derive":
            doc["analytics"][1]["derive"] = {"total": text}
            doc["analytics"][1]["select"] = ["id", "item"]
        else:
            doc["analytics"][1]["where"] = text
        files.append(write_json(tmp_path / f"attack{i}.json", doc))
        paths.append(f"analytics[1].{key}" + (".total" if key == "derive" else ""))
    files.append(write_json(tmp_path / "not-json.json", '{"tradecraft": "x",'))
    paths.append(None)

    for result, path in zip(cli_many([("submit", str(f)) for f in files], at=at, cwd=tmp_path), paths):
        refused(result, path)
    assert list_json(at) == before
    assert not (tmp_path / "PWNED").exists() and not (Path.cwd() / "PWNED").exists()


def test_cli_refuses_invalid_publishes_changing_nothing(congregation, tmp_path):
    at = congregation.address
    db = hallelujah.connect(at)                          # set up and check through the library
    doc = document()
    fixed = orders(0, 100)
    pq.write_table(fixed, tmp_path / "fixed.parquet")
    doc["analytics"].append({"name": "fixed", "kind": "stream", "source": {"path": "fixed.parquet"}})
    db.submit(doc, base_dir=str(tmp_path))
    good = orders(0, 1_000)
    db.publish("shop/orders", good)
    settled = {"orders": good.num_rows, "priced": priced(good).num_rows, "fixed": fixed.num_rows}
    before = retained_rows(db, "shop")
    deadline = time.monotonic() + 20
    while {k: v for k, v in before.items() if k in settled} != settled and time.monotonic() < deadline:
        time.sleep(0.05)                                 # until the transform has caught up
        before = retained_rows(db, "shop")

    wrong = good.set_column(1, "qty", pa.array(["many"] * good.num_rows))   # text where int64 is due
    pq.write_table(good, tmp_path / "good.parquet")
    pq.write_table(wrong, tmp_path / "wrong.parquet")
    (tmp_path / "good.txt").write_bytes((tmp_path / "good.parquet").read_bytes())
    results = cli_many([
        ("publish", "shop/orders", str(tmp_path / "wrong.parquet")),          # the wrong schema
        ("publish", "shop/nope", str(tmp_path / "good.parquet")),             # an unknown stream
        ("publish", "nope/orders", str(tmp_path / "good.parquet")),           # an unknown tradecraft
        ("publish", "shop/fixed", str(tmp_path / "fixed.parquet")),           # a stream with a file source
        ("publish", "shop/orders", str(tmp_path / "good.txt")),               # a format it cannot tell
    ], at=at)
    messages = [refused(r) for r in results]
    assert "qty" in messages[0]
    assert "nope" in messages[1] and "nope" in messages[2]

    assert {k: v for k, v in before.items() if k in settled} == settled
    assert retained_rows(db, "shop") == before
    assert db.read("shop/orders", limit=good.num_rows).equals(good)


# ---- help, schema --------------------------------------------------------------------------

DESIGNED = {"submit", "list", "describe", "publish", "stream", "cancel", "run", "query", "schema", "demo", "wi"}


def test_every_subcommand_help_exits_0_and_shows_an_example():
    top = ok(cli("--help")).stdout
    choices = top[top.index("{") + 1:top.index("}")].split(",")
    assert DESIGNED <= set(choices)
    for name, result in zip(choices, cli_many([(name, "--help") for name in choices])):
        ok(result)
        assert result.stdout.startswith("usage: hallelujah"), name
        assert any(line.strip().startswith(f"example: hallelujah {name}") for line in result.stdout.splitlines()), \
            f"`hallelujah {name} --help` shows no example: line"


def test_schema_prints_the_document_json_schema():
    schema = json.loads(ok(cli("schema")).stdout)
    assert schema["type"] == "object"
    assert {"tradecraft", "analytics"} <= set(schema["properties"])


# ---- run -----------------------------------------------------------------------------------

def run_document(tmp_path: Path) -> tuple[Path, pa.Table]:
    """A document beside its data, naming the file relatively; and the expected output."""
    table = orders(0, 20_000)
    pq.write_table(table, tmp_path / "orders.parquet")
    doc = document()
    doc["analytics"][0] = {"name": "orders", "kind": "stream", "source": {"path": "orders.parquet"}}
    return write_json(tmp_path / "run.json", doc), priced(table)


def test_run_writes_the_output_as_json_lines_to_stdout(tmp_path):
    doc, expected = run_document(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = ok(cli("run", str(doc), "--workers", "1", cwd=elsewhere))
    assert_rows_match(json_lines(result.stdout), expected, "run to stdout", floats=("total",))


def test_run_writes_parquet_and_csv_files_into_the_output_dir(tmp_path):
    doc, expected = run_document(tmp_path)
    for result in cli_many([
            ("run", str(doc), "--workers", "1", "--output-dir", str(tmp_path / "pq"), "--format", "parquet"),
            ("run", str(doc), "--workers", "1", "--output-dir", str(tmp_path / "csv"), "--format", "csv")]):
        ok(result)
    got = pq.read_table(tmp_path / "pq" / "priced.parquet")
    assert got.column_names == expected.column_names
    assert got["id"].to_pylist() == expected["id"].to_pylist()
    assert got["item"].to_pylist() == expected["item"].to_pylist()
    np.testing.assert_allclose(got["total"].to_numpy(), expected["total"].to_numpy(), rtol=1e-12)

    got = pa_csv.read_csv(tmp_path / "csv" / "priced.csv")
    assert got.column_names == expected.column_names
    assert got["id"].to_pylist() == expected["id"].to_pylist()
    assert got["item"].to_pylist() == expected["item"].to_pylist()
    np.testing.assert_allclose(got["total"].to_numpy(), expected["total"].to_numpy(), rtol=1e-12)


def test_run_refuses_a_bad_document_with_exit_2_and_one_line(tmp_path):
    not_an_object = write_json(tmp_path / "list.json", [1, 2])
    no_partner = write_json(tmp_path / "join.json", {"tradecraft": "x", "analytics": [
        {"name": "a", "kind": "join", "stream": "s"}]})
    unbounded = write_json(tmp_path / "pushed.json", document())
    first, second, third = cli_many([("run", str(not_an_object)), ("run", str(no_partner)),
                                     ("run", str(unbounded))])
    assert "JSON object" in refused(first)
    assert "dataset" in refused(second, "analytics[0]")
    assert "bounded sources" in refused(third)


def test_run_writes_an_arrow_ipc_file(tmp_path):
    doc, expected = run_document(tmp_path)
    ok(cli("run", str(doc), "--workers", "2", "--output-dir", str(tmp_path / "ipc"), "--format", "arrow"))
    with pa.ipc.open_file(tmp_path / "ipc" / "priced.arrow") as f:
        got = f.read_all().sort_by("id")
    expected = expected.sort_by("id")
    assert got.column_names == expected.column_names
    assert got["id"].to_pylist() == expected["id"].to_pylist()
    assert got["item"].to_pylist() == expected["item"].to_pylist()
    np.testing.assert_allclose(got["total"].to_numpy(), expected["total"].to_numpy(), rtol=1e-12)


def test_cli_query_prints_an_aggregates_open_windows_and_refuses_a_bad_group(congregation, tmp_path):
    at = congregation.address
    doc = write_json(tmp_path / "hits.json", {"tradecraft": "hits", "analytics": [
        {"name": "hits", "kind": "stream", "schema": {"ts": "timestamp[s]", "page": "string"}, "time": "ts"},
        {"name": "per_hour", "kind": "aggregate", "input": "hits", "time": "ts", "window": "1h",
         "group": ["page"], "measures": {"n": "count()"}}]})
    ok(cli("submit", str(doc), at=at))
    rows = pa.table({"ts": pa.array([1_700_006_400 + i * 7 for i in range(300)], pa.timestamp("s")),
                     "page": [f"p{i % 3}" for i in range(300)]})
    pq.write_table(rows, tmp_path / "hits.parquet")
    ok(cli("publish", "hits/hits", str(tmp_path / "hits.parquet"), at=at))
    got: list[dict] = []
    for _ in range(100):                        # the rows reach the aggregate shortly after publish
        got = json_lines(ok(cli("query", "hits/per_hour", "--group", "page=p1", at=at)).stdout)
        if got and got[0]["n"] == 100:
            break
    assert got == [{"window_start": "2023-11-15T00:00:00.000000Z", "window_end": "2023-11-15T01:00:00.000000Z",
                    "page": "p1", "n": 100}]
    assert "group field" in refused(cli("query", "hits/per_hour", "--group", "nope=1", at=at))
    assert "aggregate" in refused(cli("query", "hits/hits", at=at))
