"""POSTJOIN: merges the outputs of a stream's JOINs back into source-position order.

PREJOIN sends every JOIN its part of every position and says in how many parts it went. JOINs come
and go as they split and merge, and the datastreams of new JOINs may bring a position later than
others bring a greater one; POSTJOIN holds the parts of each position until it has them all, then
lets positions go strictly in order, each as one batch: so a SINK keeps a position whole or not at
all, no row is lost or repeated across a split, and each key keeps its order.
"""
from __future__ import annotations

import pyarrow as pa

from jah.base import Jah
from jah.envelope import HANDOVER, NONE, Envelope


class PostJoin(Jah):
    role = "postjoin"

    async def run(self) -> None:
        held: dict[tuple[str, int], list[Envelope]] = {}
        async for env in self.inputs["in"]:
            if env.marker != NONE:
                if env.marker != HANDOVER:        # a split's marker stops here; the rest goes on
                    await self.emit("out", env)
                continue
            held.setdefault((env.source, env.origin), []).append(env)
            while held:
                first = min(held, key=lambda k: k[1])
                parts = held[first]
                if len(parts) < max(1, parts[0].value):
                    break
                del held[first]
                await self._send(parts)
        for key in sorted(held, key=lambda k: k[1]):     # the JOINs ended: what there is goes
            await self._send(held[key])

    async def _send(self, parts: list[Envelope]) -> None:
        batches = [p.batch for p in parts if p.rows]
        batch = pa.concat_batches(batches) if len(batches) > 1 else (batches[0] if batches else parts[0].batch)
        await self.emit("out", Envelope(batch, parts[0].origin, parts[0].source))
