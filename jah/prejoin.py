"""PREJOIN: routes each stream row to the JOIN that holds its key's partition (DESIGN Fig 3).

Keys hash into 256 partitions with the documented partition hash; a routing table says which
JOIN (output port) holds each. Every JOIN gets a batch for every source position, empty or not,
so POSTJOIN's merge by position never waits on one that had nothing; each part carries its rows'
numbers in the position (`jah.row_order`), by which POSTJOIN restores the stream's row order. With
one JOIN the batch goes whole, unhashed, numbered without a copy. A split (`control`) re-routes the old JOIN's partitions to the new ones between
two batches: the old JOIN then gets a `handover` marker and the end of its stream, and drains;
the new ones only ever see later positions, which is what lets POSTJOIN keep per-key order.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import trio

from jah.base import Host, Jah
from jah.envelope import HANDOVER, Envelope
from jah.exchange import partitions
from jah.kernels.partition import split_by_partition
from jah.ownership import PARTITIONS
from jah.row_order import numbered
from jah.streams import OutPort


class PreJoin(Jah):
    role = "prejoin"

    def __init__(self, jah_id: str, spec: dict[str, Any], host: Host) -> None:
        super().__init__(jah_id, spec, host)
        self.keys: list[str] = spec["keys"]
        self.routes: list[str] = list(self.outputs)           # output port of each route
        self.owner = np.zeros(PARTITIONS, dtype=np.int64)     # route of each partition
        self.switch = trio.Lock()                              # routes change between batches only

    def open_output(self, port: str) -> OutPort:
        self.outputs[port] = OutPort(1)
        return self.outputs[port]

    async def run(self) -> None:
        async for env in self.batches():
            async with self.switch:
                await self._route(env)

    async def _route(self, env: Envelope) -> None:
        """Each JOIN's part of the batch, saying into how many parts the position went, so that
        POSTJOIN knows when it has them all, whatever splits happen meanwhile."""
        batch = env.batch
        assert batch is not None
        if len(self.routes) == 1:
            await self.emit(self.routes[0], env.derive(numbered(batch)))
            return
        with self.busy():
            parts = split_numbered(batch, self.owner[partitions(batch, self.keys)], len(self.routes))
        for port, part in zip(self.routes, parts):
            await self.emit(port, Envelope(part, env.origin, env.source, parts=len(self.routes)))

    async def control(self, args: dict[str, Any]) -> dict[str, Any]:
        """{"split": old port, "into": {new port: [partitions]}} (or several old ports for a merge)."""
        old = args["split"] if isinstance(args["split"], list) else [args["split"]]
        async with self.switch:
            for port in old:
                await self.emit(port, Envelope(None, marker=HANDOVER, value=0))
                await self.outputs.pop(port).end()
            owner = [self.routes[r] for r in self.owner]
            self.routes = [r for r in self.routes if r not in old] + list(args["into"])
            for port, partitions in args["into"].items():
                for p in partitions:
                    owner[p] = port
            self.owner = np.array([self.routes.index(port) for port in owner], dtype=np.int64)
        return {"routes": self.routes}


def split_numbered(batch: pa.RecordBatch, route: np.ndarray, routes: int) -> list[pa.RecordBatch]:
    """The rows of each route (`route` per row), each in its original order and numbered with
    its index in `batch`: one stable counting sort, one `take`, zero-copy slices."""
    order, offsets = split_by_partition(route, routes)
    taken = numbered(batch.take(pa.array(order)), pa.array(order.astype(np.int32)))
    return [taken.slice(int(offsets[j]), int(offsets[j + 1] - offsets[j])) for j in range(routes)]
