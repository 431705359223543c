"""EXCHANGE: routes each row to the instance of the next step that owns its key's partition.

Keys hash into 256 partitions (`jah.kernels.hashing`, the documented partition hash); instance j
of m owns the contiguous range of partitions p with p * m // 256 == j, the layout a JOIN split
halves. Every instance gets a batch for every source position, empty or not, so instances that
merge several exchanges by position never wait on one that had nothing for them. Row order
within a partition is kept.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from jah.base import Host, Jah
from jah.kernels.hashing import hash_columns, partitions_of
from jah.kernels.partition import split_by_partition

PARTITIONS = 256


def parts_by_route(batch: pa.RecordBatch, keys: list[str], owner: np.ndarray, routes: int) -> list[pa.RecordBatch]:
    """The rows of each route (by the owner of their key's partition), each in its original order."""
    route = owner[partitions_of(hash_columns([batch.column(k) for k in keys]))]
    order, offsets = split_by_partition(route, routes)
    return [batch.take(order[offsets[j]:offsets[j + 1]]) for j in range(routes)]


def owners(instances: int) -> np.ndarray:
    """The instance that owns each of the 256 partitions."""
    return (np.arange(PARTITIONS, dtype=np.int64) * instances) // PARTITIONS


class Exchange(Jah):
    role = "exchange"

    def __init__(self, jah_id: str, spec: dict[str, Any], host: Host) -> None:
        super().__init__(jah_id, spec, host)
        self.keys: list[str] = spec["keys"]
        self.ports = sorted(self.outputs, key=lambda p: int(p[2:]))     # "to0", "to1", …
        self.owner = owners(len(self.ports))

    async def run(self) -> None:
        async for env in self.batches():
            batch = env.batch
            with self.busy():
                parts = parts_by_route(batch, self.keys, self.owner, len(self.ports))
            for port, part in zip(self.ports, parts):
                await self.emit(port, env.derive(part))
