"""The benchmark runner end to end on 20 k rows: data generated, every workload MATCHes."""
from __future__ import annotations

import json
import subprocess
import sys


def test_bench_runner_matches_the_reference_on_20k_rows(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bench", "--n", "20000", "--data", str(tmp_path / "data"),
                           "--workers", "2", "--repeat", "1", "--results", str(tmp_path),
                           "--latency-seconds", "1"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    everything = json.loads((tmp_path / "results.json").read_text())
    results = everything["workloads"]
    assert everything["latency"]["batches"] == 50 and everything["latency"]["from_ack_ms"]["p99"] > 0
    assert {r["mode"] for r in results} == {"hallelujah run", "congregation, steady state"}
    assert all(r["match"] for r in results)
    assert {r["workload"] for r in results} == {"enrich", "clicks", "reqresp"}
    table = (tmp_path / "RESULTS.md").read_text()
    assert all(f"| {w} |" in table for w in ("enrich", "clicks", "reqresp")) and "Latency" in table
