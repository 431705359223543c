"""A congregation loads UDFs only from its operator's `--udf-dir`s and reads sources only under
its `--source-root`s, never its data dir; user code and unreadable files never stop a process.

Every hostile document is sent raw (`db.command("submit", ...)`), as a hostile client would, past
the client library's own checks. Each refusal must name the field and the value, change nothing,
and leave the daemon serving; outputs are checked against pyarrow computed here.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import trio

from hallelujah.errors import TradecraftError
from hallelujah.tradecraft import parse_document
from tests.conftest import Daemon
from tests.integration.helpers import assert_rows_equal, read, wait_state

SECRET = "hj-secret-text-7f3a"     # what a file outside the roots holds: it must never come back


def nums(n: int, seed: int = 5) -> pa.Table:
    rng = np.random.default_rng(seed)
    a = rng.integers(-1000, 1000, n)
    return pa.table({"id": np.arange(n, dtype=np.int64), "a": a})


def stream(path: str, schema: dict | None = None) -> dict:
    a = {"name": "nums", "kind": "stream", "source": {"path": path}}
    return a | ({"schema": schema} if schema else {})


def transform(udf: str, **more: str) -> dict:
    return {"name": "out", "kind": "transform", "input": "nums", "udf": udf, **more}


async def refused(db, document: dict, path: str, says: str) -> str:
    """A raw submit refused with a TradecraftError naming `path`; the tradecraft was not kept."""
    with pytest.raises(TradecraftError) as e:
        await db.command("submit", document=document)
    assert e.value.path == path, str(e.value)
    assert says in str(e.value), str(e.value)
    assert SECRET not in str(e.value)
    assert document["tradecraft"] not in {t["name"] for t in await db.list()}
    return str(e.value)


def family(daemon: Daemon) -> list[int]:
    """The daemon, its zygote and its workers: the processes that must outlive any document."""
    assert daemon.proc is not None and daemon.proc.poll() is None, "the congregation stopped"
    return sorted([daemon.proc.pid] + [p.pid for p in psutil.Process(daemon.proc.pid).children(recursive=True)])


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    named = {k: tmp_path / k for k in ("udfs", "elsewhere", "root", "outside")}
    for d in named.values():
        d.mkdir()
    secret = named["outside"] / "secret.csv"
    secret.write_text(f"id,a\n1,2\n{SECRET},3\n")
    secret.chmod(0o600)
    return named


@pytest.fixture
def daemon(tmp_path: Path, dirs: dict[str, Path]):
    d = Daemon(tmp_path / "data", extra=["--udf-dir", str(dirs["udfs"]), "--source-root", str(dirs["root"])]).start()
    yield d
    d.stop()


UDFS = {
    "hj_twice": '''
        import pyarrow.compute as pc

        def twice(batch):
            return batch.append_column("twice", pc.multiply(batch.column("a"), 2))
    ''',
    "hj_exits": '''
        import sys
        import pyarrow.compute as pc

        def on_negative(batch):
            """Exits the process (as a careless script would) when it meets a negative a."""
            if batch.num_rows and pc.any(pc.less(batch.column("a"), 0)).as_py():
                sys.exit(3)
            return batch

        def always(batch):
            raise SystemExit("bye")

        def interrupts(batch):
            raise KeyboardInterrupt
    ''',
    "hj_exits_on_import": '''
        raise SystemExit(7)
    ''',
}


async def test_udfs_load_only_from_the_operators_dirs_and_never_stop_the_congregation(daemon, dirs):
    for name, text in UDFS.items():
        (dirs["udfs"] / f"{name}.py").write_text(textwrap.dedent(text))
    ran = dirs["elsewhere"] / "ran"
    (dirs["elsewhere"] / "evil.py").write_text(f"open({str(ran)!r}, 'w').write('imported')\ndef f(b):\n    return b\n")
    (dirs["udfs"] / "hj_link.py").symlink_to(dirs["elsewhere"] / "evil.py")
    table = nums(30_000)
    table = table.set_column(1, "a", pc.if_else(pc.equal(pc.bit_wise_and(table["id"], 1023), 0), -1,
                                                 pc.abs(table["a"])))      # a few negative rows
    pq.write_table(table, dirs["root"] / "nums.parquet", row_group_size=4096)
    source = str(dirs["root"] / "nums.parquet")
    udfs = str(dirs["udfs"])
    db = daemon.db()
    before = family(daemon)

    with trio.fail_after(120):
        def doc(name: str, udf: str, **more: str) -> dict:
            return {"tradecraft": name, "analytics": [stream(source), transform(udf, **more)]}

        await refused(db, doc("a", "sys:exit", udf_path=udfs), "analytics[1].udf", 'no module "sys"')
        await refused(db, doc("b", "os:_exit", udf_path=udfs), "analytics[1].udf", 'no module "os"')
        await refused(db, doc("c", "evil:f", udf_path=str(dirs["elsewhere"])), "analytics[1].udf_path",
                      f'"{dirs["elsewhere"]}" is not a directory this congregation loads UDFs from')
        await refused(db, doc("d", "evil:f", udf_path=f"{udfs}/../elsewhere"), "analytics[1].udf_path",
                      "is not a directory this congregation loads UDFs from")
        await refused(db, doc("e", "hj_link:f", udf_path=udfs), "analytics[1].udf", "leads out of")
        await refused(db, doc("f", "hj_twice:twice"), "analytics[1].udf_path",    # no udf_path: the daemon's cwd
                      "is not a directory this congregation loads UDFs from")
        await refused(db, doc("g", "hj_exits:always", udf_path=udfs), "analytics[1].udf",
                      "failed on an empty batch: udf \"hj_exits:always\" raised SystemExit: bye")
        await refused(db, doc("h", "hj_exits:interrupts", udf_path=udfs), "analytics[1].udf", "KeyboardInterrupt")
        await refused(db, doc("i", "hj_exits_on_import:f", udf_path=udfs), "analytics[1].udf", "raised SystemExit: 7")
        assert not ran.exists(), "a module outside the UDF dirs was imported"
        assert family(daemon) == before

        # Allowed: the output is the UDF's, computed here with pyarrow.
        await db.command("submit", document=doc("good", "hj_twice:twice", udf_path=udfs))
        expected = table.append_column("twice", pc.multiply(table["a"], 2))
        assert_rows_equal(await read(db, "good/out", timeout=60), expected, "good/out")

        # A UDF that exits on some batches: their rows are rejected with the reason, the rest flow.
        await db.command("submit", document=doc("exits", "hj_exits:on_negative", udf_path=udfs))
        got = await read(db, "exits/out", timeout=60)
        rejected = await read(db, "exits/out.rejected", timeout=60)
        negative = pc.less(table["a"], 0)
        assert_rows_equal(got, table.filter(pc.invert(negative)), "exits/out")
        assert_rows_equal(rejected.select(["id", "a"]).sort_by("id"), table.filter(negative), "exits/out.rejected")
        assert set(rejected["reason"].to_pylist()) == {'udf "hj_exits:on_negative" raised SystemExit: 3'}
        await wait_state(db, "exits")
        assert family(daemon) == before, "a worker or the congregation went away"


async def test_sources_are_read_only_under_the_operators_roots(daemon, dirs, tmp_path):
    root = dirs["root"]
    (root / "link.csv").symlink_to(dirs["outside"] / "secret.csv")
    (root / "passwd.csv").symlink_to("/etc/passwd")
    table = nums(5_000)
    pq.write_table(table, root / "nums.parquet")
    db = daemon.db()
    before = family(daemon)
    schema = {"id": "int64", "a": "int64"}

    def doc(name: str, path: str, declared: dict | None = None) -> dict:
        return {"tradecraft": name, "analytics": [stream(path, declared)]}

    with trio.fail_after(60):
        for i, path in enumerate([f"{root}/../../../../../../etc/passwd", "/etc/passwd",
                                  str(dirs["outside"] / "secret.csv"), f"{root}/../outside/secret.csv",
                                  str(root / "link.csv"), str(root / "passwd.csv"),
                                  str(tmp_path / "data" / "catalog.db"), "relative/../../x.csv"]):
            for declared in (None, schema):      # with a schema the file is not even looked at
                await refused(db, doc(f"r{i}", path, declared), "analytics[0].source.path",
                              f"{json.dumps(path)} is not under a directory this congregation reads sources from")
        assert family(daemon) == before

        await db.command("submit", document=doc("ok", str(root / "nums.parquet")))
        assert_rows_equal(await read(db, "ok/nums"), table, "ok/nums")


async def test_the_data_dir_is_never_a_source_even_under_a_root(tmp_path):
    """--source-root names the data dir's parent: its catalog.db (every client's documents) stays out."""
    data = tmp_path / "data"
    daemon = Daemon(data, extra=["--source-root", str(tmp_path)]).start()
    try:
        db = daemon.db()
        (tmp_path / "to_data").symlink_to(data)
        with trio.fail_after(60):
            await db.command("submit", document={"tradecraft": "victim", "analytics": [
                {"name": "s", "kind": "stream", "schema": {"x": "int64"}, "description": SECRET}]})
            for i, path in enumerate([str(data / "catalog.db"), f"{data}/../data/catalog.db",
                                      str(tmp_path / "to_data" / "catalog.db"), str(data / "logs.db")]):
                for table in ("tradecrafts", "sqlite_master"):
                    await refused(db, {"tradecraft": f"thief{i}", "analytics": [
                        {"name": "docs", "kind": "stream", "source": {"path": path, "table": table}}]},
                        "analytics[0].source.path", "is not under a directory this congregation reads sources from")
            assert [t["name"] for t in await db.list()] == ["victim"]
    finally:
        daemon.stop()


async def test_a_malformed_file_s_errors_and_reasons_never_quote_its_text(daemon, dirs):
    root = dirs["root"]
    # No schema declared: the daemon infers one, and the file's third row has a field too many.
    (root / "ragged.csv").write_text(f"id,a\n1,2\n{SECRET},3,4\n")
    # A schema declared: rows that do not parse are rejected, with reasons naming line and field.
    (root / "typed.csv").write_text(f"id,a\n1,2\n2,{SECRET}\n3,4,{SECRET}\n4,5\n")
    (root / "typed.jsonl").write_text(
        f'{{"id": 1, "a": 2}}\n{{"id": 2, "a": "{SECRET}"}}\n{SECRET}\n{{"id": 4, "a": 5}}\n')
    # Fields the schema does not have fail the source whole, naming the field, not the row.
    (root / "shape.csv").write_text(f"id,b\n1,{SECRET}\n")
    db = daemon.db()
    schema = {"id": "int64", "a": "int64"}
    with trio.fail_after(90):
        message = await refused(db, {"tradecraft": "ragged", "analytics": [stream(str(root / "ragged.csv"))]},
                                "analytics[0].source", "a row has 3 fields where the header has 2")
        for fmt in ("csv", "jsonl"):
            await db.command("submit", document={"tradecraft": f"typed-{fmt}", "analytics": [
                stream(str(root / f"typed.{fmt}"), schema)]})
            got = await read(db, f"typed-{fmt}/nums")
            assert got.to_pylist() == [{"id": 1, "a": 2}, {"id": 4, "a": 5}]
            rejected = await read(db, f"typed-{fmt}/nums.rejected")
            reasons = rejected["reason"].to_pylist()
            assert len(reasons) == 2 and not any(SECRET in r for r in reasons), reasons
            assert 'field "a"' in reasons[0] and ("row 2" if fmt == "csv" else "line 2") in reasons[0], reasons
            await wait_state(db, f"typed-{fmt}")
        await db.command("submit", document={"tradecraft": "shape", "analytics": [
            stream(str(root / "shape.csv"), schema)]})
        row = await wait_state(db, "shape", "failed", timeout=30)
        assert 'field "b" is not in the schema' in row["error"] and SECRET not in row["error"], row
    assert SECRET not in message


def test_run_reads_the_document_s_dir_and_the_working_dir_only(tmp_path):
    """`hallelujah run` allows the document's directory (sources and UDFs) and the working
    directory (sources); a source elsewhere is refused with exit 2 and one line."""
    docs, work, other = tmp_path / "docs", tmp_path / "work", tmp_path / "other"
    for d in (docs, work, other):
        d.mkdir()
    table = nums(2_000)
    for d in (docs, work, other):
        pq.write_table(table, d / "nums.parquet")
    (docs / "hj_twice.py").write_text(textwrap.dedent(UDFS["hj_twice"]))
    expected = table.append_column("twice", pc.multiply(table["a"], 2))
    hallelujah = Path(sys.executable).with_name("hallelujah")

    def run(source: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        doc = docs / "doc.json"
        doc.write_text(json.dumps({"tradecraft": "r", "analytics": [stream(source), transform("hj_twice:twice")]}))
        return subprocess.run([str(hallelujah), "run", str(doc), "--workers", "1", "--output-dir",
                               str(tmp_path / "out"), "--format", "parquet"],
                              cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})

    for source, cwd in (("nums.parquet", work), (str(work / "nums.parquet"), work)):
        done = run(source, cwd)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        assert_rows_equal(pq.read_table(tmp_path / "out" / "out.parquet"), expected, f"run {source}")
    done = run(str(other / "nums.parquet"), work)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "analytics[0].source.path: " in done.stderr, done.stderr


def test_a_client_checking_its_own_document_has_no_limits_but_never_imports_from_sys_path(tmp_path):
    (tmp_path / "hj_twice.py").write_text(textwrap.dedent(UDFS["hj_twice"]))
    pq.write_table(nums(10), tmp_path / "nums.parquet")
    doc = {"tradecraft": "c", "analytics": [stream(str(tmp_path / "nums.parquet")), transform("hj_twice:twice")]}
    assert parse_document(doc, tmp_path).stream_schema("out").names == ["id", "a", "twice"]
    with pytest.raises(TradecraftError, match='no module "json"'):
        parse_document({**doc, "analytics": [doc["analytics"][0], transform("json:dumps")]}, tmp_path)
