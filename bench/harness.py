"""How every bench run is timed: a whole process from outside, or a running congregation's steady
state; each with a deadline, since a bench that cannot finish is a failed bench."""
from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil

HERE = Path(__file__).resolve().parent
DEADLINE = 300.0    # seconds for one run


@dataclass(frozen=True, order=True)
class Timing:
    """One whole-process run: wall seconds first (so the fastest of several sorts first)."""

    seconds: float
    peak_rss: int        # bytes, the whole process tree at its largest
    cpu_seconds: float   # user + system of every process of the tree, as last sampled (a lower bound)


def timed(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
          stdout: IO[str] | int = subprocess.DEVNULL) -> Timing:
    """Time a whole process tree; a run past DEADLINE is a failed bench (its processes are dumped
    with SIGUSR1, then killed)."""
    start = time.perf_counter()
    proc = psutil.Popen(cmd, env=env, stdout=stdout, cwd=cwd)
    peak = 0
    cpu: dict[int, float] = {}
    while proc.poll() is None:
        if time.perf_counter() - start > DEADLINE:
            proc.send_signal(signal.SIGUSR1)
            time.sleep(5)
            for p in [*proc.children(recursive=True), proc]:
                p.kill()
            raise SystemExit(f"{' '.join(cmd)}: no end after {DEADLINE:g}s (a stall: its dump is above)")
        rss = 0
        for p in [proc, *proc.children(recursive=True)]:
            try:
                times = p.cpu_times()
                cpu[p.pid] = times.user + times.system
                rss += p.memory_info().rss
            except psutil.Error:
                pass
        peak = max(peak, rss)
        time.sleep(0.02)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed with {proc.returncode}")
    return Timing(seconds, peak, sum(cpu.values()))


def steady_state(document: dict, workers: int, output: str, events: int, early: bool,
                 data: Path) -> tuple[float, int, int]:
    """(events/s, peak RSS, output rows) on a running congregation: the stream's events over the
    time from the output's first batch to its last, or from the submit where the output only
    starts late (an aggregate's first window closes after its first hour of events)."""
    import hallelujah
    with tempfile.TemporaryDirectory() as tmp:
        proc = psutil.Popen([sys.executable, "-m", "congregation", "--data-dir", tmp, "--listen",
                             "127.0.0.1:0", "--workers", str(workers), "--source-root", str(data)],
                            stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + DEADLINE
        try:
            assert proc.stdout is not None
            address = proc.stdout.readline().split(" ready at ")[1].split()[0]
            db = hallelujah.connect(address)
            submitted = time.time()
            db.submit(document)
            peak = 0
            while True:
                info = db.describe(document["tradecraft"])["tradecrafts"][0]
                peak = max(peak, sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]))
                if info["state"] != "running":
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"{document['tradecraft']}: no end after {DEADLINE:g}s on a running "
                                     f"congregation (a stall: see its log's `stalled` line)")
                time.sleep(0.2)       # a light poll: the measure is the log's own first and last append
            log = next(a["retained"][output] for a in info["analytics"] if output in a["retained"])
            # one batch has no steady state: then from the submit to the output's end
            start = log["first_at"] if early and log["last_at"] > log["first_at"] else submitted
            return events / (log["last_at"] - start), peak, log["rows"]
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def compile_bytecode() -> None:
    """Byte-compile the project as an installed package is: an editable install under
    PYTHONDONTWRITEBYTECODE (as on this machine) would otherwise compile it at every start."""
    import compileall
    for package in ("hallelujah", "congregation", "jah"):
        compileall.compile_dir(str(HERE.parent / package), quiet=1)
