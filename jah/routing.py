"""What DIRECTOR and MANAGER share: send each row of a batch to the route its index names."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from jah.base import Jah
from jah.envelope import Envelope
from jah.rejecting import rejected_batch


async def emit_routes(jah: Jah, env: Envelope, route_index: np.ndarray, routes: list[str],
                      reject_mask: np.ndarray | None = None, reason: str = "") -> None:
    """Split `env.batch` by `route_index` (positions in `routes`), one filter per route.

    Every route (and `rejected`) gets a batch for every origin, empty or not, so each retained
    route's position moves on with its source, and parallel instances merge without waiting on a
    route that one of them never feeds.
    """
    batch = env.batch
    assert batch is not None
    for i, route in enumerate(routes):
        mask = route_index == i
        if reject_mask is not None:
            mask &= ~reject_mask
        await jah.emit(route, env.derive(batch.filter(pa.array(mask))))
    if "rejected" in jah.outputs:
        mask = reject_mask if reject_mask is not None else np.zeros(batch.num_rows, dtype=bool)
        rows = batch.filter(pa.array(mask))
        await jah.emit("rejected", env.derive(rejected_batch(rows, reason, jah.schema("rejected"))))
