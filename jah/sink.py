"""SINK: keeps an output analytic's batches in its log, exactly once.

Each batch carries the source position it derives from; the SINK commits that position with the
batch, and skips anything at or before it after a replay, so a restart repeats nothing.
"""
from __future__ import annotations

import time

import structlog

from jah.base import Jah
from jah.envelope import NONE

log = structlog.get_logger("hallelujah.sink")


class Sink(Jah):
    role = "sink"

    async def run(self) -> None:
        logs = self.host.context["logs"]
        name = self.spec["log"]
        progress: dict[str, int] = await logs.progress(name)
        first = last = 0.0
        rows = 0
        async for env in self.inputs["in"]:
            if env.marker != NONE:
                continue                  # markers steer processing; a log keeps rows
            if env.source and env.origin <= progress.get(env.source, 0):
                continue
            with self.busy():
                await logs.append(name, env.ipc() if env.rows else None, env.rows, env.source,
                                  env.origin)
            progress[env.source] = env.origin
            last = time.perf_counter()
            first = first or last
            rows += env.rows
        await logs.end(name)
        log.info("sink_finished", log=name, rows=rows, seconds=round(last - first, 4),
                 rows_per_s=round(rows / (last - first)) if last > first else None)
