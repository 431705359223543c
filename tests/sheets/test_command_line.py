"""The `:` command line's parsing and completion: pure functions, checked against what was typed."""
from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sheets.command_line import (
    COMMANDS,
    Command,
    CommandError,
    complete,
    files,
    names,
    parse,
)


@pytest.mark.parametrize("line, command", [
    ("tc gps", Command("tc", ("gps",))),
    ("  tc   gps/tiled ", Command("tc", ("gps/tiled",))),
    ("submit 'my docs/gps.json'", Command("submit", ("my docs/gps.json",))),
    ("publish gps/positions fixes.parquet", Command("publish", ("gps/positions", "fixes.parquet"))),
    ("publish gps/positions f.sqlite fixes", Command("publish", ("gps/positions", "f.sqlite", "fixes"))),
    ("cancel", Command("cancel", ())),
    ("cancel gps", Command("cancel", ("gps",))),
    ("q", Command("q", ())),
    ("split gps/j/join", Command("split", ("gps/j/join",))),
    ("congestion gps 0.5 2s", Command("congestion", ("gps", "0.5", "2s"))),
])
def test_a_line_is_a_command_and_its_words(line, command):
    assert parse(line) == command


@pytest.mark.parametrize("line, message", [
    ("", "a command: tc, submit, publish, cancel, split, merge, reload, congestion, q (? lists them)"),
    ("nosuch x", (":nosuch: no such command (commands: tc, submit, publish, cancel, split, merge, reload, "
                  "congestion, q)")),
    ("tc", "usage: :tc NAME[/ANALYTIC]"),
    ("tc a b", "usage: :tc NAME[/ANALYTIC]"),
    ("publish gps/positions", "usage: :publish STREAM FILE [TABLE]"),
    ("q now", "usage: :q"),
    ("congestion gps 0.5", "usage: :congestion TRADECRAFT BUSY FOR"),
    ("reload", "usage: :reload TRADECRAFT/ANALYTIC"),
    ("submit 'a.json", ":submit 'a.json: No closing quotation"),
])
def test_a_line_that_asks_for_nothing_says_what_is_taken(line, message):
    with pytest.raises(CommandError) as refused:
        parse(line)
    assert str(refused.value) == message


TRADECRAFTS = ["gps", "gps_eu", "vitals"]


def offered(kind: str, word: str) -> list[str]:
    return {"tradecraft": TRADECRAFTS, "stream": ["gps/positions", "vitals/readings"]}.get(kind, [])


@pytest.mark.parametrize("line, completed, matches", [
    ("t", "tc ", ["tc"]),
    ("", "", sorted(COMMANDS)),
    ("tc v", "tc vitals ", ["vitals"]),
    ("tc g", "tc gps", ["gps", "gps_eu"]),                  # as far as every match agrees
    ("cancel gps_", "cancel gps_eu ", ["gps_eu"]),
    ("publish g", "publish gps/positions ", ["gps/positions"]),
    ("tc x", "tc x", []),
    ("q x", "q x", []),                                     # q takes no word
    ("nosuch x", "nosuch x", []),
])
def test_tab_completes_the_last_word(line, completed, matches):
    assert complete(line, offered) == (completed, matches)


@given(st.lists(st.text(st.characters(min_codepoint=97, max_codepoint=100), min_size=1, max_size=6), max_size=8),
       st.text(st.characters(min_codepoint=97, max_codepoint=100), max_size=3))
def test_completion_only_extends_what_was_typed(choices, word):
    line, matches = complete(f"tc {word}", lambda kind, w: choices)
    assert line.startswith(f"tc {word}")
    assert matches == sorted({c for c in choices if c.startswith(word)})
    if len(matches) == 1:
        assert line == f"tc {matches[0]} "
    elif matches:
        assert all(m.startswith(line[3:]) for m in matches)


def test_names_come_from_the_describe_answer():
    info = {"tradecrafts": [{"name": "gps", "analytics": [
        {"name": "positions", "kind": "stream", "jahs": [{"role": "logsource"}]},
        {"name": "fixes", "kind": "stream", "jahs": [{"role": "source"}]},      # a file source: nothing to publish
        {"name": "tiled", "kind": "transform", "jahs": []}]}]}
    assert names(info, "tradecraft", "g") == ["gps"]
    assert names(info, "tradecraft", "gps/") == ["gps/positions", "gps/fixes", "gps/tiled"]
    assert names(info, "stream", "") == ["gps/positions"]
    info["tradecrafts"][0]["analytics"] += [
        {"name": "tiles", "kind": "ingest", "jahs": [{"id": "gps/tiles/ingest", "role": "ingest"}]},
        {"name": "named", "kind": "join", "jahs": [{"id": "gps/named/join.1a", "role": "join", "state": "running"},
                                                   {"id": "gps/named/join", "role": "join", "state": "finished"}]}]
    assert names(info, "dataset", "") == ["gps/tiles"]
    assert names(info, "join", "") == ["gps/named/join.1a"]     # a JOIN retired by a split is not offered


def test_files_complete_as_typed(tmp_path, monkeypatch):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "gps.json").write_text("{}")
    (tmp_path / "data.csv").write_text("a\n1\n")
    monkeypatch.chdir(tmp_path)
    assert sorted(files("")) == ["data.csv", "docs/"]
    assert files("docs/g") == ["docs/gps.json"]
    assert complete("submit do", lambda kind, w: files(w)) == ("submit docs/", ["docs/"])
    assert files(str(tmp_path / "da")) == [str(tmp_path / "data.csv")]
    monkeypatch.setenv("HOME", str(tmp_path))
    assert files("~/docs/") == ["~/docs/gps.json"] and os.path.expanduser("~") == str(tmp_path)
