"""The benchmark runner end to end on 20 k rows: data generated, every workload MATCHes; the
Nexmark suite alone on 5 k events, writing only its own section of RESULTS.md."""
from __future__ import annotations

import json
import subprocess
import sys

from bench.nexmark import suite


def test_bench_runner_matches_the_reference_on_20k_rows(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bench", "--n", "20000", "--data", str(tmp_path / "data"),
                           "--workers", "2", "--repeat", "1", "--results", str(tmp_path),
                           "--latency-seconds", "1", "--no-nexmark"],
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


def test_the_nexmark_suite_matches_and_rewrites_only_its_section(tmp_path):
    (tmp_path / "RESULTS.md").write_text("# Benchmark results\n\nThe shared workloads' table.\n")
    done = subprocess.run([sys.executable, "-m", "bench", "--nexmark", "--n", "5000", "--query", "q2", "q7",
                           "--data", str(tmp_path / "data"), "--workers", "1", "--repeat", "1",
                           "--results", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads((tmp_path / "results.json").read_text())["nexmark"]
    assert [(r["query"], r["mode"]) for r in rows] == [(q, m) for q in ("q2", "q7") for m in
                                                       ("hallelujah run", "congregation, from submit")]
    assert all(r["match"] and r["events"] == 5000 and r["events_per_s"] > 0 for r in rows)
    table = (tmp_path / "RESULTS.md").read_text()
    assert table.startswith("# Benchmark results\n\nThe shared workloads' table.\n\n## Nexmark\n")
    assert "| q7 | hallelujah run | 1 |" in table and "Feldera" in table
    # a run of the shared workloads keeps the section; a new Nexmark run replaces it, not the rest
    kept = suite.kept_section(tmp_path / "RESULTS.md")
    assert kept[0] == suite.SECTION and "| q2 | hallelujah run | 1 |" in "\n".join(kept)
    suite.write_section(tmp_path / "RESULTS.md", [suite.SECTION, "", "new figures", ""])
    assert (tmp_path / "RESULTS.md").read_text() == \
        "# Benchmark results\n\nThe shared workloads' table.\n\n## Nexmark\n\nnew figures\n"
