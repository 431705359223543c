"""POSTJOIN: merges the outputs of a stream's JOINs back into source-position order.

JOINs come and go as they split and merge; the port's merge takes a new JOIN's datastream into
account once it brings something, and that is always a position after those of the JOIN it
relieves, so a new JOIN's rows wait until the old JOIN's last position (and its `handover`) has
passed: no row lost, none repeated, per-key order kept. Every JOIN sends its part of every
position; the parts go on as one batch, so a SINK keeps a position whole or not at all.
"""
from __future__ import annotations

import pyarrow as pa

from jah.base import Jah
from jah.envelope import HANDOVER, NONE, Envelope


class PostJoin(Jah):
    role = "postjoin"

    async def run(self) -> None:
        port = self.inputs["in"]
        parts: list[Envelope] = []
        async for env in port:
            if env.marker != NONE:
                if env.marker != HANDOVER:        # a split's marker stops here; the rest goes on
                    await self.emit("out", env)
                continue
            if parts and (parts[0].origin, parts[0].source) != (env.origin, env.source):
                await self._send(parts)
                parts = []
            parts.append(env)
            if len(parts) >= port.open:
                await self._send(parts)
                parts = []
        if parts:
            await self._send(parts)

    async def _send(self, parts: list[Envelope]) -> None:
        if len(parts) == 1:
            await self.emit("out", parts[0])
            return
        batches = [p.batch for p in parts if p.rows]
        batch = pa.concat_batches(batches) if batches else parts[0].batch
        await self.emit("out", parts[0].derive(batch))
