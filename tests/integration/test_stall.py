"""A stall explains itself, through a real daemon: a join whose other stream's watermark never
comes is flagged `stalled` in `describe`, `hallelujah debug` and SIGUSR1 show where every Jah
waits (the STREAM_JOIN in `_pace`) with each datastream's credits and queues, and once the other
stream ends the tradecraft finishes with the exact result."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import trio

import hallelujah
from tests.conftest import Daemon
from tests.integration.helpers import read

T0 = 1_700_000_000_000_000
STALL_AFTER = "2"


def waiting_join(where: Path) -> dict:
    """Requests from a file over 20 minutes of event time; responses pushed, one early row."""
    n = 200_000
    ts = T0 + np.arange(n, dtype=np.int64) * 6_000
    pq.write_table(pa.table({"ts": pa.array(ts, pa.timestamp("us")), "id": np.arange(n, dtype=np.int64)}),
                   where / "requests.parquet")
    schema = {"ts": "timestamp[us]", "id": "int64"}
    return {"tradecraft": "waits", "analytics": [
        # paced (20 s of it), so the join still has requests to take when the responses' first
        # watermark arrives: from then on it waits for the next one, which never comes
        {"name": "requests", "kind": "stream", "time": "ts", "schema": schema,
         "source": {"path": str(where / "requests.parquet"), "rate": 10_000}},
        {"name": "responses", "kind": "stream", "time": "ts", "schema": schema},
        {"name": "pairs", "kind": "join", "stream": "requests", "with": "responses", "on": {"id": "id"},
         "time": {"stream": "ts", "with": "ts"}, "window": "1s", "how": "inner"}]}


@pytest.fixture
def stall_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HALLELUJAH_STALL_AFTER", STALL_AFTER)
    daemon = Daemon(tmp_path / "data", 2, ["--source-root", str(tmp_path)]).start()
    yield daemon
    daemon.stop()


async def test_a_waiting_join_is_flagged_stalled_and_says_where_it_waits(stall_daemon: Daemon,
                                                                         tmp_path: Path) -> None:
    early = pa.table({"ts": pa.array([T0 + 500], pa.timestamp("us")), "id": pa.array([0], pa.int64())})
    with trio.fail_after(90):
        async with hallelujah.open_database([stall_daemon.address]) as db:
            await db.submit(waiting_join(tmp_path))
            await db.publish("waits/responses", early, end=False)
            while True:
                info = (await db.describe("waits"))["tradecrafts"][0]
                if info["stalled_for"] is not None:
                    break
                assert info["state"] == "running", info
                await trio.sleep(0.5)
            dump = await db.debug("waits")
            assert "stream_join" in dump and "_pace" in dump, dump
            assert "credits" in dump and "=== worker-0" in dump and "tasks:" in dump, dump
            nothing = pa.table({"ts": pa.array([T0 + 3_600_000_000], pa.timestamp("us")),
                                "id": pa.array([-1], pa.int64())})
            await db.publish("waits/responses", nothing, end=True)   # its end: the end of time
            while (info := (await db.describe("waits"))["tradecrafts"][0])["state"] == "running":
                await trio.sleep(0.2)
            assert info["state"] == "finished" and info["stalled_for"] is None, info
            pairs = await read(db, "waits/pairs")
    assert pairs.column("id").to_pylist() == [0]


def test_sigusr1_writes_every_process_dump(tmp_path: Path) -> None:
    """The dump goes to the congregation's stderr: its own tasks, then each worker's."""
    err = open(tmp_path / "stderr", "w+")  # noqa: SIM115 - the daemon writes to it while the test reads
    proc = subprocess.Popen([sys.executable, "-m", "congregation", "--data-dir", str(tmp_path / "data"),
                             "--listen", "127.0.0.1:0", "--workers", "2"], stdout=subprocess.PIPE,
                            stderr=err, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None and "ready at" in proc.stdout.readline()
        proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 20
        text = ""
        while time.monotonic() < deadline and "=== worker-1" not in text:
            time.sleep(0.2)
            text = (tmp_path / "stderr").read_text()
        assert "=== worker-0" in text and "=== worker-1" in text and "tasks:" in text, text
        assert proc.poll() is None, "SIGUSR1 must not stop the congregation"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
        err.close()


def test_hallelujah_debug_prints_the_dump_and_names_an_unknown_tradecraft(congregation: Daemon) -> None:
    cli = [sys.executable, "-m", "hallelujah", "--at", congregation.address, "debug"]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and "=== worker-0" in done.stdout and "tasks:" in done.stdout, done.stderr
    done = subprocess.run([*cli, "nope"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0 and 'no tradecraft "nope"' in done.stderr and "Traceback" not in done.stderr


def test_sigusr1_on_a_run_dumps_every_process_and_the_run_finishes(tmp_path: Path) -> None:
    n = 20_000
    pq.write_table(pa.table({"id": np.arange(n, dtype=np.int64)}), tmp_path / "ids.parquet")
    doc = {"tradecraft": "paced", "analytics": [
        {"name": "ids", "kind": "stream", "source": {"path": "ids.parquet", "rate": 5_000}},
        {"name": "odd", "kind": "transform", "input": "ids", "where": "id % 2 == 1"}]}
    (tmp_path / "paced.json").write_text(json.dumps(doc))
    proc = subprocess.Popen([sys.executable, "-m", "hallelujah", "run", "paced.json", "--workers", "2",
                             "--format", "arrow", "--output-dir", "out"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        # Once its zygote and both workers are up, the run reads its paced source for 4 s: the
        # dump then comes while every process has its Jahs, however slow the start was.
        deadline = time.monotonic() + 30
        while len(psutil.Process(proc.pid).children(recursive=True)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)
        proc.send_signal(signal.SIGUSR1)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, err
    assert "=== embedded" in err and "=== worker-0" in err and "jah paced/" in err, err
    with pa.ipc.open_file(tmp_path / "out" / "odd.arrow") as f:
        assert f.read_all().column("id").to_pylist() == list(range(1, n, 2))
