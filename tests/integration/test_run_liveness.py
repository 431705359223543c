"""Liveness of multi-input documents through `hallelujah run`, by repetition.

A two-stream join with 2 workers deadlocked in about one run of six: the SINK merged the two
STREAM_JOIN instances in source order and waited for the one that paced itself (its other
input's watermark had to come through the EXCHANGE, which was blocked sending to the other
instance, which was blocked on the SINK). Each document runs 20 times with 1 and with 2 workers;
every run must finish within its deadline with the exact result (DuckDB computes it here).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.integration.test_stream_join import WINDOW_US, document, reference, requests_and_responses

RUNS = int(os.environ.get("HALLELUJAH_LIVENESS_RUNS", "4"))   # 20 and more by hand, under load
RUN_DEADLINE = 60.0       # one run takes ~1-2 s here; a stall fails loudly long before CI's limit


@pytest.fixture(scope="module")
def streams(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pa.Table, pa.Table]:
    """Two parquet streams of several row groups each, so each is read in parts and every
    position crosses the EXCHANGEs; responses run ahead of requests by up to 1.5 s, so the
    STREAM_JOINs pace themselves."""
    where = tmp_path_factory.mktemp("liveness")
    req, resp = requests_and_responses(120_000, seed=7)
    pq.write_table(req, where / "requests.parquet", row_group_size=10_000)
    pq.write_table(resp, where / "responses.parquet", row_group_size=10_000)
    return where, req, resp


def run_to_end(doc: dict, where: Path, workers: int, tag: str) -> Path:
    """`hallelujah run` as a person types it; fails loudly (with the stall dump) on a hang."""
    path = where / f"{tag}.json"
    path.write_text(json.dumps(doc))
    out = where / f"out-{tag}-{workers}"
    cmd = [sys.executable, "-m", "hallelujah", "run", str(path), "--workers", str(workers),
           "--format", "arrow", "--output-dir", str(out)]
    proc = subprocess.Popen(cmd, cwd=where, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=RUN_DEADLINE)
    except subprocess.TimeoutExpired:
        proc.send_signal(10)     # SIGUSR1: the dump of every process, for the failure message
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            _, err = proc.communicate()
        os.killpg(proc.pid, 9) if proc.poll() is None else None
        pytest.fail(f"{tag} with {workers} workers did not finish in {RUN_DEADLINE:g}s:\n{err[-20000:]}")
    assert proc.returncode == 0, err
    return out


def read_arrow(path: Path) -> pa.Table:
    with pa.ipc.open_file(path) as f:
        return f.read_all()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_two_stream_join_never_hangs_in_run(streams: tuple[Path, pa.Table, pa.Table], workers: int) -> None:
    where, req, resp = streams
    doc = document(str(where / "requests.parquet"), str(where / "responses.parquet"), "inner")
    expected = reference(req, resp, "inner")
    for attempt in range(RUNS):
        got = read_arrow(run_to_end(doc, where, workers, "join") / "trips.arrow")
        rows = sorted(zip(*(got.column(c).to_pylist() for c in
                            ("ts", "src", "dst", "msg_id", "responses.ts", "code"))))
        assert rows == expected, f"run {attempt} with {workers} workers: {len(rows)} rows, {len(expected)} expected"


@pytest.mark.parametrize("workers", [1, 2])
def test_hopping_windows_over_a_joined_stream_never_hang(streams: tuple[Path, pa.Table, pa.Table],
                                                          workers: int) -> None:
    where, req, resp = streams
    doc = document(str(where / "requests.parquet"), str(where / "responses.parquet"), "left")
    doc["analytics"].append({"name": "per_second", "kind": "aggregate", "input": "trips", "time": "ts",
                             "window": "2s", "hop": "1s", "group": ["src"],
                             "measures": {"trips": "count()", "answered": "count_if(not is_null(code))"}})
    con = duckdb.connect()
    con.register("q", req)
    con.register("r", resp)
    expected = sorted(con.execute(f"""
        WITH trips AS (SELECT q.ts, q.src, r.code FROM q LEFT JOIN r
               ON q.src = r.src AND q.dst = r.dst AND q.msg_id = r.msg_id
              AND abs(epoch_us(r.ts) - epoch_us(q.ts)) <= {WINDOW_US}),
             starts AS (SELECT *, (epoch_us(ts) // 1000000) * 1000000 AS s FROM trips)
        SELECT w, src, count(*), count(code) FROM (
            SELECT s AS w, src, code FROM starts UNION ALL SELECT s - 1000000, src, code FROM starts)
        GROUP BY w, src""").fetchall())
    for attempt in range(max(1, RUNS // 2)):
        got = read_arrow(run_to_end(doc, where, workers, "hop") / "per_second.arrow")
        rows = sorted(zip(got.column("window_start").cast(pa.int64()).to_pylist(), got.column("src").to_pylist(),
                          got.column("trips").to_pylist(), got.column("answered").to_pylist()))
        assert rows == expected, f"run {attempt} with {workers} workers"
