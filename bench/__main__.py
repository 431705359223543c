"""`python -m bench`: the shared workloads and Nexmark through Hallelujah, against DuckDB in the same sitting.

Generates the data with ../shared/bench/gen.py (and bench/nexmark/gen.py) if missing, runs each
workload and Nexmark query as `hallelujah run` (whole process, timed from outside like DuckDB's
whole process) and on a running congregation, verifies each result against the DuckDB reference,
and writes bench/results.json and bench/RESULTS.md (`--nexmark` runs only Nexmark and rewrites only
its section; `--no-nexmark` leaves it out and keeps its section).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import compile_bytecode, steady_state, timed
from bench.nexmark import queries as nexmark_queries
from bench.nexmark import suite as nexmark
from bench.workloads import EARLY_OUTPUT, OUTPUT_FORMAT, OUTPUTS, WORKLOADS, events_of

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("HBENCH_SHARED", HERE / "shared"))


def ensure_data(data: Path, n: int) -> None:
    meta = data / "meta.json"
    if meta.exists() and json.loads(meta.read_text())["n"] == n and (data / "reference.json").exists():
        return
    print(f"generating {n:,} events into {data} …", file=sys.stderr)
    subprocess.run([sys.executable, str(SHARED / "gen.py"), "--n", str(n), "--out", str(data)], check=True)
    subprocess.run([sys.executable, str(SHARED / "reference.py"), "--write"], check=True,
                   env={**os.environ, "HBENCH_DATA": str(data)}, cwd=SHARED)


def duckdb_in_process(workload: str, env: dict[str, str]) -> float:
    """DuckDB's events/s timed after its imports (reference.py's RESULT line)."""
    out = subprocess.run([sys.executable, str(SHARED / "reference.py"), "--workload", workload],
                         env=env, cwd=SHARED, capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT "))
    return float(json.loads(line[len("RESULT "):])["events_per_s_in_process"])


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2_000_000)
    ap.add_argument("--data", default=os.environ.get("HBENCH_DATA", "/tmp/hbench-data"))
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--results", default=str(HERE), help="where results.json and RESULTS.md go")
    ap.add_argument("--workload", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS))
    ap.add_argument("--latency-seconds", type=float, default=10.0, help="0 skips the latency run")
    ap.add_argument("--memory", action="store_true",
                    help="also run enrich on 5x the events and compare peak RSS (generates 5x data)")
    only = ap.add_mutually_exclusive_group()
    only.add_argument("--nexmark", action="store_true", help="run only the Nexmark suite (its section of RESULTS.md)")
    only.add_argument("--no-nexmark", action="store_true", help="leave the Nexmark suite out (its section stays)")
    ap.add_argument("--nexmark-events", type=int, help="events Nexmark generates (default: --n)")
    ap.add_argument("--nexmark-data", help="where Nexmark's files are made (default: --data with -nexmark)")
    ap.add_argument("--query", nargs="+", choices=list(nexmark_queries.QUERIES), default=list(nexmark_queries.QUERIES),
                    help="the Nexmark queries to run")
    a = ap.parse_args()
    compile_bytecode()
    out = Path(a.results)
    out.mkdir(parents=True, exist_ok=True)      # a results dir of its own may be new
    everything = {} if not (out / "results.json").exists() else json.loads((out / "results.json").read_text())
    failed = []
    if not a.nexmark:
        lines, results = shared_workloads(a)
        everything.update(results)
        from bench import checkpoint_cost  # here: it imports from this module
        # sections other runs write stay until they replace them (Nexmark's runs to the end)
        kept = [[""] + part for part in (checkpoint_cost.kept_section(out / "RESULTS.md"),
                                         nexmark.kept_section(out / "RESULTS.md")) if part]
        (out / "RESULTS.md").write_text("\n".join(lines + [line for part in kept for line in part]) + "\n")
        failed += [r["workload"] for r in results["workloads"] if not r["match"]]
    if not a.no_nexmark:
        events = a.nexmark_events or a.n
        before = os.getloadavg()[0]
        rows = nexmark.run_suite(Path(a.nexmark_data or a.data + "-nexmark"), events, a.query, a.workers, a.repeat)
        everything["nexmark"] = rows
        command = " ".join(["python -m bench", *sys.argv[1:]])
        nexmark.write_section(out / "RESULTS.md", nexmark.section(rows, command, events, (before, os.getloadavg()[0])))
        failed += [f"nexmark {r['query']}" for r in rows if not r["match"]]
    (out / "results.json").write_text(json.dumps(everything, indent=1))
    if failed:
        raise SystemExit(f"did not match the reference: {', '.join(sorted(set(failed)))}")


def shared_workloads(a: argparse.Namespace) -> tuple[list[str], dict]:
    """The shared workloads, the latency run and the memory run: RESULTS.md's lines and results.json's keys."""
    data = Path(a.data)
    ensure_data(data, a.n)
    reference = json.loads((data / "reference.json").read_text())
    env = {**os.environ, "HBENCH_DATA": str(data)}
    results = []
    for workload in a.workload:
        document, check = WORKLOADS[workload]
        events = events_of(workload, json.loads((data / "meta.json").read_text()))
        duck = min(timed([sys.executable, str(SHARED / "reference.py"), "--workload", workload], env).seconds
                   for _ in range(a.repeat))
        duck_in_process = max(duckdb_in_process(workload, env) for _ in range(a.repeat))
        for workers in a.workers:
            with tempfile.TemporaryDirectory() as tmp:
                doc = Path(tmp) / f"{workload}.json"
                doc.write_text(json.dumps(document(data)))
                runs = [timed([sys.executable, "-m", "hallelujah", "run", str(doc), "--workers", str(workers),
                               "--format", OUTPUT_FORMAT, "--output-dir", str(Path(tmp) / "out")], cwd=data)
                        for _ in range(a.repeat)]
                got = check(Path(tmp) / "out")
            best = min(runs)
            seconds, peak = best.seconds, best.peak_rss
            match = got == reference[workload]
            results.append({"workload": workload, "mode": "hallelujah run", "workers": workers,
                            "events": events, "seconds": round(seconds, 3),
                            "events_per_s": round(events / seconds), "peak_rss_mb": peak >> 20,
                            "duckdb_whole_process_s": round(duck, 3),
                            "ratio_to_duckdb": round(duck / seconds, 3), "match": match})
            print(("MATCH" if match else "MISMATCH"), json.dumps(results[-1]))
            rate, peak, rows = max(steady_state(document(data), workers, OUTPUTS[workload], events,
                                                early=workload in EARLY_OUTPUT, data=data)
                                   for _ in range(a.repeat))
            results.append({"workload": workload, "mode": "congregation, steady state", "workers": workers,
                             "events": events, "seconds": round(events / rate, 3),
                             "events_per_s": round(rate), "peak_rss_mb": peak >> 20,
                             "duckdb_in_process_events_per_s": round(duck_in_process),
                             "ratio_to_duckdb": round(rate / duck_in_process, 3),
                             # the rows only: the full check is the whole-process run's
                             "match": rows == _rows(reference[workload])})
            print(json.dumps(results[-1]))
    latency = None
    if a.latency_seconds > 0:
        done = subprocess.run([sys.executable, "-m", "bench.latency", "--seconds", str(a.latency_seconds)],
                              capture_output=True, text=True, check=True)
        latency = json.loads(done.stdout.strip().splitlines()[-1])
        print(json.dumps(latency))
    memory = measure_memory(a, data) if a.memory else None
    lines = ["# Benchmark results", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
             f"N = {a.n:,}; best of {a.repeat}; `python -m bench` on {time.strftime('%Y-%m-%d')}.", "",
             "Whole-process rows compare with DuckDB's whole process (reference.py run as a process); "
             "steady-state rows (the stream's events over the time from the output's first batch to its last — from the submit for clicks, whose first window closes an hour of events in — on a running congregation) with "
             "DuckDB's in-process figure (reference.py's RESULT line), both timed in this sitting.", "",
             "| workload | mode | workers | events/s | seconds | peak RSS | DuckDB | ratio | result |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        duck = (f"{r['duckdb_whole_process_s']} s" if "duckdb_whole_process_s" in r
                else f"{r['duckdb_in_process_events_per_s']:,}/s")
        lines.append(f"| {r['workload']} | {r['mode']} | {r['workers']} | {r['events_per_s']:,} | {r['seconds']} "
                     f"| {r['peak_rss_mb']} MB | {duck} | {r['ratio_to_duckdb']} "
                     f"| {'MATCH' if r['match'] else 'MISMATCH'} |")
    if latency:
        lines += ["", f"Latency (`python -m bench.latency`, {latency['workers']} workers, pushed stream → transform → "
                      f"`stream` client): publishing {latency['rate_rows_per_s']:,} rows/s, half the measured maximum "
                      f"of {latency['max_rows_per_s']:,}, in batches of {latency['rows_per_batch']:,}: from "
                      f"acknowledgement to arrival p50 {latency['from_ack_ms']['p50']} ms, p99 "
                      f"{latency['from_ack_ms']['p99']} ms, max {latency['from_ack_ms']['max']} ms; from the send "
                      f"p50 {latency['from_send_ms']['p50']} ms, p99 {latency['from_send_ms']['p99']} ms."]
    if memory:
        lines += ["", f"Memory (`python -m bench --memory`, enrich, `hallelujah run`, 2 workers): peak RSS "
                      f"{memory['peak_rss_mb_1x']} MB at {memory['events_1x']:,} events, {memory['peak_rss_mb_5x']} MB "
                      f"at {memory['events_5x']:,}: ratio {memory['ratio']}."]
    return lines, {"workloads": results, "latency": latency, "memory": memory}


def measure_memory(a: argparse.Namespace, data: Path) -> dict:
    """Peak RSS of a whole `hallelujah run` of enrich at the data's size and at 5x it."""
    big = data.with_name(data.name + "-5x")
    ensure_data(big, a.n * 5)
    peaks = {}
    for label, where in (("1x", data), ("5x", big)):
        with tempfile.TemporaryDirectory() as tmp:
            doc = Path(tmp) / "enrich.json"
            doc.write_text(json.dumps(WORKLOADS["enrich"][0](where)))
            peaks[label] = min(timed(cwd=where, cmd=[sys.executable, "-m", "hallelujah", "run", str(doc), "--workers", "2",
                                      "--format", OUTPUT_FORMAT, "--output-dir", str(Path(tmp) / "out")]).peak_rss
                               for _ in range(a.repeat))
    return {"events_1x": a.n, "events_5x": a.n * 5, "peak_rss_mb_1x": peaks["1x"] >> 20,
            "peak_rss_mb_5x": peaks["5x"] >> 20, "ratio": round(peaks["5x"] / peaks["1x"], 2)}


def _rows(result: dict) -> int:
    """Output rows a reference result stands for (clicks lists its rows; the joins count them)."""
    return len(result["rows"]) if isinstance(result["rows"], list) else result["rows"]


if __name__ == "__main__":
    main()
