"""`hallelujah run` is honest: unreadable rows go to `ANALYTIC.rejected`, a failed Jah exits 1.

Each test runs `hallelujah run` as a user does (a subprocess with a deadline) and checks its exit
code, its stderr (one message, never a traceback) and its output files against pyarrow and numpy
computed here.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from tests.integration.helpers import assert_rows_equal

HALLELUJAH = Path(sys.executable).with_name("hallelujah")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
SECRET = "hj-secret-text-51c2"     # in the bad rows: no message may quote it
ROWS = 300_000


def run(doc: Path, *args: str, timeout: float = 180) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.perf_counter()
    done = subprocess.run([str(HALLELUJAH), "run", str(doc), "--workers", "2", *args], cwd=doc.parent,
                          capture_output=True, text=True, timeout=timeout, env=ENV, check=False)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    return done, time.perf_counter() - start


def write_doc(path: Path, *analytics: dict) -> Path:
    path.write_text(json.dumps({"tradecraft": "tc", "analytics": list(analytics)}))
    return path


def microsecond_events(path: Path) -> tuple[pa.Table, dict[int, str]]:
    """JSON lines whose `ts` carry microseconds (as the issue's file did), a few of them bad.

    Returns the good rows as a `timestamp[ms]` stream holds them (truncated) and, by 1-based line
    number, what makes each bad line bad."""
    ids = np.arange(ROWS, dtype=np.int64)
    micros = np.datetime64("2026-01-01T00:00:00", "us") + ids * 37_013 + (ids * 7919) % 1000
    text = np.datetime_as_string(micros, unit="us")
    lines = [f'{{"id": {i}, "ts": "{t}Z", "v": {i * 0.5}}}' for i, t in zip(ids.tolist(), text.tolist())]
    bad = {6: "field \"ts\"", 77_778: "not valid JSON", 200_001: "field \"v\"", ROWS: "field \"ts\""}
    lines[5] = f'{{"id": 5, "ts": "{SECRET}", "v": 1.0}}'
    lines[77_777] = f"{SECRET} is not JSON"
    lines[200_000] = f'{{"id": 200000, "ts": "2026-01-01T00:00:00Z", "v": "{SECRET}"}}'
    lines[ROWS - 1] = f'{{"id": {ROWS - 1}, "ts": true, "v": 1}}'     # a bool among text
    path.write_text("\n".join(lines) + "\n")
    keep = np.ones(ROWS, dtype=bool)
    keep[[n - 1 for n in bad]] = False
    good = pa.table({"id": ids[keep], "ts": pa.array(micros[keep].astype("datetime64[ms]")), "v": ids[keep] * 0.5})
    return good, bad


def test_a_jsonl_source_with_microseconds_for_a_millisecond_field_runs_whole_and_rejects_only_bad_lines(tmp_path):
    good, bad = microsecond_events(tmp_path / "events.jsonl")
    doc = write_doc(tmp_path / "doc.json", {
        "name": "events", "kind": "stream", "source": {"path": "events.jsonl"},
        "schema": {"id": "int64", "ts": "timestamp[ms]", "v": "float64"}})
    done, seconds = run(doc, "--output-dir", str(tmp_path / "out"), "--format", "parquet")
    assert done.returncode == 0, done.stderr
    assert_rows_equal(pq.read_table(tmp_path / "out" / "events.parquet"), good, "events")
    rejected = pq.read_table(tmp_path / "out" / "events.rejected.parquet")
    assert rejected.column_names == ["id", "ts", "v", "reason"]
    reasons = rejected["reason"].to_pylist()
    assert [int(r.split(":")[0].removeprefix("line ")) for r in reasons] == sorted(bad), reasons
    for reason, says in zip(reasons, [bad[n] for n in sorted(bad)]):
        assert says in reason and SECRET not in reason, reason
    assert f"4 rows rejected in events.rejected (their reasons are in {tmp_path / 'out' / 'events.rejected.parquet'})" \
        in done.stderr
    print(f"{ROWS:,} JSON lines, 4 bad: run took {seconds:.2f} s")

    # Without --output-dir the one output goes to stdout, and the message says how to keep the rest.
    done, _ = run(doc)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == ROWS - len(bad)
    assert "4 rows rejected in events.rejected (give --output-dir to keep them with their reasons)" in done.stderr


def test_rejected_outputs_are_written_beside_the_others_in_their_format(tmp_path):
    rng = np.random.default_rng(8)
    n = 20_000
    table = pa.table({"id": np.arange(n, dtype=np.int64), "a": rng.integers(-50, 50, n), "b": rng.integers(0, 4, n)})
    lines = ["id,a,b"] + [f"{i},{a},{b}" for i, a, b in zip(*(table[c].to_pylist() for c in table.column_names))]
    lines[101] = f"100,{SECRET},1"                        # a value that is no int64: a source reject
    lines[201] = "200,1,2,3"                               # a field too many: a source reject
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
    source_bad = pc.is_in(table["id"], pa.array([100, 200]))
    kept = table.filter(pc.invert(source_bad))
    doc = write_doc(tmp_path / "doc.json",
                    {"name": "src", "kind": "stream", "source": {"path": "in.csv"},
                     "schema": {"id": "int64", "a": "int64", "b": "int64"}},
                    {"name": "q", "kind": "transform", "input": "src", "derive": {"q": "a // b"}})
    done, _ = run(doc, "--output-dir", str(tmp_path / "out"), "--format", "csv")
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["q.csv", "q.rejected.csv", "src.rejected.csv"]

    divides = pc.not_equal(kept["b"], 0)
    ok = kept.filter(divides)
    expected = ok.append_column("q", pa.array(np.floor_divide(ok["a"].to_numpy(), ok["b"].to_numpy())))
    assert_rows_equal(pa_csv.read_csv(out / "q.csv").sort_by("id"), expected, "q")
    q_rejected = pa_csv.read_csv(out / "q.rejected.csv").sort_by("id")
    assert_rows_equal(q_rejected.select(["id", "a", "b"]), kept.filter(pc.invert(divides)), "q.rejected")
    assert all("//" in r for r in q_rejected["reason"].to_pylist())

    src_rejected = pa_csv.read_csv(out / "src.rejected.csv", convert_options=pa_csv.ConvertOptions(
        column_types={"id": pa.int64(), "a": pa.int64(), "b": pa.int64(), "reason": pa.string()}))
    assert src_rejected.to_pylist() == [
        {"id": 100, "a": None, "b": 1, "reason": 'row 101: field "a": expected int64, got string'},
        {"id": None, "a": None, "b": None, "reason": "line 202: a row has 4 fields where the header has 3"}]
    for ref, rows in (("src.rejected", 2), ("q.rejected", q_rejected.num_rows)):
        assert f"{rows:,} rows rejected in {ref} (their reasons are in {out / f'{ref}.csv'})" in done.stderr
    assert SECRET not in done.stderr


def test_a_run_whose_jah_fails_exits_1_naming_the_jah_and_the_reason(tmp_path):
    # The file's fields are not the declared ones: its SOURCE fails as it starts.
    (tmp_path / "shape.csv").write_text(f"id,b\n1,{SECRET}\n")
    doc = write_doc(tmp_path / "shape.json", {"name": "src", "kind": "stream", "source": {"path": "shape.csv"},
                                              "schema": {"id": "int64", "a": "int64"}})
    done, _ = run(doc, "--output-dir", str(tmp_path / "out"))
    assert done.returncode == 1, (done.returncode, done.stderr)
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith('hallelujah: tradecraft "tc" failed: tc/src/source: '), last
    assert 'field "b" is not in the schema' in last and str(tmp_path / "shape.csv") in last
    assert SECRET not in done.stderr

    # Fields that change far into the file: the rows before flow, then the run fails, exit 1.
    n = 250_000
    lines = [f'{{"id": {i}, "a": {i % 97}}}' for i in range(n)]
    lines[200_000] = '{"id": 200000, "a": 1, "extra": 2}'
    (tmp_path / "late.jsonl").write_text("\n".join(lines) + "\n")
    doc = write_doc(tmp_path / "late.json", {"name": "src", "kind": "stream", "source": {"path": "late.jsonl"},
                                             "schema": {"id": "int64", "a": "int64"}},
                    {"name": "kept", "kind": "transform", "input": "src", "where": "a >= 0"})
    done, _ = run(doc, "--output-dir", str(tmp_path / "late"), "--format", "parquet")
    assert done.returncode == 1, (done.returncode, done.stderr)
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith('hallelujah: tradecraft "tc" failed: tc/src/source: '), last
    assert 'field "extra" is not in the schema' in last
    got = pq.read_table(tmp_path / "late" / "kept.parquet")["id"].to_numpy()
    assert np.array_equal(got, np.arange(len(got))) and len(got) < 200_000, "not a prefix of the rows before"
