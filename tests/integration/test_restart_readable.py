"""What a tradecraft kept outlives its congregation: a finished tradecraft's output is still
readable after a restart on the same data dir, and one whose document the operator no longer
allows fails on restart with the reason instead of running."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import trio

from tests.conftest import Daemon
from tests.integration.helpers import read
from tests.integration.test_durability import PUSHED, assert_exact, payments, reference


async def run_to_the_end(db, table: pa.Table) -> pa.Table:
    """Submit the pushed payments tradecraft, publish `table` with its end, read the output."""
    await db.submit(PUSHED)
    await db.publish("pay/payments", table, end=True)
    return await read(db, "pay/large")


async def test_a_finished_tradecraft_is_readable_after_a_restart(daemon_factory) -> None:
    daemon = daemon_factory()
    table = payments(0, 5_000)
    with trio.fail_after(60):
        before = await run_to_the_end(daemon.db(), table)
        daemon.stop()
        daemon.start()
        db = daemon.db()
        assert {t["name"]: t["state"] for t in await db.list()}["pay"] == "finished"
        after = await read(db, "pay/large")
    assert_exact(before, reference(table))
    assert_exact(after, reference(table))


async def test_a_running_tradecraft_whose_source_root_was_withdrawn_fails_on_restart(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    pq.write_table(payments(0, 1_000), root / "payments.parquet")
    doc = {"tradecraft": "paced", "analytics": [
        {"name": "payments", "kind": "stream", "source": {"path": str(root / "payments.parquet"), "follow": False,
                                                          "rate": 10}},
        PUSHED["analytics"][1]]}
    daemon = Daemon(tmp_path / "data", 1, ["--source-root", str(root)]).start()
    try:
        with trio.fail_after(60):
            await daemon.db().submit(doc)
        daemon.kill()
        daemon.extra = []                      # the operator no longer allows the root
        daemon.start()
        with trio.fail_after(60):
            row = {t["name"]: t for t in await daemon.db().list()}["paced"]
        assert row["state"] == "failed"
        assert "refused on restart" in row["error"] and "source.path" in row["error"], row
    finally:
        daemon.stop()


async def test_a_finished_tradecraft_keeps_its_jahs_last_figures_in_describe(daemon_factory) -> None:
    daemon = daemon_factory()
    table = payments(0, 7_000)
    with trio.fail_after(60):
        db = daemon.db()
        await run_to_the_end(db, table)
        while True:     # a worker's last report may come just after the tradecraft has finished
            info = (await db.describe("pay"))["tradecrafts"][0]
            jahs = {j["role"]: j for a in info["analytics"] for j in a["jahs"]}
            if info["state"] == "finished" and jahs["transform"]["state"] == "finished":
                break
            await trio.sleep(0.1)
    assert jahs["transform"]["rows_in"] == table.num_rows
    assert jahs["transform"]["rows_out"] == reference(table).num_rows
    assert jahs["transform"]["state"] == "finished"
