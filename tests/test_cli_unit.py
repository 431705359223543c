"""The command lines and the library as a person first meets them, without a running congregation:
a mistake is one line on stderr and exit 2, never a traceback; help says what each option does
and its default; the version is told."""
from __future__ import annotations

import importlib.metadata
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import hallelujah
from hallelujah.cli_output import rows_text
from hallelujah.errors import InvalidInput

BIN = Path(sys.executable).parent
HALLELUJAH = str(BIN / "hallelujah") if (BIN / "hallelujah").exists() else shutil.which("hallelujah") or "hallelujah"
CONGREGATION = str(BIN / "congregation") if (BIN / "congregation").exists() else shutil.which("congregation") or "congregation"
ENV = {k: v for k, v in os.environ.items() if k != "HALLELUJAH_AT"}


def run(*command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, env=ENV, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def one_line(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """Exit `code`, no traceback, exactly one line on stderr; returns it."""
    message = result.stderr.strip()
    assert result.returncode == code, f"{result.args}: exit {result.returncode}, expected {code}: {result.stderr!r}"
    assert "Traceback" not in result.stderr + result.stdout, f"{result.args}: a traceback: {result.stderr}"
    assert message and "\n" not in message, f"{result.args}: not one line: {result.stderr!r}"
    return message


def test_version_on_the_command_line_and_in_the_package() -> None:
    installed = importlib.metadata.version("hallelujah")
    assert hallelujah.__version__ == installed
    result = run(HALLELUJAH, "--version")
    assert result.returncode == 0 and result.stdout.strip() == f"hallelujah {installed}", result


@pytest.mark.parametrize("argv, named", [
    (["--at", "127.0.0.1", "list"], '"127.0.0.1"'),
    (["--at", "127.0.0.1:http", "list"], '"127.0.0.1:http"'),
    (["stream", "shop/large", "--limit", "-1"], "--limit"),
    (["demo", "--rows", "-5"], "--rows"),
    (["demo", "--rows", "many"], "--rows"),
    (["run", "x.json", "--workers", "0"], "--workers"),
    (["describe", "--watch", "0"], "--watch"),
    (["explain", "x.json", "--workers", "-1"], "--workers"),
])
def test_a_bad_option_is_one_line_naming_it(argv: list[str], named: str) -> None:
    assert named in one_line(run(HALLELUJAH, *argv))


def test_library_refuses_a_bad_address_and_a_negative_limit() -> None:
    with pytest.raises(InvalidInput, match='"127.0.0.1": not HOST:PORT'):
        hallelujah.connect("127.0.0.1")
    db = hallelujah.connect("127.0.0.1:1")        # (nothing listens: refused before connecting)
    with pytest.raises(InvalidInput, match="limit -1"):
        db.read("shop/large", limit=-1)


def test_help_says_what_options_do_and_their_defaults() -> None:
    text = run(HALLELUJAH, "stream", "--help").stdout
    assert "(default: jsonl)" in text and "stop after this many rows" in text
    assert "(default: None)" not in text and "(default: False)" not in text
    assert "(default: 2000000)" in run(HALLELUJAH, "demo", "--help").stdout
    congregation_help = run(CONGREGATION, "--help").stdout
    assert "--log-level" in congregation_help and "HALLELUJAH_LOG_LEVEL" in congregation_help


def test_rows_are_counted_in_english() -> None:
    assert [rows_text(n) for n in (0, 1, 2, 1234)] == ["0 rows", "1 row", "2 rows", "1,234 rows"]


def test_wi_is_wired_and_refuses_without_a_terminal() -> None:
    """`hallelujah wi` reaches the Window Interface, which needs a terminal (here stdin is none):
    its message first, then (its own rule for a refusal) one structured log line."""
    result = run(HALLELUJAH, "--at", "127.0.0.1:1", "wi", "--read-only")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result
    assert result.stderr.splitlines()[0] == "hallelujah wi: needs a terminal (stdin and stdout)"


def test_congregation_on_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        message = one_line(run(CONGREGATION, "--data-dir", str(tmp_path / "d"), "--workers", "1",
                               "--listen", f"127.0.0.1:{port}"), code=1)
    assert f"--listen 127.0.0.1:{port}" in message and "in use" in message


@pytest.mark.parametrize("data_dir, why", [
    ("afile/sub", "Not a directory"),
    ("/proc/no-such-process/data", "No such file or directory"),
])
def test_congregation_with_a_data_dir_it_cannot_create_is_one_line(tmp_path: Path, data_dir: str, why: str) -> None:
    (tmp_path / "afile").write_text("")
    path = tmp_path / data_dir if not data_dir.startswith("/") else Path(data_dir)
    message = one_line(run(CONGREGATION, "--data-dir", str(path), "--workers", "1", "--listen", "127.0.0.1:0"))
    assert f"--data-dir {path}" in message and why in message


def test_congregation_listen_without_a_port_is_one_line(tmp_path: Path) -> None:
    message = one_line(run(CONGREGATION, "--data-dir", str(tmp_path / "d"), "--listen", "127.0.0.1"))
    assert "--listen 127.0.0.1: not HOST:PORT" in message


def test_describe_at_80_columns_keeps_figures_whole_and_one_line_per_jah() -> None:
    """Large figures and long names in a terminal of 80 columns: every figure printed whole,
    every Jah on one line (a long name gives way, ending in an ellipsis)."""
    import io

    from rich.console import Console

    from hallelujah.cli_output import print_describe
    jahs = [{"id": f"big/{'enrich_with_countries_of_the_world' * (i + 1)}.part{i}/join", "worker": i,
             "rows_in": 123_456_789 * (i + 1), "rows_out": 98_765_432 * (i + 1), "busy": 0.97,
             "backlog": 1_234, "state_rows": 45_678_901, "state": "running"} for i in range(3)]
    info = {"tradecrafts": [{"name": "big", "state": "running", "error": None, "events": [],
                             "analytics": [{"name": "enrich", "jahs": jahs,
                                            "retained": {"enrich": {"rows": 9_876_543_210, "ended": False}}}]}]}
    out = io.StringIO()
    print_describe(info, False, Console(file=out, width=80, color_system=None))
    lines = out.getvalue().splitlines()
    assert max(map(len, lines)) <= 80, lines
    for j in jahs:
        row = [line for line in lines if f" {j['rows_in']:,} " in line]
        assert len(row) == 1, (j["rows_in"], lines)
        for figure in (j["rows_out"], j["backlog"], j["state_rows"]):
            assert f" {figure:,} " in row[0], (figure, row[0])
        assert row[0].startswith("enrich_with") and "…" in row[0]
    assert "9,876,543,210" in out.getvalue()


SHOP = {"tradecraft": "shop", "analytics": [
    {"name": "orders", "kind": "stream", "schema": {"id": "int64", "amount": "float64", "country": "string"}},
    {"name": "large", "kind": "transform", "input": "orders",
     "derive": {"cents": "cast(amount * 100, 'int64')"}, "where": "amount > 10"},
    {"name": "by_country", "kind": "director", "input": "large", "key": "country",
     "routes": {"NL": "nl", "BE": "be"}, "default": "other"}]}


def test_validate_checks_a_document_without_a_congregation(tmp_path: Path) -> None:
    import json
    good = tmp_path / "shop.json"
    good.write_text(json.dumps(SHOP))
    shown = json.loads(run(HALLELUJAH, "validate", str(good), "--json").stdout)
    assert shown["tradecraft"] == "shop" and [a["name"] for a in shown["analytics"]] == ["orders", "large", "by_country"]
    assert shown["analytics"][1]["schema"] == {"id": "int64", "amount": "float64", "country": "string", "cents": "int64"}
    assert shown["analytics"][2]["routes"] == ["nl", "be", "other"] and shown["analytics"][2]["retained"]
    text = run(HALLELUJAH, "validate", str(good))
    assert text.returncode == 0 and text.stdout.startswith(f"{good}: tradecraft shop is valid: 3 analytics")
    bad = json.loads(json.dumps(SHOP))
    bad["analytics"][1]["input"] = "ordrs"
    piped = subprocess.run([HALLELUJAH, "validate", "-"], input=json.dumps(bad), capture_output=True,
                           text=True, env=ENV, timeout=60)
    assert one_line(piped).startswith('hallelujah: analytics[1].input: no analytic is named "ordrs"')


@pytest.mark.parametrize("words, expected", [
    (["hallelujah", "pub"], ["publish"]),
    (["hallelujah", "--at", "127.0.0.1:7077", "st"], ["stream"]),
    (["hallelujah", "publish", "--f"], ["--format"]),
    (["hallelujah", "publish", "shop/orders", "--format", ""], ["parquet", "csv", "jsonl", "arrow", "sqlite"]),
    (["hallelujah", "stream", "shop/large", "--format", ""], ["jsonl", "csv", "parquet", "arrow"]),
    (["hallelujah", "describe", "--w"], ["--watch"]),
])
def test_bash_completion_names_commands_options_and_choices(tmp_path: Path, words: list[str],
                                                            expected: list[str]) -> None:
    """The script `completion bash` prints, run by bash as it completes the words typed."""
    script = tmp_path / "completion.bash"
    script.write_text(run(HALLELUJAH, "completion", "bash").stdout)
    probe = (f'source {script}; COMP_WORDS=("$@"); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); '
             f'_hallelujah; printf "%s\\n" "${{COMPREPLY[@]}}"')
    result = run("bash", "-c", probe, "bash", *words)
    assert result.returncode == 0 and result.stderr == "", result
    assert result.stdout.split() == expected
