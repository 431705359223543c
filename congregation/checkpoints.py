"""The checkpoint coordinator: asks the sources for barrier N, counts the Jahs that wrote it,
commits it once every one has.

One checkpoint of a tradecraft is in flight at a time (Flink's default). The Jahs that must write
N are those the barriers reach: everything downstream of a stream source (a dataset's INGEST
sends no barriers; its version is state of the JOINs). A Jah that finishes meanwhile is no longer
waited for. A checkpoint not complete within `TIMEOUT_PERIODS` periods is given up (logged) and
the next one starts: a slow checkpoint never stops the stream, it only ages the last complete one.
"""
from __future__ import annotations

import functools
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
import trio

from hallelujah.errors import HallelujahError, InvalidInput, Unavailable
from jah.checkpoint import SOURCE_ROLES

log = structlog.get_logger("hallelujah.checkpoints")
TIMEOUT_PERIODS = 6
MIN_TIMEOUT = 30.0


@dataclass
class Pending:
    id: int
    started: float                      # trio clock
    started_at: float                   # wall clock
    waiting: set[str]                   # Jahs still to write it
    parts: dict[str, str] = field(default_factory=dict)     # source Jah -> its source (parts share one)
    written: dict[str, dict[str, Any]] = field(default_factory=dict)
    finished: dict[str, int] = field(default_factory=dict)   # source Jah -> where it read to its end
    done: trio.Event = field(default_factory=trio.Event)
    failed: str = ""


@dataclass
class Completed:
    id: int
    seconds: float
    bytes: int
    completed_at: float
    positions: dict[str, int]           # source Jah -> the position its barrier followed
    files: dict[str, str]               # Jah -> its state file


class Checkpoints:
    """One tradecraft's checkpoints: the one in flight and the last complete."""

    def __init__(self, directory: Path, every: float, row: dict[str, Any] | None = None) -> None:
        """`row`: the last complete checkpoint as the catalog keeps it (after a restart)."""
        self.directory = directory
        self.every = every
        self.next_id = (row["id"] if row else 0) + 1
        self.pending: Pending | None = None
        self.last: Completed | None = None if row is None else Completed(
            row["id"], row["seconds"], row["bytes"], row["completed_at"], json.loads(row["positions"]),
            json.loads(row["files"]))
        self.last_started = trio.current_time()

    def due(self, now: float) -> bool:
        return self.every > 0 and self.pending is None and now - self.last_started >= self.every

    def begin(self, jahs: set[str]) -> Pending:
        self.pending = Pending(self.next_id, trio.current_time(), time.time(), set(jahs))
        self.next_id += 1
        self.last_started = self.pending.started
        return self.pending

    def written(self, jah: str, detail: dict[str, Any]) -> Completed | None:
        """Jah `jah` wrote checkpoint `detail["id"]`: the checkpoint, if that completes it."""
        p = self.pending
        if p is None or detail.get("id") != p.id:
            return None
        p.written[jah] = detail
        p.waiting.discard(jah)
        return self._complete_if_done()

    def gone(self, jah: str, position: int | None = None) -> Completed | None:
        """A Jah finished: it writes nothing more (a source: everything it read is before the
        barrier, and a restore resumes it at `position`, its end)."""
        if self.pending is None:
            return None
        if position is not None and jah in self.pending.parts:
            self.pending.finished[jah] = position
        self.pending.waiting.discard(jah)
        return self._complete_if_done()

    def _complete_if_done(self) -> Completed | None:
        p = self.pending
        if p is None or p.waiting:
            return None
        cuts: dict[str, set[int]] = {}
        for jah, source in p.parts.items():
            if "position" in p.written.get(jah, {}):
                cuts.setdefault(source, set()).add(int(p.written[jah]["position"]))
        split = sorted(s for s, at in cuts.items() if len(at) > 1)
        if split:        # a part was past the common position: this one is not a prefix of the file
            log.info("checkpoint_not_kept", id=p.id, sources=split)
            self.give_up(f"the parts of {', '.join(split)} cut at different positions")
            return None
        self.pending = None
        self.last = Completed(
            p.id, trio.current_time() - p.started, sum(int(w.get("bytes", 0)) for w in p.written.values()),
            time.time(), {**p.finished, **{j: int(w["position"]) for j, w in p.written.items() if "position" in w}},
            {j: str(w["file"]) for j, w in p.written.items() if w.get("file")})
        p.done.set()
        return self.last

    def give_up(self, why: str) -> None:
        if self.pending is not None:
            self.pending.failed = why
            self.pending.done.set()
            self.pending = None

    def describe(self) -> dict[str, Any]:
        last = self.last
        return {
            "every": self.every,
            "last": None if last is None else {
                "id": last.id, "seconds": round(last.seconds, 3), "bytes": last.bytes,
                "age": round(time.time() - last.completed_at, 1)},
            "in_flight": None if self.pending is None else {
                "id": self.pending.id, "for": round(trio.current_time() - self.pending.started, 1),
                "waiting_for": sorted(self.pending.waiting)[:10]},
        }


def downstream(plan: Any, starts: list[str]) -> set[str]:
    """`starts` and every Jah their datastreams reach."""
    reached, todo = set(starts), list(starts)
    while todo:
        current = todo.pop()
        for s in plan.streams:
            if s.sender == current and s.receiver not in reached:
                reached.add(s.receiver)
                todo.append(s.receiver)
    return reached


def barrier_jahs(plan: Any) -> tuple[list[str], set[str]]:
    """The source Jahs that send barriers, and every Jah the barriers reach."""
    sources = [j.id for j in plan.jahs.values() if j.role in SOURCE_ROLES]
    return sources, downstream(plan, sources)


def transactional_sinks(plan: Any) -> set[str]:
    """The SINKs after a stream join: a replay does not repeat its batches alike (which side
    completes a pair depends on how the streams interleave), so they show rows per checkpoint."""
    after = downstream(plan, [j.id for j in plan.jahs.values() if j.role == "stream_join"])
    return {j for j in after if plan.jahs[j].role == "sink"}


def begin(d: Any) -> tuple[Pending, list[str]]:
    """Checkpoint N of deployment `d` is in flight from now (at once: never two)."""
    cp: Checkpoints = d.checkpoints
    sources, reached = barrier_jahs(d.plan)
    running = {j for j in reached if j not in d.final_stats}
    pending = cp.begin(running)
    pending.parts = {j: str(d.plan.jahs[j].spec.get("source_id", j)) for j in sources}
    pending.finished = {j: int(d.final_stats[j]["position"]) for j in sources
                        if d.final_stats.get(j, {}).get("position") is not None}
    log.debug("checkpoint_started", tradecraft=d.tc.name, id=pending.id, jahs=len(running))
    return pending, [j for j in sources if j in running]


async def ask_sources(d: Any, pending: Pending, sources: list[str], record: Any) -> None:
    """The sources put barrier N on their outputs: a source read by one Jah after the batch in
    hand; a file read in parts, after the position the furthest part has reached (asked first)."""
    groups: dict[str, list[str]] = {}
    for jah in sources:
        groups.setdefault(pending.parts[jah], []).append(jah)
    async with trio.open_nursery() as nursery:
        for parts in groups.values():
            nursery.start_soon(_ask_parts, d, parts, pending, record)


async def _ask_parts(d: Any, parts: list[str], pending: Pending, record: Any) -> None:
    after = None
    if len(parts) > 1:
        positions = [await _ask(d, jah, {"position": True}, pending, record) for jah in parts]
        after = max((p for p in positions if p is not None), default=None)
        parts = [jah for jah, p in zip(parts, positions) if p is not None]
    async with trio.open_nursery() as nursery:
        for jah in parts:
            nursery.start_soon(_ask, d, jah, {"checkpoint": pending.id, "after": after}, pending, record)


async def _ask(d: Any, jah: str, args: dict[str, Any], pending: Pending, record: Any) -> int | None:
    """One control request to a source; its position, or None when it has read all its input
    (its end is then its position in the checkpoint) or its worker went away."""
    host = d.hosts.get(d.plan.jahs[jah].host) if jah in d.plan.jahs else None
    try:
        if host is None:
            raise InvalidInput(f"{jah} has no host")
        reply = json.loads((await host.request("controlReq", {"jah": jah, "args": json.dumps(args)}))["result"])
        position, ended = int(reply["position"]), bool(reply.get("ended"))
    except HallelujahError as exc:        # its worker went away: the checkpoint will not complete
        log.debug("checkpoint_source_skipped", jah=jah, error=str(exc))
        position, ended = None, True
    if not ended:
        return position
    done = d.checkpoints.gone(jah, position) if d.checkpoints.pending is pending else None
    if done is not None:
        await record(d, done)
    return None


def timeout_of(cp: Checkpoints) -> float:
    return max(MIN_TIMEOUT, TIMEOUT_PERIODS * cp.every)


async def record(c: Any, d: Any, done: Completed) -> None:
    """Commit a complete checkpoint, then drop the files of older ones."""
    await c.catalog.add_checkpoint(d.tc.name, {
        "id": done.id, "completed_at": done.completed_at, "seconds": done.seconds, "bytes": done.bytes,
        "positions": json.dumps(done.positions), "files": json.dumps(done.files)})
    await d.logs.commit_staged(f"{d.tc.name}/", done.id)
    log.info("checkpoint_complete", tradecraft=d.tc.name, id=done.id, seconds=round(done.seconds, 3),
             bytes=done.bytes)
    await trio.to_thread.run_sync(drop_checkpoints, d.checkpoints.directory, done.id)


def drop_checkpoints(directory: Path, keep: int, *, newer: bool = False) -> None:
    """Remove the checkpoint directories older than `keep` (once it is complete), or newer than
    it (what checkpoints after the last complete one wrote before a crash)."""
    if directory.is_dir():
        for child in directory.iterdir():
            if child.name.isdigit() and (int(child.name) > keep if newer else int(child.name) < keep):
                shutil.rmtree(child, ignore_errors=True)


async def on_event(c: Any, d: Any, jah: str, event: str, detail: str) -> None:
    """A Jah wrote its part of a checkpoint, or finished (and will write no more)."""
    cp: Checkpoints | None = getattr(d, "checkpoints", None)
    if cp is None:
        return
    done = cp.written(jah, json.loads(detail)) if event == "checkpointed" else \
        cp.gone(jah, d.final_stats.get(jah, {}).get("position"))
    if done is not None:
        await record(c, d, done)


async def watch(c: Any) -> None:
    """Start each running tradecraft's checkpoints on time; give up one that takes too long."""
    async with trio.open_nursery() as nursery:
        while True:
            await trio.sleep(0.1)
            now = trio.current_time()
            for d in list(c.deployments.values()):
                cp: Checkpoints | None = getattr(d, "checkpoints", None)
                if cp is None or d.state != "running" or d.plan is None or d.stopped:
                    continue
                if cp.pending is not None and now - cp.pending.started > timeout_of(cp):
                    log.warning("checkpoint_abandoned", tradecraft=d.tc.name, id=cp.pending.id,
                                waiting_for=sorted(cp.pending.waiting)[:10])
                    cp.give_up(f"not complete after {timeout_of(cp):g} s")
                if cp.due(now):
                    pending, sources = begin(d)
                    nursery.start_soon(ask_sources, d, pending, sources, functools.partial(record, c))


async def checkpoint_now(c: Any, d: Any, timeout: float = MIN_TIMEOUT) -> Completed:
    """Take a checkpoint now (after the one in flight) and wait until it is complete."""
    cp: Checkpoints | None = getattr(d, "checkpoints", None)
    if cp is None or d.state != "running":
        raise InvalidInput(f'tradecraft "{d.tc.name}" is {d.state}: there is nothing to checkpoint')
    with trio.move_on_after(timeout):
        while cp.pending is not None:
            await cp.pending.done.wait()
        pending, sources = begin(d)
        await ask_sources(d, pending, sources, functools.partial(record, c))
        await pending.done.wait()
        if pending.failed:
            raise Unavailable(f"checkpoint {pending.id} of {d.tc.name}: {pending.failed}")
        assert cp.last is not None
        return cp.last
    raise Unavailable(f"checkpoint of {d.tc.name} not complete after {timeout:g} s")


# Roles whose state a checkpoint keeps. The rest hold none at a barrier: a POSTJOIN has every
# part of the positions before it (each JOIN passed them first); a JOIN's dataset, and a PREJOIN's
# routes after a split, are not kept: the restarted plan is unsplit, and its INGEST loads the
# dataset again before any row is joined, as on a replay from the logs.
KEPT_STATE = {"aggregate", "merge", "stream_join"}


def restore_point(plan: Any, row: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a restart takes from the last complete checkpoint: each source's position and each
    stateful Jah's state, or None when the checkpoint does not fit this plan (a split made
    stateful Jahs the plan does not have, a source's position is missing, a state directory is
    gone) — then the tradecraft replays from its logs' positions, as it always could."""
    if row is None:
        return None
    positions, files = json.loads(row["positions"]), json.loads(row["files"])
    jahs = plan.jahs
    sources = [j for j in jahs.values() if j.role in SOURCE_ROLES]
    if (any(f not in jahs for f in files)
            or any(j.id not in files for j in jahs.values() if j.role in KEPT_STATE)
            or any(j.id not in positions for j in sources)
            or not all(Path(f).is_dir() for f in files.values())):
        return None
    return {"id": row["id"], "positions": positions, "files": files}

