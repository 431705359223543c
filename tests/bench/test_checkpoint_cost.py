"""`python -m bench.checkpoint_cost` at a tiny size: both modes of reqresp measured (the stream
join, whose outputs commit with checkpoints; clicks runs the same code and is left to the bench,
for the suite's time),
checkpoints taken only where asked for, and every row of every pass through, against DuckDB on
the generated files; and its CHECKPOINTS.md section replaced in place, the rest kept."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb

from bench.checkpoint_cost import RESULTS_SECTION, SECTION, kept_section, write_section

ROOT = Path(__file__).resolve().parents[2]
WORKLOADS = ("reqresp",)


def test_both_modes_are_measured_with_checkpoints_only_where_asked_and_every_row_through(tmp_path):
    data = tmp_path / "data"
    done = subprocess.run([sys.executable, "-m", "bench.checkpoint_cost", "--n", "20000", "--data", str(data),
                           "--seconds", "1", "--warmup", "0.5", "--sample", "0.2", "--rounds", "1",
                           "--workers", "1", "--deadline", "60", "--results", str(tmp_path),
                           "--workload", *WORKLOADS],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "checkpoint_cost.json").read_text())
    runs = {(r["workload"], r["mode"]): r for r in result["runs"]}
    assert set(runs) == {(w, m) for w in WORKLOADS for m in ("every 1 s", "none")}

    def count(sql: str) -> int:
        return duckdb.connect().execute(sql.replace("{d}", str(data))).fetchone()[0]

    # per workload: its input rows, and its output rows per pass of the input
    queries = {"clicks": ("SELECT count(*) FROM '{d}/clicks.parquet'",
                          "SELECT count(DISTINCT ts // 3600) FROM '{d}/clicks.parquet'"),
               "reqresp": ("SELECT (SELECT count(*) FROM '{d}/requests.parquet') "
                           "+ (SELECT count(*) FROM '{d}/responses.parquet')",
                           "SELECT count(*) FROM '{d}/requests.parquet' q JOIN '{d}/responses.parquet' r "
                           "USING (src, dst, msg_id) WHERE r.ts BETWEEN q.ts AND q.ts + 1000000")}
    inputs = {w: count(queries[w][0]) for w in WORKLOADS}
    per_pass = {w: count(queries[w][1]) for w in WORKLOADS}
    for (workload, mode), r in runs.items():
        assert r["passes"] >= 2 and r["samples"] >= 2 and r["rows_per_s"] > 0 and r["cpu_us_per_row"] > 0, r
        # every pass of the input went in and through the stateful Jahs, and its output came out
        assert r["published_rows"] == r["taken_rows"] == r["passes"] * inputs[workload], r
        assert r["output_rows"] == r["passes"] * per_pass[workload], r
        assert r["match"], r
        cp = r["checkpoints"]
        if mode == "none":
            assert cp["completed"] == 0 and r["checkpoint_ids"] == [0, 0], r
        else:
            assert cp["completed"] > 0 and cp["abandoned"] == 0, r
    summary = {s["workload"]: s for s in result["summary"]}
    assert set(summary) == set(WORKLOADS) and all(s["match"] for s in summary.values())
    assert all(s["none_checkpoints"] == 0 for s in summary.values())
    assert all(f"| {w} |" in done.stdout for w in WORKLOADS)
    short = (tmp_path / "checkpoint_cost_results.md").read_text()
    assert short.startswith(RESULTS_SECTION + "\n") and "CHECKPOINTS.md#checkpoint-cost-steady-state" in short
    assert all(f"{w} " in short for w in WORKLOADS)


def test_its_section_is_replaced_in_place_and_added_when_missing(tmp_path):
    doc = tmp_path / "CHECKPOINTS.md"
    doc.write_text(f"# Checkpoints\n\n## Cost\n\nold cost\n\n{SECTION}\n\nold table\n\n## Recovery\n\nkept\n")
    write_section(doc, [SECTION, "", "new table", ""])
    assert doc.read_text() == f"# Checkpoints\n\n## Cost\n\nold cost\n\n{SECTION}\n\nnew table\n\n## Recovery\n\nkept\n"
    doc.write_text("# Checkpoints\n\n## Recovery\n\nkept\n")
    write_section(doc, [SECTION, "", "new table", ""])
    assert doc.read_text() == f"# Checkpoints\n\n## Recovery\n\nkept\n\n{SECTION}\n\nnew table\n"
    # RESULTS.md's short section, as a writer of the rest of that file would keep it
    results = tmp_path / "RESULTS.md"
    results.write_text(f"# Benchmark results\n\n{RESULTS_SECTION}\n\nsee CHECKPOINTS.md\n\n## Nexmark\n\nq0\n")
    assert kept_section(results) == [RESULTS_SECTION, "", "see CHECKPOINTS.md", ""]
    assert kept_section(doc, RESULTS_SECTION) == []
