"""SINK: keeps an output analytic's batches in its log, exactly once.

Each batch carries the source position it derives from; the SINK commits that position with the
batch, and skips anything at or before it after a replay, so a restart repeats nothing. Where
partitioned instances each send a part of every position (`Envelope.parts`), the parts are kept
together, as one batch in one transaction, so a crash never leaves a position half kept. An
aggregate's output (and a transform's of it that keeps the field) carries window ends that only
grow: after a replay, which rebuilds open windows from older positions, a window that ends at or
before the last one kept was kept already, and one that ends later was not, whatever position it
comes with (a replay may close windows at other positions than the first run: the watermarks of
parallel parts interleave differently).

After a stream join the positions do not decide the rows (which side's batch completes a pair
depends on how the two streams interleave, which a replay does not repeat), so such a SINK is
*transactional*: its batches are shown to readers only once the checkpoint after them is complete,
and a restart from that checkpoint writes the rest again (`LogStore.open_log`).
"""
from __future__ import annotations

import time

import pyarrow as pa
import pyarrow.compute as pc
import structlog
import trio

from hallelujah.frames import open_batch
from jah import checkpoint
from jah.base import Jah
from jah.envelope import CHECKPOINT, NONE, Envelope, Reassembly

log = structlog.get_logger("hallelujah.sink")
GROUP_MAX = 32     # positions one commit takes at most (and that may wait for it)


class Sink(Jah):
    role = "sink"

    async def run(self) -> None:
        logs = self.host.context["logs"]
        name = self.spec["log"]
        committed: dict[str, int] = await logs.progress(name)     # what a replay repeats
        progress = dict(committed)
        transactional = bool(self.spec.get("transactional"))
        resumes: dict[str, tuple[int, int | None]] = {}      # per source: (origin, resume) reached
        monotone = self.spec.get("monotone")
        floor = await self._last_kept(monotone) if monotone else None
        first = last = 0.0
        rows = 0
        positions = Reassembly()
        # Positions wait here while the one before them commits, then go in one transaction
        # (a group commit): one commit per position costs ~1 ms, more than a batch's rows.
        # A checkpoint's id goes the same way: reported once everything before it is committed.
        ready_send, ready = trio.open_memory_channel[list[Envelope] | int](GROUP_MAX)

        def entries(parts: list[Envelope]) -> list[tuple]:
            """A position's parts as (body, rows, source, origin, resume) for `Logs.append_many`:
            each part's body as it came (no concatenation, no re-serializing), the progress
            moving with the last one."""
            source, origin = parts[0].source, parts[0].origin
            progress[source] = max(origin, progress.get(source, 0))
            held = [p.value for p in parts if p.value > 0]
            resume = min(held) - 1 if held else None          # see Envelope.resume_after
            bodies = []
            for part in parts:
                if part.batch is not None and part.rows and floor is not None:
                    part = part.derive(part.batch.filter(pc.greater(part.batch.column(monotone), floor)))
                if part.rows:
                    bodies.append((part.ipc(), part.rows))
            last_body, last_rows = bodies.pop() if bodies else (None, 0)
            resumes[source] = (progress[source], resume)
            return [(body, n, "", -1, None) for body, n in bodies] + \
                [(last_body, last_rows, "" if transactional else source, progress[source], resume)]

        async def passed(barrier: int) -> None:
            """Checkpoint `barrier` has everything before it committed (a transactional log
            stages it, to be shown once the checkpoint is complete)."""
            if transactional:
                await logs.stage(name, barrier, dict(resumes))
            await checkpoint.take(self, barrier, None)

        async def commit() -> None:
            nonlocal first, last, rows
            async for position in ready:
                if isinstance(position, int):
                    await passed(position)
                    continue
                group = [position]
                barrier = None
                while len(group) < GROUP_MAX:
                    try:
                        more = ready.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                    if isinstance(more, int):
                        barrier = more
                        break
                    group.append(more)
                with self.busy():
                    items = [item for waiting in group for item in entries(waiting)]
                    await logs.append_many(name, items)
                if barrier is not None:
                    await passed(barrier)
                last = time.perf_counter()
                first = first or last
                rows += sum(item[1] for item in items)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(commit)
            async with ready_send:
                async for env in self.inputs["in"]:
                    if env.marker == CHECKPOINT and env.value > self.checkpointed:
                        self.checkpointed = env.value
                        await ready_send.send(env.value)
                    if env.marker != NONE:
                        continue                  # markers steer processing; a log keeps rows
                    if env.source and env.origin <= committed.get(env.source, 0) and not monotone:
                        continue          # (windows: what was kept is told by their ends, below)
                    for parts in positions.add(env):
                        await ready_send.send(parts)
                for parts in positions.rest():
                    await ready_send.send(parts)
        await logs.end(name, progress=resumes if transactional else None)
        log.info("sink_finished", log=name, rows=rows, seconds=round(last - first, 4),
                 rows_per_s=round(rows / (last - first)) if last > first else None)

    async def _last_kept(self, field: str) -> pa.Scalar | None:
        body = await self.host.context["logs"].last_body(self.spec["log"])
        if body is None:
            return None
        top = pc.max(open_batch(body, self.schema("in")).column(field))
        return top if top.is_valid else None

