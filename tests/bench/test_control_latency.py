"""`python -m bench.control_latency` end to end at a tiny size: a real congregation, two publishing
processes, describe timed with and without them, and the retained output read back."""
from __future__ import annotations

import json
import subprocess
import sys


def test_control_latency_reports_describe_latency_and_keeps_every_published_row(tmp_path):
    rows = 4096
    done = subprocess.run([sys.executable, "-m", "bench.control_latency", "--seconds", "1.5",
                           "--baseline-seconds", "0.5", "--rows", str(rows), "--results", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "control_latency.json").read_text())
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {k: v for k, v in result.items() if k != "samples"}
    # every batch is whole (rows_per_batch each) plus the one row that ends the stream
    assert result["published_rows"] > rows and (result["published_rows"] - 1) % rows == 0
    assert result["retained_rows"] == result["published_rows"] and result["match"] is True
    rate = (result["published_rows"] - 1) / result["seconds"]      # (seconds is rounded to 1 ms)
    assert abs(result["published_rows_per_s"] - rate) < rate * 0.01
    for phase in ("describe_ms", "baseline_describe_ms"):
        both = result[phase]["both"]
        assert result[phase]["all"]["calls"] + result[phase]["tradecraft"]["calls"] == both["calls"] > 1
        assert 0 < both["p50"] <= both["p99"] <= both["max"]
    assert len(result["samples"]) == result["describe_ms"]["both"]["calls"]
    assert set(result["cpu_cores"]) == {"congregation_loop_thread", "congregation_other_threads", "workers",
                                        "publishers", "describe_client", "loop_thread_waiting_for_a_cpu"}
    assert all(v >= 0 for v in result["cpu_cores"].values()) and result["cpu_cores"]["publishers"] > 0
    assert len(result["load_average"]) == 2 and result["what_if"] == [] and not result["profiled"]
    assert result["met"] == (result["describe_ms"]["both"]["p99"] < result["target_p99_ms"])


def test_the_loop_profile_splits_describe_into_its_thread_hops_and_a_what_if_changes_them(tmp_path):
    """--profile runs the congregation under bench.loop_profile: a describe reads a tradecraft's
    logs in one query on the readers' connection (never `names` behind the writer's appends);
    --what-if switch-1ms runs it with another GIL switch interval."""
    profile = tmp_path / "profile" / "loop.json"
    done = subprocess.run([sys.executable, "-m", "bench.control_latency", "--seconds", "1.5",
                           "--baseline-seconds", "0.3", "--rows", "4096", "--results", str(tmp_path),
                           "--profile", str(profile), "--what-if", "switch-1ms"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "control_latency.json").read_text())
    assert result["match"] and result["profiled"] and result["what_if"] == ["switch-1ms"]
    loop = json.loads(profile.read_text())
    # the describes answered while recording are those the client timed (give or take one at each end)
    assert abs(loop["describe_server_ms"]["n"] - result["describe_ms"]["both"]["calls"]) <= 2
    hops = loop["thread_hops_ms"]
    assert "describe: LogStore.log_rows" in hops and "describe: LogStore.names" not in hops
    assert "describe: LogStore.info" not in hops       # its rows came with the one query
    # publishes go in group commits: one thread hop for one batch or for several waiting together
    assert 0 < hops["LogStore.publish_many"]["ran"]["n"] <= (result["published_rows"] - 1) // 4096
    assert 0 < loop["loop_cpu_fraction"] <= loop["loop_busy_fraction"] <= 1 and "describe" in loop["steps_ms_by_task"]
    assert all(0 <= t["cpu_total"] <= t["total"] + 1 for t in loop["steps_ms_by_task"].values())
    # a describe's stages do not overlap, and together they are nearly all of its answer
    for answers in (loop["describe_mean_ms"], loop["describe_slowest_ms"]):
        stages = {k: v for k, v in answers.items() if k not in ("calls", "answer", "other")}
        assert sum(stages.values()) <= answers["answer"] + 0.1
        assert -0.1 <= answers["other"] <= 0.1 * answers["answer"] + 0.5
        hops = {k.rpartition(": ")[0] for k in stages if k not in ("own steps on the loop", "run queue")}
        # three thread hops: the tradecrafts, their Jahs and events, their logs
        assert hops <= {"LogStore.log_rows",
                        *(f"Catalog.{f}.<locals>.rows" for f in ("tradecrafts", "jahs_and_events"))}
