"""`python -m bench.loop_profile [--out FILE] [--what-if CHANGE] -- OPTIONS`: a congregation, its loop profiled.

Why: `describe` waits for the loop, and py-spy cannot read this machine's processes, so the
profile is taken from inside. The first SIGUSR2 starts recording, the second writes FILE (JSON):
- each task step's time on the loop by task (a long step holds every other task back), and how
  long a runnable task waited for its turn (the run queue's delay);
- each `trio.to_thread.run_sync` call (SQLite, log reads and appends) split into its wait for a
  thread and its limiter, its run, and its wait to be resumed on the loop, by function, with the
  calls made while answering `describe` apart;
- the loop thread's stack sampled every SAMPLE_EVERY s: what runs on it while it is not idle,
  and inside the long steps.
Nothing of the congregation changes but these wrappers (bench/control_latency.py --profile),
unless a --what-if asks for a change of its code, patched in here to measure it before it is made.
"""
from __future__ import annotations

import contextvars
import json
import signal
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import trio

SAMPLE_EVERY = 0.002     # seconds between samples of the loop thread's stack
LONG_STEP = 0.005        # seconds: a task step this long is listed with what ran in it
DEPTH = 40               # frames kept of a sampled stack
REPO = str(Path(__file__).resolve().parent.parent) + "/"
DESCRIBING: contextvars.ContextVar[bool] = contextvars.ContextVar("describing", default=False)
# the seconds of the describe being answered, by stage: its steps, its waits in the run queue, each hop's parts
STAGES: contextvars.ContextVar[Counter[str] | None] = contextvars.ContextVar("stages", default=None)
HOPPING: contextvars.ContextVar[bool] = contextvars.ContextVar("hopping", default=False)   # in a thread hop


def _where(code: Any) -> str:
    path = code.co_filename
    for marker in ("/site-packages/", REPO, "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{code.co_name}"


def _ms(values: list[float]) -> dict[str, float]:
    a = np.array(values) * 1000
    if not len(a):
        return {}
    return {"n": len(a), "p50": round(float(np.percentile(a, 50)), 2), "p99": round(float(np.percentile(a, 99)), 2),
            "max": round(float(a.max()), 2), "total": round(float(a.sum()), 1)}


class LoopProfile(trio.abc.Instrument):
    """Task steps, run-queue delays and thread hops while recording; stack samples beside them."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.recording = False
        self.started = self.stopped = 0.0
        self.steps: dict[str, list[float]] = defaultdict(list)
        self.steps_cpu: Counter[str] = Counter()       # the loop thread's CPU in each task's steps
        self.long: list[tuple[float, float, str]] = []      # (start, end, task) of long steps
        self.waits: list[float] = []                        # runnable → running, every task
        self.describe_waits: list[float] = []
        self.hops: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        self.describes: list[tuple[float, Counter[str]]] = []   # server-side, whole command, by stage
        self.samples: list[tuple[float, str, tuple[str, ...]]] = []     # (at, task, stack)
        self._scheduled: dict[Any, float] = {}
        self._step_start = self._step_cpu = 0.0
        self._current: Any = None
        self._suspended: dict[Any, float] = {}      # task → when its step that began a thread hop ended
        self._main = threading.get_ident()

    # trio.abc.Instrument
    def task_scheduled(self, task: Any) -> None:
        if self.recording:
            self._scheduled[task] = time.perf_counter()

    def before_task_step(self, task: Any) -> None:
        self._step_start = now = time.perf_counter()
        self._step_cpu = time.thread_time()
        self._current = task
        at = self._scheduled.pop(task, None)
        if at is not None:
            self.waits.append(now - at)
            stages = task.context.get(STAGES)
            if stages is not None:
                self.describe_waits.append(now - at)
                if not task.context.get(HOPPING):      # (after a hop the wait is its "resumed")
                    stages["run queue"] += now - at

    def after_task_step(self, task: Any) -> None:
        if not self.recording:
            return
        self._current = None
        end = time.perf_counter()
        # a thread hop may suspend its task more than once (for its limiter, then for the
        # thread): it counts from the first; the steps between are the hop's queue
        within_hop = task.context.get(HOPPING) and task in self._suspended
        if task.context.get(HOPPING):
            self._suspended.setdefault(task, end)
        name = _task_name(task)
        self.steps[name].append(end - self._step_start)
        self.steps_cpu[name] += time.thread_time() - self._step_cpu
        stages = task.context.get(STAGES)
        if stages is not None and not within_hop:
            stages["own steps on the loop"] += end - self._step_start
        if end - self._step_start >= LONG_STEP:
            self.long.append((self._step_start, end, name))

    def toggle(self) -> None:
        if not self.recording and not self.started:
            self.started, self.recording = time.perf_counter(), True
        elif self.recording:
            self.stopped, self.recording = time.perf_counter(), False

    def sampler(self) -> None:
        """The loop thread's stack every SAMPLE_EVERY s while recording; the report once it stops."""
        while not self.stopped:
            time.sleep(SAMPLE_EVERY)
            if not self.recording:
                continue
            task = self._current
            frame = sys._current_frames().get(self._main)
            stack = []
            while frame is not None and len(stack) < DEPTH:
                stack.append(_where(frame.f_code))
                frame = frame.f_back
            self.samples.append((time.perf_counter(), _task_name(task) if task is not None else "(the loop)",
                                 tuple(stack)))
        self.out.write_text(json.dumps(self.report(), indent=1))

    def report(self) -> dict[str, Any]:
        wall = self.stopped - self.started
        busy = [s for s in self.samples if not any("get_events" in f for f in s[2][:3])]
        by_task: dict[str, Counter[str]] = defaultdict(Counter)
        innermost: dict[str, Counter[str]] = defaultdict(Counter)
        for _, task, stack in busy:
            by_task[task]["(samples)"] += 1
            by_task[task].update(set(f for f in stack if f.startswith(OURS)))
            innermost[task][stack[0] if stack else "?"] += 1
        long_by_task: dict[str, list[float]] = defaultdict(list)
        for start, end, task in self.long:
            long_by_task[task].append(end - start)
        # (a step's wall time beyond its CPU is the loop thread waiting for the GIL or a core)
        steps = sorted(((task, {**_ms(d), "cpu_total": round(self.steps_cpu[task] * 1000, 1)})
                        for task, d in self.steps.items()), key=lambda t: -t[1]["total"])
        share = len(busy) or 1
        return {
            "seconds": round(wall, 3),
            "loop_busy_fraction": round(sum(sum(d) for d in self.steps.values()) / wall, 3) if wall else None,
            "loop_cpu_fraction": round(sum(self.steps_cpu.values()) / wall, 3) if wall else None,
            "busy_samples_fraction": round(len(busy) / len(self.samples), 3) if self.samples else None,
            "run_queue_wait_ms": _ms(self.waits), "describe_run_queue_wait_ms": _ms(self.describe_waits),
            "describe_server_ms": _ms([d[0] for d in self.describes]),
            # where a describe's time goes (its steps on the loop, its waits in the run queue, and
            # for each thread hop the wait for a thread and its limiter, the run, the resumption):
            # on average, and in the slowest 2 % of the answers
            "describe_mean_ms": _stages(self.describes),
            "describe_slowest_ms": _stages(
                sorted(self.describes, key=lambda d: -d[0])[:max(1, len(self.describes) // 50)]),
            "steps_ms_by_task": dict(steps[:20]),
            "long_steps_ms_by_task": {t: _ms(d) for t, d in sorted(long_by_task.items(),
                                                                     key=lambda t: -sum(t[1]))[:15]},
            "thread_hops_ms": {fn: {part: _ms(v) for part, v in parts.items()}
                               for fn, parts in sorted(self.hops.items(),
                                                       key=lambda kv: -sum(kv[1]["queued"]))},
            # of the busy samples: each task's share, the share of our functions under it, and
            # the innermost frames (where the time is spent: a socket call, Arrow, SQLite). The
            # sampler needs the GIL, so calls that release it (socket calls) are over-represented.
            "busy_by_task": {task: {"frames": [(f, round(n / share, 3)) for f, n in c.most_common(25)],
                                    "innermost": [(f, round(n / share, 3))
                                                  for f, n in innermost[task].most_common(8)]}
                             for task, c in sorted(by_task.items(), key=lambda kv: -kv[1]["(samples)"])[:8]},
        }


def _stages(describes: list[tuple[float, Counter[str]]]) -> dict[str, Any]:
    """The mean ms of each stage over these describes (stages over 0.5 ms, largest first), and of
    the time no stage holds."""
    calls = len(describes) or 1
    total: Counter[str] = Counter()
    for _, stages in describes:
        total.update(stages)
    answer = sum(d[0] for d in describes)
    return {"calls": len(describes), "answer": round(answer / calls * 1000, 2),
            **{stage: round(t / calls * 1000, 2) for stage, t in total.most_common() if t / calls > 0.0005},
            # what no stage holds (a step's part before the command began makes it a little negative)
            "other": round((answer - sum(total.values())) / calls * 1000, 2)}


def _task_name(task: Any) -> str:
    return "describe" if task.context.get(DESCRIBING) else task.name


OURS = ("(samples)", "congregation/", "jah/", "hallelujah/")


def _fn_name(fn: Any) -> str:
    fn = getattr(fn, "func", fn)
    return getattr(fn, "__qualname__", repr(fn))


def mark_describe(profile: LoopProfile | None) -> None:
    """Mark the tasks answering `describe` (DESCRIBING), timing each when profiling."""
    from congregation.commands import Commands
    real_describe = Commands.cmd_describe

    async def cmd_describe(self: Any, args: dict[str, Any]) -> dict[str, Any]:
        DESCRIBING.set(True)
        stages: Counter[str] = Counter()
        STAGES.set(stages if profile is not None else None)
        began = time.perf_counter()
        if profile is not None:     # its first step counts from here, not from the step's start
            stages["own steps on the loop"] -= began - profile._step_start
        try:
            return await real_describe(self, args)
        finally:
            STAGES.set(None)          # (its reply and close are the connection's, not the answer's)
            ended = time.perf_counter()
            if profile is not None and profile.recording and began >= profile.started:   # (all of it seen)
                stages["own steps on the loop"] += ended - profile._step_start     # its last step, so far
                profile.describes.append((ended - began, stages))

    Commands.cmd_describe = cmd_describe


def time_thread_hops(profile: LoopProfile) -> None:
    """Split every `trio.to_thread.run_sync` into its wait for a thread, its run and its resumption."""
    real_run_sync = trio.to_thread.run_sync

    async def run_sync(fn: Any, *args: Any, **kwargs: Any) -> Any:
        called, span = time.perf_counter(), {}

        def timed(*a: Any) -> Any:
            span["start"] = time.perf_counter()
            try:
                return fn(*a)
            finally:
                span["end"] = time.perf_counter()
        HOPPING.set(True)
        try:
            return await real_run_sync(timed, *args, **kwargs)
        finally:
            HOPPING.set(False)
            suspended = profile._suspended.pop(trio.lowlevel.current_task(), called)
            if profile.recording and "end" in span:
                parts = profile.hops[("describe: " if DESCRIBING.get() else "") + _fn_name(fn)]
                # exclusive parts of the time the task was away: from the end of the step that
                # asked (the rest of that step is the step's), to this step's start
                asked = max(called, suspended)
                began = max(asked, span["start"])
                ended = max(began, span["end"])
                timed_parts = {"queued": began - asked, "ran": ended - began, "resumed": profile._step_start - ended}
                stages = STAGES.get()
                for part, seconds in timed_parts.items():
                    parts[part].append(seconds)
                    if stages is not None:
                        stages[f"{_fn_name(fn)}: {part}"] += seconds

    trio.to_thread.run_sync = run_sync


# ("one-log-query", describe reading a tradecraft's logs in one query on the readers' connection,
# was measured here first and is now how describe reads them: congregation/describe.py)
WHAT_IF = {# the GIL passed between the loop and the SQLite threads every 1 ms instead of 5 ms
           "switch-1ms": lambda: sys.setswitchinterval(0.001)}


def main(argv: list[str]) -> None:
    import argparse

    import congregation.daemon as daemon
    ap = argparse.ArgumentParser(prog="python -m bench.loop_profile", description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="where the profile goes (no profile without it)")
    ap.add_argument("--what-if", action="append", default=[], choices=list(WHAT_IF),
                    help="run with a change of the congregation's, to measure it before it is made")
    ap.add_argument("congregation", nargs=argparse.REMAINDER, help="-- and the congregation's options")
    a = ap.parse_args(argv)
    for change in a.what_if:
        WHAT_IF[change]()
    profile = LoopProfile(Path(a.out)) if a.out else None
    mark_describe(profile)
    if profile is not None:
        time_thread_hops(profile)
    original = daemon.run_daemon

    async def profiled(args: Any, zygote: Any, *rest: Any) -> None:
        if profile is not None:
            trio.lowlevel.add_instrument(profile)
            signal.signal(signal.SIGUSR2, lambda *_: profile.toggle())
            threading.Thread(target=profile.sampler, daemon=True).start()
        await original(args, zygote, *rest)

    daemon.run_daemon = profiled
    daemon.main([arg for arg in a.congregation if arg != "--"])


if __name__ == "__main__":
    main(sys.argv[1:])
