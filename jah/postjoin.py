"""POSTJOIN: merges the outputs of a stream's JOINs back into source-position order.

PREJOIN sends every JOIN its part of every position and says in how many parts it went. JOINs come
and go as they split and merge, and the datastreams of new JOINs may bring a position later than
others bring a greater one; POSTJOIN holds the parts of each position until it has them all, then
lets positions go strictly in order, each as one batch: so a SINK keeps a position whole or not at
all, no row is lost or repeated across a split, and each key keeps its order.
"""
from __future__ import annotations

from jah.base import Jah
from jah.envelope import HANDOVER, NONE, Reassembly, joined


class PostJoin(Jah):
    role = "postjoin"

    async def run(self) -> None:
        positions = Reassembly()
        async for env in self.inputs["in"]:
            if env.marker != NONE:
                if env.marker != HANDOVER:        # a split's marker stops here; the rest goes on
                    await self.emit("out", env)
                continue
            for parts in positions.add(env):
                await self.emit("out", joined(parts))
        for parts in positions.rest():            # the JOINs ended: what there is goes
            await self.emit("out", joined(parts))
