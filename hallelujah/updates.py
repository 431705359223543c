"""The client side of the congregation's hand-made changes (congregation/updates.py): force a
split or a merge of a dataset JOIN, change a tradecraft's congestion thresholds. Each is one
command, answered or refused as every command is (`Database.command`)."""
from __future__ import annotations

from typing import Any

from hallelujah.client import Database


async def split(db: Database, jah: str) -> dict[str, Any]:
    """Split the JOIN `jah` ("TRADECRAFT/ANALYTIC/join...") in two now."""
    return await db.command("split", jah=jah)


async def merge(db: Database, jah: str) -> dict[str, Any]:
    """Merge the JOIN `jah` with the other JOIN of its split now."""
    return await db.command("merge", jah=jah)


async def set_congestion(db: Database, tradecraft: str, congestion: dict[str, Any]) -> dict[str, Any]:
    """Set a running tradecraft's thresholds, as its document's "congestion" object
    ({"busy": 0.5, "for": "1s"}); until the congregation restarts."""
    return await db.command("congestion", tradecraft=tradecraft, congestion=congestion)
