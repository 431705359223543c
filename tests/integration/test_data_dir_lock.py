"""One congregation per data dir: a second one exits 2 naming the first's pid; the first goes on."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tests.conftest import Daemon
from tests.integration.helpers import assert_rows_equal, read

DOC = {"tradecraft": "pay", "analytics": [
    {"name": "payments", "kind": "stream", "schema": {"id": "int64", "amount": "float64"}},
    {"name": "large", "kind": "transform", "input": "payments", "where": "amount > 10"}]}


def payments(start: int, n: int) -> pa.Table:
    rng = np.random.default_rng(start)
    return pa.table({"id": np.arange(start, start + n, dtype=np.int64), "amount": rng.uniform(0, 100, n)})


def second_on(data_dir) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "congregation", "--data-dir", str(data_dir),
                           "--listen", "127.0.0.1:0", "--workers", "1"],
                          capture_output=True, text=True, timeout=60, check=False)


async def test_a_second_congregation_on_a_data_dir_in_use_exits_2_naming_the_first(tmp_path):
    data = tmp_path / "data"
    first = Daemon(data).start()
    try:
        assert first.proc is not None
        db = first.db()
        await db.submit(DOC)
        before = payments(0, 20_000)
        await db.publish("pay/payments", before)

        done = second_on(data)
        assert done.returncode == 2, done.stderr
        assert f"in use by another congregation (pid {first.proc.pid}" in done.stderr
        assert "--data-dir" in done.stderr and "Traceback" not in done.stderr
        assert (data / "lock").read_text().strip() == str(first.proc.pid)

        after = payments(20_000, 20_000)           # the first is untouched and keeps serving
        await db.publish("pay/payments", after, end=True)
        both = pa.concat_tables([before, after])
        assert_rows_equal(await read(db, "pay/large"), both.filter(pc.greater(both["amount"], 10)), "pay/large")
    finally:
        assert first.stop() == 0
    again = Daemon(data).start()                    # the lock goes with its process
    try:
        assert again.proc is not None and (data / "lock").read_text().strip() == str(again.proc.pid)
        assert {t["name"]: t["state"] for t in await again.db().list()} == {"pay": "finished"}
    finally:
        assert again.stop() == 0


def test_a_sigkilled_congregation_leaves_no_lock_behind(tmp_path):
    data = tmp_path / "data"
    first = Daemon(data).start()
    assert first.proc is not None
    pid = first.proc.pid
    first.kill()
    again = Daemon(data).start()
    try:
        assert again.proc is not None and again.proc.pid != pid
        assert (data / "lock").read_text().strip() == str(again.proc.pid)
    finally:
        assert again.stop() == 0
