"""`python -m bench`: the shared workloads through Hallelujah, against DuckDB in the same sitting.

Generates the data with ../shared/bench/gen.py if missing, runs each workload as `hallelujah run`
(whole process, timed from outside like DuckDB's whole process), verifies the result against
reference.json, and writes bench/results.json and bench/RESULTS.md.
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

import psutil

from bench.workloads import NOT_YET, WORKLOADS

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("HBENCH_SHARED", HERE.parent.parent / "shared" / "bench"))


def ensure_data(data: Path, n: int) -> None:
    meta = data / "meta.json"
    if meta.exists() and json.loads(meta.read_text())["n"] == n and (data / "reference.json").exists():
        return
    print(f"generating {n:,} events into {data} …", file=sys.stderr)
    subprocess.run([sys.executable, str(SHARED / "gen.py"), "--n", str(n), "--out", str(data)], check=True)
    subprocess.run([sys.executable, str(SHARED / "reference.py"), "--write"], check=True,
                   env={**os.environ, "HBENCH_DATA": str(data)}, cwd=SHARED)


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of the whole process tree."""
    start = time.perf_counter()
    proc = psutil.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        try:
            procs = [proc, *proc.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.02)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed with {proc.returncode}")
    return seconds, peak


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2_000_000)
    ap.add_argument("--data", default=os.environ.get("HBENCH_DATA", "/tmp/hbench-data"))
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    data = Path(a.data)
    ensure_data(data, a.n)
    reference = json.loads((data / "reference.json").read_text())
    env = {**os.environ, "HBENCH_DATA": str(data)}
    results = []
    for workload, (document, check) in WORKLOADS.items():
        events = json.loads((data / "meta.json").read_text())["rows"]["gps_events"]
        duck = min(timed([sys.executable, str(SHARED / "reference.py"), "--workload", workload], env)[0]
                   for _ in range(a.repeat))
        for workers in a.workers:
            with tempfile.TemporaryDirectory() as tmp:
                doc = Path(tmp) / f"{workload}.json"
                doc.write_text(json.dumps(document(data)))
                runs = [timed([sys.executable, "-m", "hallelujah", "run", str(doc), "--workers", str(workers),
                               "--format", "parquet", "--output-dir", str(Path(tmp) / "out")])
                        for _ in range(a.repeat)]
                got = check(Path(tmp) / "out")
            seconds, peak = min(runs)
            match = got == reference[workload]
            results.append({"workload": workload, "mode": "hallelujah run", "workers": workers,
                            "events": events, "seconds": round(seconds, 3),
                            "events_per_s": round(events / seconds), "peak_rss_mb": peak >> 20,
                            "duckdb_whole_process_s": round(duck, 3),
                            "ratio_to_duckdb": round(duck / seconds, 3), "match": match})
            print(("MATCH" if match else "MISMATCH"), json.dumps(results[-1]))
    (HERE / "results.json").write_text(json.dumps(results, indent=1))
    lines = ["# Benchmark results", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
             f"N = {a.n:,}; best of {a.repeat}; `python -m bench` on {time.strftime('%Y-%m-%d')}.", "",
             "| workload | mode | workers | events/s | seconds | peak RSS | DuckDB whole process | ratio | result |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        lines.append(f"| {r['workload']} | {r['mode']} | {r['workers']} | {r['events_per_s']:,} | {r['seconds']} "
                     f"| {r['peak_rss_mb']} MB | {r['duckdb_whole_process_s']} s | {r['ratio_to_duckdb']} "
                     f"| {'MATCH' if r['match'] else 'MISMATCH'} |")
    lines += ["", *[f"- `{w}`: not run yet — {why}." for w, why in NOT_YET.items()]]
    (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n")
    if not all(r["match"] for r in results):
        raise SystemExit("a workload did not match its reference")


if __name__ == "__main__":
    main()
