"""SINK: keeps an output analytic's batches in its log, exactly once.

Each batch carries the source position it derives from; the SINK commits that position with the
batch, and skips anything at or before it after a replay, so a restart repeats nothing. Where
partitioned instances each send a part of every position (`parts`), the parts are kept together,
as one batch in one transaction, so a crash never leaves a position half kept. An
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
from jah.envelope import NONE, Envelope

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
        parts = int(self.spec.get("parts", 1))
        held: list[Envelope] = []

        async def keep(envs: list[Envelope]) -> None:
            nonlocal first, last, rows
            env = envs[0] if len(envs) == 1 else _joined(envs)
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
            if held and (held[0].source, held[0].origin) != (env.source, env.origin):
                await keep(held)          # positions arrive in order: the last one is complete
                held = []
            held.append(env)
            if len(held) >= parts:
                await keep(held)
                held = []
        if held:
            await keep(held)
        await logs.end(name)
        log.info("sink_finished", log=name, rows=rows, seconds=round(last - first, 4),
                 rows_per_s=round(rows / (last - first)) if last > first else None)

    async def _last_kept(self, field: str) -> pa.Scalar | None:
        body = await self.host.context["logs"].last_body(self.spec["log"])
        if body is None:
            return None
        top = pc.max(open_batch(body, self.schema("in")).column(field))
        return top if top.is_valid else None


def _joined(envs: list[Envelope]) -> Envelope:
    """The parts of one position as one envelope (the oldest position any part still holds)."""
    batches = [e.batch for e in envs if e.batch is not None and e.rows]
    batch = pa.concat_batches(batches) if batches else envs[0].batch
    held = [e.value for e in envs if e.value > 0]
    return Envelope(batch, envs[0].origin, envs[0].source, value=min(held, default=0))
