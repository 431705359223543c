"""MANAGER: routes each row by its event time against ascending `until` boundaries."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa

from jah.base import Host, Jah
from jah.routing import emit_routes

_UNIT = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def boundary(text: str, field_type: pa.DataType) -> int:
    """An `until` timestamp as the time field's integer value (epoch in its unit)."""
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    unit = field_type.unit if pa.types.is_timestamp(field_type) else "s"
    seconds = int(t.timestamp())
    return seconds * _UNIT[unit] + (t.microsecond * _UNIT[unit]) // 1_000_000


class Manager(Jah):
    role = "manager"

    def __init__(self, jah_id: str, spec: dict[str, Any], host: Host) -> None:
        super().__init__(jah_id, spec, host)
        a = spec["analytic"]
        self.time = a["time"]
        field_type = self.schema("in").field(self.time).type
        self.routes = list(dict.fromkeys(r["to"] for r in a["routes"]))
        bounds = [r for r in a["routes"] if "until" in r]
        self.bounds = np.array([boundary(r["until"], field_type) for r in bounds], dtype=np.int64)
        self.slot_route = np.array([self.routes.index(r["to"]) for r in a["routes"]], dtype=np.int64)

    async def run(self) -> None:
        async for env in self.batches():
            with self.busy():
                column = env.batch.column(self.time)
                null = column.is_null().to_numpy(zero_copy_only=False)
                times = column.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
                index = self.slot_route[np.searchsorted(self.bounds, times, side="right")]
            await emit_routes(self, env, index, self.routes, null if null.any() else None,
                              f"null {self.time}")
