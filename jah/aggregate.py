"""AGGREGATE: the partial stage of an `aggregate`, one instance per partition range or input part.

Rows before the watermark are late: they go to `ANALYTIC.rejected` with the reason, counted, never
folded into a window that may already be out. A watermark closes the windows ending at or before
it and sends their partials to MERGE (`jah.windows`, `jah.windowed`).
"""
from __future__ import annotations

from typing import Any

import pyarrow as pa

from jah.base import Host
from jah.envelope import Envelope
from jah.rejecting import rejected_batch
from jah.sessions import SessionOrigins, Sessions
from jah.watermarks import LATE, late_rows, micros
from jah.windowed import HeldOrigins, WindowedJah
from jah.windows import PartialAggregate, windows_of


class Aggregate(WindowedJah):
    role = "aggregate"

    def __init__(self, jah_id: str, spec: dict[str, Any], host: Host) -> None:
        super().__init__(jah_id, spec, host)
        a = spec["analytic"]
        self.time = a["time"]
        if "session" in a:          # session windows: `jah.sessions`
            self.partials: PartialAggregate | Sessions = Sessions(a, self.schema("in"), self.schema("result"))
            self.held = SessionOrigins(self.partials)
            return
        self.partials = PartialAggregate(a, self.schema("in"), self.schema("result"))
        self.windows = windows_of(a)
        self.held = HeldOrigins(self.windows.size_us)

    def empty(self) -> pa.Table:
        return self.partials.partial_schema.empty_table()

    def close(self, watermark: int) -> pa.Table:
        return self.partials.close(watermark)

    async def fold(self, env: Envelope) -> None:
        batch = env.batch
        assert batch is not None
        with self.busy():
            late = late_rows(micros(batch.column(self.time)), self.watermark)
            opened = self.partials.add(batch.filter(pa.array(~late)) if late.any() else batch)
            self.held.record(opened, env.origin)
        rejected = batch.filter(pa.array(late)) if late.any() else batch.slice(0, 0)
        await self.emit("rejected", env.derive(rejected_batch(rejected, LATE, self.schema("rejected"))))

    def open_state(self) -> pa.Table:
        return self.partials.open_partials()

    def window_state(self) -> tuple[dict[str, pa.Table], int | None, dict[str, Any]]:
        tables, closed = self.partials.snapshot()
        return tables, closed, {}

    def restore_windows(self, tables: dict[str, pa.Table], closed: int | None, meta: dict[str, Any]) -> None:
        self.partials.restore(tables, closed)

    def state_rows(self) -> int:
        return self.partials.rows_held


