"""A document's every fault is reported at once, each with its JSON path, one line per fault:
by `hallelujah validate` and `submit` on the command line, by the client library, and by a real
congregation over the wire (the first fault's path apart, every line in the message)."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import trio

from hallelujah import TradecraftError
from tests.conftest import Daemon
from tests.integration.test_cli import cli

# A join missing "how" whose "on" names a field its stream lacks, a type fault in an aggregate,
# and a filter that is no filter: four faults in three analytics.
DOCUMENT = {"tradecraft": "faulty", "analytics": [
    {"name": "orders", "kind": "stream", "time": "ts",
     "schema": {"ts": "timestamp[ms]", "id": "int64", "amount": "float64", "country": "string"}},
    {"name": "countries", "kind": "ingest", "schema": {"code": "string", "name": "string"},
     "source": {"path": "countries.csv"}},       # made absolute, under the test's dir, by `document`
    {"name": "named", "kind": "join", "stream": "orders", "dataset": "countries",
     "on": {"contry": "code"}, "fields": ["name"]},
    {"name": "big", "kind": "transform", "input": "named", "where": "amount + 1"},
    {"name": "hourly", "kind": "aggregate", "input": "orders", "time": "ts", "window": "1h",
     "measures": {"n": "count()", "total": "sum(country)"}},
]}
FAULTS = [  # (path, what its line says)
    ("analytics[2].how", 'a join with a dataset needs "how"'),
    ("analytics[2].on", 'field "contry" is not in the output of "orders" (did you mean "country"?)'),
    ("analytics[3].where", '"amount + 1" is float64; a filter must be true or false'),
    ("analytics[4].measures.total", '"sum(country)": field "country" is string; sum needs a number'),
]


def assert_every_fault(lines: list[str]) -> None:
    assert len(lines) == len(FAULTS), lines
    for line, (path, says) in zip(lines, FAULTS):
        assert line.startswith(f"{path}: ") and says in line, (line, path, says)


def document(tmp_path: Path) -> dict:
    """The document, its dataset's path in `tmp_path` (where a test congregation reads sources)."""
    d = copy.deepcopy(DOCUMENT)
    d["analytics"][1]["source"]["path"] = str(tmp_path / "countries.csv")
    return d


def document_file(tmp_path: Path) -> Path:
    path = tmp_path / "faulty.json"
    path.write_text(json.dumps(document(tmp_path)))
    return path


def assert_cli_lists_every_fault(result: object) -> None:
    assert result.returncode == 2, result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in result.stderr and result.stdout == ""  # type: ignore[attr-defined]
    lines = result.stderr.strip().split("\n")  # type: ignore[attr-defined]
    assert lines[0].startswith("hallelujah: ")
    assert_every_fault([lines[0].removeprefix("hallelujah: "), *lines[1:]])


def test_validate_prints_one_line_per_fault_and_exits_2(tmp_path: Path) -> None:
    assert_cli_lists_every_fault(cli("validate", str(document_file(tmp_path)), timeout=30))


async def test_a_congregation_refuses_a_submit_with_every_fault_and_keeps_nothing(
        congregation: Daemon, tmp_path: Path) -> None:
    db = congregation.db()
    with trio.fail_after(30):
        with pytest.raises(TradecraftError) as raw:           # checked by the congregation, sent over the wire
            await db.command("submit", document=document(tmp_path))
        assert raw.value.path == FAULTS[0][0] and raw.value.exit_code == 2
        assert_every_fault(str(raw.value).split("\n"))
        with pytest.raises(TradecraftError) as library:       # checked by the client library first
            await db.submit(document(tmp_path))
        assert str(library.value) == str(raw.value)
        assert await db.list() == []
    result = await trio.to_thread.run_sync(lambda: cli("submit", str(document_file(tmp_path)), at=congregation.address,
                                                       timeout=30))
    assert_cli_lists_every_fault(result)
    with trio.fail_after(10):
        assert await db.list() == []
