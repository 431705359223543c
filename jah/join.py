"""JOIN (with a dataset): enriches each stream batch from the dataset's current version.

The dataset arrives on the `dataset` port, version after version, each closed by a `handover`
marker carrying its number; the next version replaces the current one only between two stream
batches, so every event is joined with exactly one version, never a mixture. The probe is the
Numba hash index (`jah.kernels.probe`); dataset fields are gathered with `take`. A dataset key
that appears several times matches every time: each match is emitted, in dataset order. A stream
numbered by PREJOIN (`jah.row_order`) keeps its numbers, last, on every row emitted.

This JOIN holds the whole dataset and runs beside each parallel part of its stream (a broadcast
join); splitting by partition under congestion (DESIGN "Joining a finite dataset") builds on it.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import trio

from jah.base import Host, Jah
from jah.envelope import HANDOVER, NONE
from jah.ownership import PARTITIONS
from jah.row_order import carries_row_numbers
from jah.kernels.hashing import hash_columns, partitions_of
from jah.kernels.probe import HashIndex


class Version:
    """One loaded version of the dataset: its rows, their index, and the columns a join takes.
    A JOIN that holds some of the 256 partitions keeps only the rows of those."""

    def __init__(self, number: int, table: pa.Table, keys: list[str], fields: list[str],
                 partitions: np.ndarray | None = None) -> None:
        self.number = number
        if partitions is not None and table.num_rows:
            mine = np.zeros(PARTITIONS, dtype=bool)
            mine[partitions] = True
            table = table.filter(pa.array(mine[partitions_of(hash_columns([table.column(k) for k in keys]))]))
        self.index = HashIndex.build([table.column(k) for k in keys])
        self.columns = [table.column(f).combine_chunks() for f in fields]


class Join(Jah):
    role = "join"

    def __init__(self, jah_id: str, spec: dict[str, Any], host: Host) -> None:
        super().__init__(jah_id, spec, host)
        a = spec["analytic"]
        self.stream_keys = list(a["on"])
        self.dataset_keys = list(a["on"].values())
        self.fields = list(a["fields"])
        self.how = a["how"]
        stream = self.schema("in")
        self.numbered = carries_row_numbers(stream)
        self.key_columns = [stream.names.index(k) for k in self.stream_keys]   # a field, not the numbers
        held = spec.get("partitions")
        self.partitions = np.array(held, dtype=np.int64) if held is not None and len(held) < PARTITIONS else None
        self.current: Version | None = None
        self.loaded = trio.Event()
        self.versions_used: list[int] = []

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._load_versions)
            await self.loaded.wait()
            await self._join_stream()
            nursery.cancel_scope.cancel()     # the stream has ended: later versions join nothing

    async def _load_versions(self) -> None:
        pending: list[pa.RecordBatch] = []
        schema = self.schema("dataset")
        async for env in self.inputs["dataset"]:
            if env.marker == NONE:
                pending.append(env.batch)
            elif env.marker == HANDOVER:
                table = pa.Table.from_batches(pending, schema=schema)
                with self.busy():
                    version = await trio.to_thread.run_sync(
                        Version, env.value, table, self.dataset_keys, self.fields, self.partitions)
                self.current, pending = version, []
                self.loaded.set()
        if self.current is None:          # an empty dataset that never handed over
            self.current = Version(0, schema.empty_table(), self.dataset_keys, self.fields)
            self.loaded.set()

    async def _join_stream(self) -> None:
        out_schema = self.schema("out")
        async for env in self.batches():
            version = self.current            # one version for the whole batch
            assert version is not None
            with self.busy():
                joined = self.enrich(env.batch, version, out_schema)
            await self.emit("out", env.derive(joined))

    def enrich(self, batch: pa.RecordBatch, version: Version, out_schema: pa.Schema) -> pa.RecordBatch:
        probe_idx, build_idx = version.index.probe([batch.column(k) for k in self.key_columns], self.how)
        if probe_idx.size != batch.num_rows or not _is_identity(probe_idx):
            batch = batch.take(pa.array(probe_idx))
        missing = build_idx < 0
        indices = pa.array(build_idx, mask=missing) if missing.any() else pa.array(build_idx)
        gathered = [column.take(indices) for column in version.columns]
        columns = list(batch.columns)
        numbers = [columns.pop()] if self.numbered else []
        return pa.RecordBatch.from_arrays(columns + gathered + numbers, schema=out_schema)


def _is_identity(idx: np.ndarray) -> bool:
    return bool(idx.size == 0 or (idx[0] == 0 and idx[-1] == idx.size - 1 and np.all(np.diff(idx) == 1)))
