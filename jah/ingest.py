"""INGEST: loads a finite dataset, once and again `every` period or when its file changes.

Each load is a new **version**. The timer is quantized like the Machina seed's trigger: an
`every: 1h` ingest fires on the hour (plus `offset`), so ingests with one period fire together
whatever their start time. Positions are version × 2^20 + batch, so a restarted INGEST finishes
the version its output had not fully taken and goes on from there.
"""
from __future__ import annotations

import math
import os
import time

from typing import Any

import trio

from hallelujah import formats
from hallelujah.durations import parse_duration
from jah.base import Host, Jah
from jah.envelope import HANDOVER, Envelope

VERSION_SPAN = 1 << 20          # positions per version
WATCH_EVERY = 1.0               # seconds between checks of the file's modification time


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
        seen = _mtime(path)
        fire = next_fire(time.time(), every, offset) if "every" in a else math.inf
        while True:
            await trio.sleep(max(0.0, min(WATCH_EVERY, fire - time.time())))
            changed = _mtime(path) != seen
            if time.time() >= fire or changed:
                seen = _mtime(path)
                version += 1
                await self.load(version, reason="file changed" if changed else "timer")
                fire = next_fire(time.time(), every, offset) if "every" in a else math.inf

    async def load(self, version: int, skip_to: int = 0, reason: str = "start") -> None:
        async with self.loading:
            await self._load(version, skip_to, reason)

    async def _load(self, version: int, skip_to: int, reason: str) -> None:
        schema = self.schema("out")
        loaded: list[Envelope] = []
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
        self.host.report(self.id, "version", f'{{"version": {version}, "rows": {rows}, '
                                             f'"reason": "{reason}", "at": {time.time():.3f}}}')


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0
