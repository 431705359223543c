"""SINK: keeps an output analytic's batches in its log, exactly once.

Each batch carries the source position it derives from; the SINK commits that position with the
batch, and skips anything at or before it after a replay, so a restart repeats nothing. Where
partitioned instances each send a part of every position (`Envelope.parts`), the parts are kept
together, as one batch in one transaction, so a crash never leaves a position half kept. An
aggregate's output also carries window ends that only grow: after a replay, which rebuilds open
windows from older positions, a window that ends at or before the last one kept was kept already.
"""
from __future__ import annotations

import time

import pyarrow as pa
import pyarrow.compute as pc
import structlog

from hallelujah.frames import open_batch
from jah.base import Jah
from jah.envelope import NONE, Envelope, Reassembly, joined

log = structlog.get_logger("hallelujah.sink")


class Sink(Jah):
    role = "sink"

    async def run(self) -> None:
        logs = self.host.context["logs"]
        name = self.spec["log"]
        committed: dict[str, int] = await logs.progress(name)     # what a replay repeats
        progress = dict(committed)
        monotone = self.spec.get("monotone")
        floor = await self._last_kept(monotone) if monotone else None
        first = last = 0.0
        rows = 0
        positions = Reassembly()

        async def keep(parts: list[Envelope]) -> None:
            nonlocal first, last, rows
            env = parts[0] if len(parts) == 1 else joined(parts)
            if floor is not None and env.rows:
                env = env.derive(env.batch.filter(pc.greater(env.batch.column(monotone), floor)))
            progress[env.source] = max(env.origin, progress.get(env.source, 0))
            with self.busy():
                await logs.append(name, env.ipc() if env.rows else None, env.rows, env.source,
                                  progress[env.source], resume=env.resume_after() if env.value > 0 else None)
            last = time.perf_counter()
            first = first or last
            rows += env.rows

        async for env in self.inputs["in"]:
            if env.marker != NONE:
                continue                  # markers steer processing; a log keeps rows
            if env.source and env.origin <= committed.get(env.source, 0):
                continue
            for parts in positions.add(env):
                await keep(parts)
        for parts in positions.rest():
            await keep(parts)
        await logs.end(name)
        log.info("sink_finished", log=name, rows=rows, seconds=round(last - first, 4),
                 rows_per_s=round(rows / (last - first)) if last > first else None)

    async def _last_kept(self, field: str) -> pa.Scalar | None:
        body = await self.host.context["logs"].last_body(self.spec["log"])
        if body is None:
            return None
        top = pc.max(open_batch(body, self.schema("in")).column(field))
        return top if top.is_valid else None

