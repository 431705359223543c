"""DIRECTOR: routes each row to a named output by the value of its partition key."""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jah.base import Host, Jah
from jah.routing import emit_routes


class Director(Jah):
    role = "director"

    def __init__(self, jah_id: str, spec: dict[str, Any], host: Host) -> None:
        super().__init__(jah_id, spec, host)
        a = spec["analytic"]
        self.key = a["key"]
        self.routes = sorted(set(a["routes"].values()) | {a["default"]})
        key_type = self.schema("in").field(self.key).type
        values = list(a["routes"])
        self.values = pa.array([typed_value(v, key_type) for v in values], key_type)
        self.value_route = np.array([self.routes.index(a["routes"][v]) for v in values] +
                                    [self.routes.index(a["default"])], dtype=np.int64)

    async def run(self) -> None:
        for_missing = len(self.value_route) - 1
        async for env in self.batches():
            with self.busy():
                pos = pc.index_in(env.batch.column(self.key), value_set=self.values)
                pos = pos.fill_null(for_missing).to_numpy(zero_copy_only=False)
                index = self.value_route[pos]
            await emit_routes(self, env, index, self.routes)


def typed_value(value: str, key_type: pa.DataType) -> Any:
    """Route keys are JSON object keys, hence text; read them as the key field's type."""
    if pa.types.is_integer(key_type):
        return int(value)
    if pa.types.is_boolean(key_type):
        return value == "true"
    if pa.types.is_floating(key_type):
        return float(value)
    return value
