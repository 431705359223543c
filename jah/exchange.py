"""EXCHANGE: routes each row to the instance of the next step that owns its key's partition.

Keys hash into 256 partitions (`jah.kernels.hashing`, the documented partition hash); instance j
of m owns the contiguous range of partitions p with p * m // 256 == j, the layout a JOIN split
halves. Every instance gets a batch for every source position, empty or not, so instances that
merge several exchanges by position never wait on one that had nothing for them. Row order
within a partition is kept.
"""
from __future__ import annotations

from typing import Any

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import trio

from jah.base import Host, Jah
from jah.envelope import NONE, WATERMARK, Envelope
from jah.streams import OutPort
from jah.watermarks import BEFORE_TIME, micros
from jah.kernels.hashing import hash_columns, partitions_of
from jah.kernels.partition import split_by_partition
from jah.ownership import PARTITIONS, owners


def partitions(batch: pa.RecordBatch, keys: list[str]) -> np.ndarray:
    """The partition (0..255) of each row's key."""
    return partitions_of(hash_columns([batch.column(k) for k in keys]))


def split_rows(batch: pa.RecordBatch, route: np.ndarray, routes: int) -> list[pa.RecordBatch]:
    """The rows of each route (`route` per row), each in its original order."""
    order, offsets = split_by_partition(route, routes)
    return [batch.take(order[offsets[j]:offsets[j + 1]]) for j in range(routes)]


@dataclass
class Move:
    """Partitions leaving one instance for others at an event-time boundary (an aggregate split):
    their rows before it still go to the old instance, whose windows end by then."""

    old: str
    boundary: int
    moved: np.ndarray           # bool per partition


class Exchange(Jah):
    role = "exchange"

    def __init__(self, jah_id: str, spec: dict[str, Any], host: Host) -> None:
        super().__init__(jah_id, spec, host)
        self.keys: list[str] = spec["keys"]
        self.time: str | None = spec.get("time")
        self.routes = sorted(self.outputs, key=lambda p: int(p[2:]))     # "to0", "to1", …
        self.port_of = [self.routes[j] for j in owners(len(self.routes))]   # per partition
        self.owner = owners(len(self.routes))
        self.moves: list[Move] = []
        self.latest = BEFORE_TIME            # the latest event time routed
        self.gate: trio.Event | None = None  # closed between a split's prepare and its commit
        self.switch = trio.Lock()

    def open_output(self, port: str) -> OutPort:
        self.outputs[port] = OutPort(1)
        return self.outputs[port]

    async def run(self) -> None:
        async for env in self.inputs["in"]:
            if self.gate is not None:
                await self.gate.wait()
            async with self.switch:
                if env.marker == NONE:
                    await self._route(env)
                    continue
                for port in self.routes:
                    await self.emit(port, env)
                if env.marker == WATERMARK:
                    await self._finish_moves(env.value)

    async def _route(self, env: Envelope) -> None:
        batch = env.batch
        assert batch is not None
        with self.busy():
            partition = partitions(batch, self.keys)
            route = self.owner[partition]
            if self.time is not None and batch.num_rows:
                t = micros(batch.column(self.time))
                self.latest = max(self.latest, int(t.max()))
                for move in self.moves:          # rows of windows the old instance still holds
                    route = np.where(move.moved[partition] & (t < move.boundary), self.routes.index(move.old), route)
            parts = split_rows(batch, route, len(self.routes))
        for port, part in zip(self.routes, parts):
            await self.emit(port, Envelope(part, env.origin, env.source, value=env.value, parts=len(self.routes)))

    async def _finish_moves(self, watermark: int) -> None:
        """Once the watermark passes a move's boundary, the old instance gets nothing more: its
        stream ends, and with it its windows close."""
        for move in [m for m in self.moves if watermark >= m.boundary]:
            self.moves.remove(move)
            self.routes.remove(move.old)
            await self.outputs.pop(move.old).end()
            self._reindex()

    async def control(self, args: dict[str, Any]) -> dict[str, Any]:
        """{"prepare": true}: hold the stream and say the latest event time routed;
        {"commit": {"old": port, "into": {port: [partitions]}, "boundary": µs}}: move, go on."""
        if args.get("prepare"):
            self.gate = trio.Event()
            async with self.switch:              # the batch in hand is routed first
                return {"latest": self.latest}
        commit = args.get("commit")
        if commit is not None:
            moved = np.zeros(PARTITIONS, dtype=bool)
            for port, partitions in commit["into"].items():
                for p in partitions:
                    self.port_of[p] = port
                    moved[p] = True
            self.routes += [port for port in commit["into"] if port not in self.routes]
            self._reindex()
            self.moves.append(Move(commit["old"], int(commit["boundary"]), moved))
        if self.gate is not None:               # a commit, or a release of a split given up
            self.gate.set()
            self.gate = None
        return {"routes": self.routes}

    def _reindex(self) -> None:
        self.owner = np.array([self.routes.index(port) for port in self.port_of], dtype=np.int64)
