"""INGEST: loads a finite dataset, once and again `every` period or when its file changes.

Each load is a new **version**; a control request `{"reload": true}` loads the next one now,
through the same loop as the timer (so its handover to the JOINs is the same). The timer is
quantized like the Machina seed's trigger: an `every: 1h` ingest fires on the hour (plus
`offset`), so ingests with one period fire together whatever their start time. Positions are
version × 2^20 + batch, so a restarted INGEST finishes the version its output had not fully
taken and goes on from there.

A reload reads the whole file before a row of it goes out, and only if the file kept its size and
time meanwhile: a file caught while being written (or one that cannot be read) is no version. The
current version stays, a warning says why once, and the next change of the file is tried.
"""
from __future__ import annotations

import math
import os
import time
from typing import Any

import pyarrow as pa
import structlog
import trio

from hallelujah import formats
from hallelujah.durations import parse_duration
from hallelujah.errors import HallelujahError, InvalidInput, NotFound
from jah.base import Host, Jah
from jah.envelope import HANDOVER, Envelope

log = structlog.get_logger("hallelujah.ingest")
VERSION_SPAN = 1 << 20          # positions per version
WATCH_EVERY = 1.0               # seconds between checks of the file's modification time
Signature = tuple[int, int, int]    # a file's (mtime in ns, inode, size): whether it changed


def next_fire(now: float, every: float, offset: float) -> float:
    """The next quantized time strictly after `now`: offset + k × every."""
    return offset + (math.floor((now - offset) / every) + 1) * every


class Ingest(Jah):
    """Also ENRICHMENT: it keeps the current version and sends it whole to a JOIN that a split
    adds, so the new JOIN starts with the version the others hold; for that it stays until the
    tradecraft ends, even when it loads once."""

    role = "ingest"

    def __init__(self, jah_id: str, spec: dict[str, Any], host: Host) -> None:
        super().__init__(jah_id, spec, host)
        self.current: list[Envelope] = []           # the last whole version, handover included
        self.loading = trio.Lock()
        self.loaded: tuple[int, int] = (0, 0)       # the last version loaded, and its rows
        self.watching = False                       # the reload loop runs (a dataset that stays)
        self.asked: list[trio.Event] = []           # reloads asked for, set once the load is done
        self.wake = trio.Event()
        self.unloadable: tuple[Signature | None, str] | None = None    # the file as last refused, and why

    async def attached(self, port: str, sender: Any) -> None:
        if self.state == "running":                 # wired at start, it gets the versions as they load
            self._nursery.start_soon(self._send_current, sender)

    async def _send_current(self, sender: Any) -> None:
        async with self.loading:                    # a version loading meanwhile comes after, whole
            for env in self.current:
                await sender.send(env)

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await self._versions()
            nursery.cancel_scope.cancel()

    async def _versions(self) -> None:
        a = self.spec["analytic"]
        resume = int(self.spec.get("resume_from", 0))
        # after a restart the numbering goes on from the versions already recorded
        version = resume // VERSION_SPAN or int(self.spec.get("versions_before", 0))
        if resume % VERSION_SPAN or (resume == 0 and a.get("run_on_start", True)):
            version = version if resume % VERSION_SPAN else version + 1
            await self.load(version, skip_to=resume)
        if "every" not in a and not self.spec.get("hold"):
            return                      # loaded once, and nothing joins it: the dataset is done
        # a dataset that JOINs read stays (to serve the JOINs a split adds) and reloads when its
        # file changes, with or without a timer
        every = parse_duration(a["every"], "every") if "every" in a else math.inf
        offset = parse_duration(a["offset"], "offset") if "offset" in a else 0.0
        path = a["source"]["path"]
        seen = _signature(path)
        fire = next_fire(time.time(), every, offset) if "every" in a else math.inf
        self.watching = True
        while True:
            with trio.move_on_after(max(0.0, min(WATCH_EVERY, fire - time.time()))):
                await self.wake.wait()
            asked, self.asked, self.wake = self.asked, [], trio.Event()
            now = _signature(path)
            # A file is new by its time (or inode); one refused is tried again once its time or
            # size moved (a file caught while being written may be whole within one tick of
            # the clock). A file gone is no version: kept until back.
            changed = now is not None and (seen is None or now[:2] != seen[:2]) \
                and (self.unloadable is None or now != self.unloadable[0])
            if asked or time.time() >= fire or changed:
                try:
                    loaded = await self._reload(version + 1, "reload" if asked else
                                                "file changed" if changed else "timer")
                finally:
                    for done in asked:       # the asker is answered (with the reason if none loaded)
                        done.set()
                if loaded is not None:
                    version, seen = version + 1, loaded
                fire = next_fire(time.time(), every, offset) if "every" in a else math.inf

    async def control(self, args: dict[str, Any]) -> dict[str, Any]:
        """`{"reload": true}`: load the next version now, answered once it is handed over."""
        if args.get("reload") is not True:
            return await super().control(args)
        if self.state != "running" or not self.watching:
            raise NotFound(f"{self.id} does not reload: it is {self.state}"
                           + ("" if self.state != "running" else ", and loads once with no JOIN reading it"))
        source = self.spec["analytic"]["source"]
        try:                # a file gone or unreadable is refused here, before a row of it is sent
            await trio.to_thread.run_sync(formats.source_schema, source)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise InvalidInput(f"{source.get('path')}: cannot be read: {exc}") from None
        before, done = self.loaded[0], trio.Event()
        self.asked.append(done)
        self.wake.set()
        await done.wait()
        if self.loaded[0] <= before:
            why = f": {self.unloadable[1]}" if self.unloadable else ""
            raise HallelujahError(f"{self.id}: the reload did not load a new version{why}")
        return {"version": self.loaded[0], "rows": self.loaded[1]}

    async def _reload(self, version: int, reason: str) -> Signature | None:
        """Load `version` whole, or nothing of it: the file's signature as loaded, or None (the
        current version stays; said once per state of the file)."""
        source = self.spec["analytic"]["source"]
        before = _signature(source["path"])
        try:
            with self.busy():
                batches = await trio.to_thread.run_sync(
                    lambda: list(formats.read_batches(source, self.schema("out"))))
        except (pa.ArrowException, OSError, ValueError, HallelujahError) as exc:
            problem = f"it cannot be read: {exc}"
        else:
            if _signature(source["path"]) == before is not None:
                await self.load(version, reason=reason, batches=iter(batches))
                self.unloadable = None
                return before
            problem = "it changed while it was read (write a new file beside it, then rename it over)"
        if self.unloadable is None or self.unloadable[0] != before:
            log.warning("dataset_not_loaded", jah=self.id, path=source["path"], version=version,
                        reason=problem, kept=self.loaded[0])
        self.unloadable = (before, problem)
        return None

    async def load(self, version: int, skip_to: int = 0, reason: str = "start",
                   batches: Any = None) -> None:
        """Send version `version` (read from the file, unless its `batches` are given)."""
        async with self.loading:
            await self._load(version, skip_to, reason, batches)

    async def _load(self, version: int, skip_to: int, reason: str, batches: Any) -> None:
        schema = self.schema("out")
        loaded: list[Envelope] = []
        if batches is None:
            batches = formats.read_batches(self.spec["analytic"]["source"], schema)
        rows = 0
        position = version * VERSION_SPAN
        while True:
            with self.busy():
                batch = await trio.to_thread.run_sync(next, batches, None)
            if batch is None:
                break
            position += 1
            rows += batch.num_rows
            env = Envelope(batch, position, self.spec["source_id"])
            if self.spec.get("hold"):
                loaded.append(env)
            if position > skip_to:
                await self.emit("out", env)
        end = Envelope(None, position, self.spec["source_id"], HANDOVER, version)
        await self.emit("out", end)
        if self.spec.get("hold"):           # only a dataset that JOINs read serves new ones
            self.current = [*loaded, end]
        self.loaded = (version, rows)
        self.host.report(self.id, "version", f'{{"version": {version}, "rows": {rows}, '
                                             f'"reason": "{reason}", "at": {time.time():.3f}}}')


def _signature(path: str) -> Signature | None:
    """None for a file that is not there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_ino, st.st_size
