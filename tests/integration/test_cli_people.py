"""The CLI and the library as a person uses them against a real congregation: the README tour's
steps on a terminal, pipes closed early, names that do not exist, reading what is there now.
Expected rows are computed here with pyarrow from the data published."""
from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import trio

import hallelujah
from tests.conftest import Daemon
from tests.integration.helpers import assert_rows_equal
from tests.integration.test_cli import ENV, HALLELUJAH, cli, ok, refused

SHOP = {"tradecraft": "shop", "analytics": [
    {"name": "orders", "kind": "stream",
     "schema": {"id": "int64", "amount": "float64", "country": "string"}},
    {"name": "large", "kind": "transform", "input": "orders",
     "derive": {"cents": "cast(amount * 100, 'int64')"}, "where": "amount > 10"},
    {"name": "by_country", "kind": "director", "input": "large", "key": "country",
     "routes": {"NL": "nl", "BE": "be"}, "default": "other"}]}
ORDERS_CSV = "id,amount,country\n1,12.5,NL\n2,8.0,BE\n3,40.25,NL\n4,99.0,DE\n"


def shop(tmp_path: Path, congregation: Daemon) -> Path:
    """The README's shop submitted, and its orders.csv written; returns the csv."""
    (tmp_path / "shop.json").write_text(json.dumps(SHOP))
    ok(cli("submit", str(tmp_path / "shop.json"), at=congregation.address))
    orders = tmp_path / "orders.csv"
    orders.write_text(ORDERS_CSV)
    return orders


def nl_of(orders: pa.Table) -> pa.Table:
    """What `shop/by_country.nl` must hold for these orders, computed without Hallelujah."""
    large = orders.filter(pc.greater(orders["amount"], 10))
    large = large.append_column("cents", pc.cast(pc.multiply(large["amount"], 100), pa.int64()))
    return large.filter(pc.equal(large["country"], "NL"))


def on_a_terminal(argv: list[str], timeout: float = 60,
                  interrupt_when: Callable[[bytes], bool] | None = None) -> tuple[int, bytes]:
    """Run `argv` with stdin, stdout and stderr on a pseudo-terminal; (exit code, all it wrote).
    Once `interrupt_when(output so far)` holds, it gets a SIGINT (a Ctrl-C)."""
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(argv, stdin=secondary, stdout=secondary, stderr=secondary, env=ENV,
                            start_new_session=True)
    os.close(secondary)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(primary, 65536)
                except OSError:            # EIO: the terminal's other side is closed
                    break
                if not chunk:
                    break
                out += chunk
                if interrupt_when is not None and interrupt_when(out):
                    proc.send_signal(signal.SIGINT)
                    interrupt_when = None
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
            proc.wait()          # (reaped: a process left running fails a later test's warnings)
            raise AssertionError(f"{argv} did not finish in {timeout}s (interrupted: "
                                 f"{interrupt_when is None}): {out[-500:]!r}")
        return proc.wait(timeout=10), out
    finally:
        os.close(primary)


def test_publish_on_a_terminal_shows_progress_of_an_unknown_total_and_the_cursor_again(
        tmp_path: Path, congregation: Daemon) -> None:
    """A CSV's rows are not known before it is read: the bar counts up instead of crashing, and
    the cursor it hid is shown again; the rows are all in the stream."""
    orders = shop(tmp_path, congregation)
    code, out = on_a_terminal([str(HALLELUJAH), "--at", congregation.address, "publish", "shop/orders",
                               str(orders), "--publisher-id", "shop-1"])
    text = out.decode(errors="replace")
    assert code == 0 and "Traceback" not in text, text[-2000:]
    assert "published 4 rows to shop/orders" in text
    hidden, shown = out.rfind(b"\x1b[?25l"), out.rfind(b"\x1b[?25h")
    assert shown > hidden, f"the cursor is left hidden: {out[-300:]!r}"

    async def check() -> None:
        db = congregation.db()
        expected = nl_of(pa_csv.read_csv(orders))
        with trio.fail_after(20):
            while (got := await db.read("shop/by_country.nl", follow=False)).num_rows < expected.num_rows:
                await trio.sleep(0.05)
        assert_rows_equal(got, expected, "shop/by_country.nl")
    trio.run(check)


def test_stream_and_describe_into_a_pipe_closed_early_end_quietly(tmp_path: Path, congregation: Daemon) -> None:
    """`stream … | head -2`, `describe --json | head`: the reader goes away; no traceback."""
    db = congregation.db()
    orders = pa.table({"id": pa.array(range(60_000), pa.int64()),
                       "amount": pa.array([50.0] * 60_000), "country": ["NL"] * 60_000})
    shop(tmp_path, congregation)

    async def publish() -> None:
        with trio.fail_after(30):
            await db.publish("shop/orders", orders)
    trio.run(publish)
    head = subprocess.run(
        ["bash", "-c", f'set -o pipefail; "{HALLELUJAH}" --at {congregation.address} stream '
                       f'shop/by_country.nl --from-start --limit 60000 | head -2'],
        capture_output=True, text=True, env=ENV, timeout=60)
    assert [json.loads(line)["id"] for line in head.stdout.splitlines()] == [0, 1]
    assert head.returncode in (0, 141) and "Traceback" not in head.stderr and "Broken" not in head.stderr, head
    for argv in (["stream", "shop/by_country.nl", "--from-start", "--limit", "60000"], ["describe", "--json"]):
        proc = subprocess.Popen([str(HALLELUJAH), "--at", congregation.address, *argv],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()            # nobody reads: the first write meets a closed pipe
        code = proc.wait(timeout=60)
        stderr = proc.stderr.read().decode()
        proc.stderr.close()
        assert code in (0, 141) and stderr == "", f"{argv}: exit {code}: {stderr}"


def test_describe_of_what_does_not_exist_names_what_does(tmp_path: Path, congregation: Daemon) -> None:
    shop(tmp_path, congregation)
    message = refused(cli("describe", "nosuch", at=congregation.address))
    assert 'no tradecraft "nosuch"' in message and "shop" in message
    message = refused(cli("describe", "shop/nosuch", at=congregation.address))
    assert 'no analytic "nosuch"' in message and "orders, large, by_country" in message
    assert json.loads(ok(cli("describe", "shop/large", "--json", at=congregation.address)).stdout)[
        "tradecrafts"][0]["analytics"][0]["name"] == "large"


def test_stream_with_a_negative_limit_is_one_line(congregation: Daemon) -> None:
    assert "--limit" in refused(cli("stream", "shop/large", "--limit", "-1", at=congregation.address))


def test_publishing_one_row_says_row(tmp_path: Path, congregation: Daemon) -> None:
    shop(tmp_path, congregation)
    one = tmp_path / "one.csv"
    one.write_text("id,amount,country\n7,70.5,NL\n")
    assert ok(cli("publish", "shop/orders", str(one), at=congregation.address)).stderr.splitlines() \
        == ["publish one.csv: 1 row acknowledged", "published 1 row to shop/orders"]


async def test_read_without_follow_returns_what_is_there_now(tmp_path: Path, congregation: Daemon) -> None:
    """An output that has not ended: read(follow=False) returns its rows at once (read() would
    wait for an end that never comes); limit and from_start still apply."""
    db = congregation.db()
    with trio.fail_after(30):
        await db.submit(SHOP)
        empty = await db.read("shop/by_country.nl", follow=False)
        assert empty.num_rows == 0 and empty.schema.names == ["id", "amount", "country", "cents"]
        orders = pa_csv.read_csv(pa.py_buffer(ORDERS_CSV.encode()))
        await db.publish("shop/orders", orders)
        expected = nl_of(orders)
        while (await db.read("shop/by_country.nl", follow=False)).num_rows < expected.num_rows:
            await trio.sleep(0.05)
        assert_rows_equal(await db.read("shop/by_country.nl", follow=False), expected, "all now")
        assert_rows_equal(await db.read("shop/by_country.nl", follow=False, limit=1), expected.slice(0, 1),
                          "limit 1")
        assert (await db.read("shop/by_country.nl", follow=False, from_start=False)).num_rows == 0


def test_the_readme_examples_run_as_written(tmp_path: Path, congregation: Daemon) -> None:
    """The tour's commands after the congregation starts, and the Python example, against a
    congregation whose source root is this directory; the rows checked against pyarrow."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    tour = re.search(r"## A five-minute tour\n\n```sh\n(.*?)```", readme, re.S).group(1)
    steps = tour.split("\n", 2)[2]          # after `congregation … &` and its comment
    result = subprocess.run(["bash", "-ec", steps], cwd=tmp_path, capture_output=True, text=True,
                            env={**ENV, "HALLELUJAH_AT": congregation.address}, timeout=120)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    expected = nl_of(pa_csv.read_csv(tmp_path / "orders.csv"))
    streamed = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{"id"')]
    assert streamed == expected.to_pylist()

    python = re.search(r"From Python \(trio\):\n\n```python\n(.*?)```", readme, re.S).group(1)
    body = python.split("\n", 2)[2].replace("127.0.0.1:7077", congregation.address)
    code = "import hallelujah\nasync def example(document, arrow_table, seen):\n" + "\n".join(
        "    " + line.replace("async for batch in batches: ...", "async for batch in batches: seen.append(batch)")
        for line in body.splitlines())
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    orders = pa_csv.read_csv(tmp_path / "orders.csv")
    seen: list[pa.RecordBatch] = []

    async def python_example() -> None:
        with trio.fail_after(30):
            await namespace["example"](SHOP, orders, seen)
    trio.run(python_example)
    first = pa.table({"id": [5], "amount": [20.0], "country": ["NL"]}, schema=orders.schema)   # its dict row
    assert_rows_equal(pa.Table.from_batches(seen), nl_of(pa.concat_tables([first, orders])), "README's Python example")


class ArrowStream:
    """Anything that hands out an Arrow C stream (as pandas and polars frames do)."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table

    def __arrow_c_stream__(self, requested_schema: object = None) -> object:
        return self.table.__arrow_c_stream__(requested_schema)


async def test_publish_python_rows_cast_safely_to_the_stream_schema(congregation: Daemon) -> None:
    """A list of dicts, a dict of columns and an Arrow C stream, with whole numbers for a
    float64 field: cast to the stream's schema; a value that cannot be is refused naming its
    field in the document's type names, and nothing of it is kept."""
    db = congregation.db()
    schema = pa.schema([("id", pa.int64()), ("amount", pa.float64()), ("country", pa.string())])
    with trio.fail_after(30):
        await db.submit({"tradecraft": "py", "analytics": [
            {"name": "orders", "kind": "stream", "schema": {"id": "int64", "amount": "float64", "country": "string"}}]})
        assert await db.publish("py/orders", [{"id": 1, "amount": 12, "country": "NL"},
                                              {"country": "BE", "id": 2, "amount": 8.5}]) == 2
        assert await db.publish("py/orders", {"id": [3, 4], "amount": [40, 99], "country": ["NL", None]}) == 2
        assert await db.publish("py/orders", ArrowStream(pa.table({"amount": pa.array([7], pa.int32()),
                                                                   "id": [5], "country": ["DE"]}))) == 1
        for bad, field in (([{"id": 6, "amount": "lots", "country": "NL"}], "amount"),
                           ({"id": [7.5], "amount": [1.0], "country": ["NL"]}, "id"),
                           ([{"id": 8, "amount": 1.0}], "country"),
                           ([{"id": 9, "amount": 1.0, "country": "NL", "vat": 0.2}], "vat")):
            try:
                await db.publish("py/orders", bad)
            except hallelujah.SchemaMismatch as exc:
                assert f'field "{field}"' in str(exc) and "double" not in str(exc), str(exc)
            else:
                raise AssertionError(f"{bad} was published")
        expected = pa.Table.from_pylist([
            {"id": 1, "amount": 12.0, "country": "NL"}, {"id": 2, "amount": 8.5, "country": "BE"},
            {"id": 3, "amount": 40.0, "country": "NL"}, {"id": 4, "amount": 99.0, "country": None},
            {"id": 5, "amount": 7.0, "country": "DE"}], schema=schema)
        assert_rows_equal(await db.read("py/orders", follow=False), expected, "py/orders")
        assert (await db.read("py/orders", follow=False)).schema.equals(schema)


def test_the_readme_run_commands_work_as_written(tmp_path: Path) -> None:
    """Each `hallelujah run …` the README shows, run from the repository with `out` in a temp dir:
    exit 0 and one file per retained output, its rows what the file holds (read back by pyarrow)."""
    import pyarrow.parquet as pq
    root = Path(__file__).parents[2]
    commands = re.findall(r"`(hallelujah run tradecrafts/\S+\.json[^`]*)`", (root / "README.md").read_text())
    assert len(commands) >= 2, commands
    for i, command in enumerate(commands):
        out = tmp_path / f"out{i}"
        argv = [str(HALLELUJAH), *command.split()[1:]]
        argv = [str(out) if a == "out" else a for a in argv]
        assert str(out) in argv, f"{command}: no --output-dir out"
        result = subprocess.run(argv, cwd=root, capture_output=True, text=True, env=ENV, timeout=180)
        assert result.returncode == 0 and "Traceback" not in result.stderr, f"{command}: {result.stderr[-2000:]}"
        written = sorted(out.iterdir())
        assert written, f"{command} wrote nothing"
        if "--format parquet" in command:
            assert sum(pq.read_metadata(f).num_rows for f in written) > 0, f"{command}: no rows"
        else:
            assert sum(len(f.read_text().splitlines()) for f in written) > 0, f"{command}: no rows"


def test_publish_a_sqlite_table_and_stdin_and_submit_from_stdin(tmp_path: Path, congregation: Daemon) -> None:
    """`--table` names a SQLite file's table (and is asked for, naming the tables, when left out);
    `-` reads stdin for publish (its --format named) and for submit."""
    import sqlite3
    at = congregation.address
    submitted = subprocess.run([str(HALLELUJAH), "--at", at, "submit", "-"], input=json.dumps(SHOP),
                               capture_output=True, text=True, env=ENV, timeout=60)
    assert ok(submitted).stdout.startswith("submitted shop")
    db_file = tmp_path / "orders.db"
    with sqlite3.connect(db_file) as con:
        con.execute("CREATE TABLE orders (id INTEGER, amount REAL, country TEXT)")
        con.execute("CREATE TABLE notes (text TEXT)")
        con.executemany("INSERT INTO orders VALUES (?, ?, ?)", [(1, 55.5, "NL"), (2, 3.0, "NL"), (3, 70.0, "BE")])
    con.close()
    message = refused(cli("publish", "shop/orders", str(db_file), at=at))
    assert message.startswith("hallelujah: --table:") and "(it has: notes, orders)" in message
    assert "--format" in refused(subprocess.run([str(HALLELUJAH), "--at", at, "publish", "shop/orders", "-"],
                                                input="", capture_output=True, text=True, env=ENV, timeout=60))
    ok(cli("publish", "shop/orders", str(db_file), "--table", "orders", "--format", "sqlite", at=at))
    piped = subprocess.run([str(HALLELUJAH), "--at", at, "publish", "shop/orders", "-", "--format", "csv"],
                           input=ORDERS_CSV, capture_output=True, text=True, env=ENV, timeout=60)
    assert ok(piped).stderr.splitlines()[-1] == "published 4 rows to shop/orders"

    orders = pa.concat_tables([
        pa.table({"id": [1, 2, 3], "amount": [55.5, 3.0, 70.0], "country": ["NL", "NL", "BE"]}),
        pa_csv.read_csv(pa.py_buffer(ORDERS_CSV.encode()))])
    expected = nl_of(orders)

    async def check() -> None:
        db = congregation.db()
        with trio.fail_after(20):
            while (got := await db.read("shop/by_country.nl", follow=False)).num_rows < expected.num_rows:
                await trio.sleep(0.05)
        assert_rows_equal(got, expected, "shop/by_country.nl")
    trio.run(check)


def test_submit_publish_and_cancel_speak_json_for_programs(tmp_path: Path, congregation: Daemon) -> None:
    at = congregation.address
    (tmp_path / "shop.json").write_text(json.dumps(SHOP))
    (tmp_path / "orders.csv").write_text(ORDERS_CSV)
    submitted = json.loads(ok(cli("submit", str(tmp_path / "shop.json"), "--json", at=at)).stdout)
    assert submitted["tradecraft"] == "shop" and submitted["outputs"] == ["by_country"]
    published = json.loads(ok(cli("publish", "shop/orders", str(tmp_path / "orders.csv"), "--json", at=at)).stdout)
    assert published == {"stream": "shop/orders", "rows": pa_csv.read_csv(tmp_path / "orders.csv").num_rows,
                         "ended": False}
    assert json.loads(ok(cli("cancel", "shop", "--json", at=at)).stdout) == {"cancelled": "shop"}
    assert json.loads(ok(cli("list", "--json", at=at)).stdout) == []


def test_describe_watch_redraws_until_ctrl_c(tmp_path: Path, congregation: Daemon) -> None:
    """`describe --watch`: redrawn in place as rows come (the retained count goes from 0 to what
    was published), and Ctrl-C ends it with 130, no traceback, the cursor shown."""
    orders = shop(tmp_path, congregation)
    expected = nl_of(pa_csv.read_csv(orders)).num_rows
    published: list[bool] = []

    def publish_then_see(out: bytes) -> bool:
        if not published and out.count(b"by_country.nl") >= 2:
            ok(cli("publish", "shop/orders", str(orders), at=congregation.address))
            published.append(True)
        return bool(published) and re.search(rb"by_country\.nl +%d " % expected, out) is not None

    code, out = on_a_terminal([str(HALLELUJAH), "--at", congregation.address, "describe", "shop", "--watch", "0.2"],
                              timeout=60, interrupt_when=publish_then_see)
    text = out.decode(errors="replace")
    assert code == 130 and "Traceback" not in text, text[-2000:]
    assert re.search(r"by_country\.nl +0 ", text), "the first view is not there"
    assert out.rfind(b"\x1b[?25h") > out.rfind(b"\x1b[?25l"), "the cursor is left hidden"


def test_explain_without_a_congregation_is_the_plan_a_congregation_makes(tmp_path: Path,
                                                                         congregation: Daemon) -> None:
    """`explain --workers 2` of a document, then the same document submitted to a fresh
    congregation of 2 workers: the same Jahs, in the same roles, in the same processes."""
    (tmp_path / "shop.json").write_text(json.dumps(SHOP))
    plan = json.loads(ok(cli("explain", str(tmp_path / "shop.json"), "--workers", str(congregation.workers),
                             "--json")).stdout)
    planned = {(j["jah"], j["role"], j["process"]) for a in plan["analytics"] for j in a["jahs"]}
    ok(cli("submit", str(tmp_path / "shop.json"), at=congregation.address))
    info = json.loads(ok(cli("describe", "shop", "--json", at=congregation.address)).stdout)
    running = {(j["id"].split("/", 1)[1], j["role"], f"worker {j['worker']}")
               for a in info["tradecrafts"][0]["analytics"] for j in a["jahs"]}
    assert planned == running
    assert sorted(plan["retained"]) == sorted(name for a in info["tradecrafts"][0]["analytics"]
                                              for name in a["retained"] if name != "orders")
    text = ok(cli("explain", str(tmp_path / "shop.json"), "--workers", "1")).stdout
    assert text.startswith("tradecraft shop on 1 worker:") and "large/transform: transform in worker 0" in text
