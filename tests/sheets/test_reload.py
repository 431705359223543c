"""Reloading a dataset by hand (`hallelujah reload`, `:reload`, the congregation's "reload", the
INGEST's `{"reload": true}`), against a real congregation: the dataset's file is rewritten with its
modification time kept (so only the reload loads it, not the file watcher), and the stream's rows
published before the reload are joined with the old version, those after with the new one, as
pyarrow joins them here; describe's events record each version with the reason "reload"."""
from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import trio

from hallelujah import updates
from hallelujah.errors import InvalidInput, NotFound
from tests.integration.test_cli import cli_many, ok
from tests.integration.test_split import assert_same_rows, expected_join
from tests.sheets.screen import driven
from tests.sheets.test_analytic import section
from tests.sheets.test_changes import answer
from tests.sheets.test_commands import cli_said

FIELDS = ["country"]


def events(start: int, n: int) -> pa.Table:
    i = np.arange(start, start + n, dtype=np.int64)
    return pa.table({"id": i, "tile": (i * 7) % 120})


def tiles(label: str, n: int) -> pa.Table:
    t = np.arange(n, dtype=np.int64)
    return pa.table({"tile": t, "country": [f"{label}{x % 9}" for x in t]})


def rewrite(path, table: pa.Table) -> None:
    """A new version of the file, with the old modification time: the watcher sees no change."""
    before = os.stat(path)
    pq.write_table(table, path)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(path).st_mtime_ns == before.st_mtime_ns


class Output:
    """The join's output, read from its start as it comes."""

    def __init__(self) -> None:
        self.batches: list[pa.RecordBatch] = []

    async def follow(self, db, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with db.stream("r/named", from_start=True) as batches:
            task_status.started()
            async for batch in batches:
                self.batches.append(batch)

    async def of(self, sent: pa.Table) -> pa.Table:
        """The output rows of the events `sent` (one each: a left join on a unique key), by id."""
        ids = set(sent["id"].to_pylist())
        while True:
            got = pa.Table.from_batches(self.batches, schema=self.batches[0].schema) if self.batches else None
            if got is not None:
                mine = got.filter(pa.array([i in ids for i in got["id"].to_pylist()]))
                if mine.num_rows >= sent.num_rows:
                    return mine.sort_by("id")
            await trio.sleep(0.02)


def joined(sent: pa.Table, version: pa.Table) -> pa.Table:
    return expected_join(sent, version, {"tile": "tile"}, FIELDS, "left").sort_by("id")


async def test_a_reloaded_dataset_joins_later_rows_with_its_new_version(congregation, tmp_path):
    db, at = congregation.db(), congregation.address
    path = tmp_path / "tiles.parquet"
    v1, v2, v3 = tiles("A", 120), tiles("B", 80), tiles("C", 100)     # B leaves tiles 80.. unmatched
    pq.write_table(v1, path)
    doc = {"tradecraft": "r", "analytics": [
        {"name": "ev", "kind": "stream", "schema": {"id": "int64", "tile": "int64"}},
        {"name": "tiles", "kind": "ingest", "source": {"path": str(path)}},
        {"name": "named", "kind": "join", "stream": "ev", "dataset": "tiles", "on": {"tile": "tile"},
         "fields": FIELDS, "how": "left", "output": True}]}
    out = Output()
    with trio.fail_after(60):
        await db.submit(doc)
        async with trio.open_nursery() as nursery:
            await nursery.start(out.follow, db)
            first = events(0, 1_000)
            await db.publish("r/ev", first)
            assert_same_rows(await out.of(first), joined(first, v1))
            rewrite(path, v2)
            nosuch, = await trio.to_thread.run_sync(lambda: cli_many([("reload", "r/ev")], at=at))
            async with driven(db) as wi:
                await wi.until(lambda s: wi.app.feed.info is not None, "the first answer")
                wi.command("reload r/t", "tab")                      # a dataset completes
                assert wi.screen().split("\n")[-1] == ":reload r/tiles"
                wi.keys("esc")
                await answer(wi, "reload r/ev", f"reload r/ev refused: {cli_said(nosuch)}")
                await answer(wi, "reload r/tiles", "reloaded r/tiles: version 2, 80 rows")
                wi.command("tc r/named")                              # the join's screen lists it
                shown = await wi.until(lambda s: "reload" in s and "dataset versions" in s, "the version",
                                       size=(160, 48))
                assert [v[1:5] for v in section(shown, "dataset versions")[1:]] == [
                    ["tiles", "1", "120", "start"], ["tiles", "2", "80", "reload"]]
            later, probes = await after_reload(db, out, 1_000, v1, v2)
            await refusals(db, path)
            rewrite(path, v3)
            said, = await trio.to_thread.run_sync(lambda: cli_many([("reload", "r/tiles")], at=at))
            assert ok(said).stdout == "reloaded r/tiles: version 3, 100 rows\n"
            _, more = await after_reload(db, out, later, v2, v3)
            nursery.cancel_scope.cancel()
        info = (await db.describe("r"))["tradecrafts"][0]
        versions = [(e["version"], e["rows"], e["reason"]) for e in info["events"] if e["kind"] == "dataset_version"]
        assert versions == [(1, 120, "start"), (2, 80, "reload"), (3, 100, "reload")]
    assert probes + more <= 10, "the new version took more than a few batches to reach the JOIN"


async def after_reload(db, out: Output, start: int, old: pa.Table, new: pa.Table) -> tuple[int, int]:
    """Batches published after a reload: each is joined with one version, the old one only until
    the handover reaches the JOIN (small probes), then the new one, for good (a last 1,000 rows).
    Returns where the events' ids go on, and how many probes were joined with the old version."""
    old_ones = 0
    while True:
        probe = events(start, 50)
        start += probe.num_rows
        await db.publish("r/ev", probe)
        got = await out.of(probe)
        if got.to_pylist() == joined(probe, new).to_pylist():
            break
        assert_same_rows(got, joined(probe, old))               # else the whole batch is the old version
        old_ones += 1
    rest = events(start, 1_000)
    await db.publish("r/ev", rest)
    assert_same_rows(await out.of(rest), joined(rest, new))
    return start + rest.num_rows, old_ones


async def refusals(db, path) -> None:
    """Refused with what is wrong, and nothing changes: no version, the tradecraft runs on."""
    with pytest.raises(InvalidInput, match=r"analytic 5: expected a dataset, TRADECRAFT/ANALYTIC"):
        await db.command("reload", analytic=5)
    with pytest.raises(NotFound, match=r'no running tradecraft "nosuch" \(running: r\)'):
        await updates.reload(db, "nosuch/tiles")
    with pytest.raises(NotFound, match=r'no dataset "r/named" \(datasets of r: tiles\)'):
        await updates.reload(db, "r/named")
    kept = path.with_suffix(".kept")
    path.rename(kept)                                      # the file gone: refused before a row is sent
    with pytest.raises(NotFound, match=f"source file '{path}' does not exist"):
        await updates.reload(db, "r/tiles")
    bad = path.with_suffix(".bad")                         # not parquet, with the same time, put in place at once
    bad.write_bytes(b"PAR1 not parquet at all PAR1")
    os.utime(bad, ns=(os.stat(kept).st_atime_ns, os.stat(kept).st_mtime_ns))
    os.replace(bad, path)
    with pytest.raises(InvalidInput, match=f"{path}: cannot be read: "):
        await updates.reload(db, "r/tiles")
    os.replace(kept, path)
    info = (await db.describe("r"))["tradecrafts"][0]
    assert info["state"] == "running"
    assert [e["version"] for e in info["events"] if e["kind"] == "dataset_version"] == [1, 2]
