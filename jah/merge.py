"""MERGE: the last stage of an `aggregate`: adds up the partials of every AGGREGATE instance and
emits each window once, when the watermark (the least over the instances) has passed its end."""
from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from jah.base import Host
from jah.envelope import Envelope
from jah.sessions import SessionMerge
from jah.windowed import HeldOrigins, WindowedJah
from jah.windows import WINDOW, MergeAggregate, windows_of


class Merge(WindowedJah):
    role = "merge"

    def __init__(self, jah_id: str, spec: dict[str, Any], host: Host) -> None:
        super().__init__(jah_id, spec, host)
        a = spec["analytic"]
        if "session" in a:          # whole sessions held by their end (`__window`) until the watermark
            self.merged: MergeAggregate | SessionMerge = SessionMerge(a, self.schema("out"), self.schema("in"))
            self.held = HeldOrigins(0)
        else:
            self.merged = MergeAggregate(a, self.schema("out"), self.schema("in"))
            self.held = HeldOrigins(windows_of(a).size_us)
        self.lanes: dict[int, int] = {}      # what each AGGREGATE instance still holds, from its last envelope

    def parts_out(self, env: Envelope) -> int:
        return 1        # the instances' parts are added up here: one whole position goes out

    def empty(self) -> pa.Table:
        return self.schema("out").empty_table()

    def close(self, watermark: int) -> pa.Table:
        return self.merged.close(watermark)

    async def fold(self, env: Envelope) -> None:
        held_from = env.value or env.origin + 1
        self.lanes[env.lane] = held_from
        if env.rows:
            with self.busy():
                self.merged.add(pa.Table.from_batches([env.batch]))
            self.held.record(pc.unique(env.batch.column(WINDOW)).to_pylist(), held_from)

    def held_from(self) -> int:
        """The first position whose rows are still open here or in an instance (0: none)."""
        marks = [m for m in [self.held.earliest(), *self.lanes.values()] if m > 0]
        return min(marks, default=0)

    def open_state(self) -> pa.Table:
        return self.merged.open_partials()

    def window_state(self) -> tuple[dict[str, pa.Table], int | None, dict[str, Any]]:
        tables, closed = self.merged.snapshot()
        return tables, closed, {"lanes": sorted(self.lanes.items())}

    def restore_windows(self, tables: dict[str, pa.Table], closed: int | None, meta: dict[str, Any]) -> None:
        self.merged.restore(tables, closed)
        self.lanes = {int(lane): int(held) for lane, held in meta["lanes"]}

    def state_rows(self) -> int:
        return self.merged.rows_held


