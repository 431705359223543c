"""POSTJOIN: merges the outputs of a stream's JOINs back into the stream's order, row for row.

PREJOIN sends every JOIN its part of every position and says in how many parts it went. JOINs come
and go as they split and merge, and the datastreams of new JOINs may bring a position later than
others bring a greater one; POSTJOIN holds the parts of each position until it has them all, then
lets positions go strictly in order, each as one batch: so a SINK keeps a position whole or not at
all, no row is lost or repeated across a split. Inside a position the parts' rows go back to their
order in the source batch by the numbers PREJOIN gave them (`jah.row_order`): a dataset join is a
per-row enrichment, so its output is its stream's order whatever the splits.
"""
from __future__ import annotations

import pyarrow as pa

from jah.base import Jah
from jah.envelope import HANDOVER, NONE, Envelope, Reassembly, joined
from jah.kernels.partition import order_by_number
from jah.row_order import split_off


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
                await self.emit("out", self.whole(parts))
        for parts in positions.rest():            # the JOINs ended: what there is goes
            await self.emit("out", self.whole(parts))

    def whole(self, parts: list[Envelope]) -> Envelope:
        """One position's parts as one envelope, its rows in their source order, unnumbered."""
        env = joined(parts)
        if env.batch is not None:
            with self.busy():
                env.batch = in_row_order(env.batch, several=sum(1 for p in parts if p.rows) > 1)
        return env


def in_row_order(batch: pa.RecordBatch, several: bool = True) -> pa.RecordBatch:
    """`batch` (the parts of a position, concatenated) in the order of its row numbers, without
    them. The rows of one part are in order already and those of one source row are all in one
    part, so a stable counting sort by number restores the source order, and keeps a source row's
    several matches in dataset order; a single part needs no sort, and no copy."""
    rest, numbers = split_off(batch)
    if not several or rest.num_rows < 2:
        return rest
    return rest.take(pa.array(order_by_number(numbers.to_numpy())))
