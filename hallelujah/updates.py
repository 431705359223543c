"""The client side of the congregation's hand-made changes (congregation/updates.py): force a
split or a merge of a dataset JOIN, reload a dataset, change a tradecraft's congestion
thresholds. Each is one command, answered or refused as every command is (`Database.command`)."""
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


async def reload(db: Database, analytic: str) -> dict[str, Any]:
    """Load the next version of the dataset `analytic` ("TRADECRAFT/ANALYTIC") now, as its timer
    would: {"analytic", "version", "rows"}, once the version is handed over to its JOINs."""
    return await db.command("reload", analytic=analytic)


def done_text(command: str, result: dict[str, Any]) -> str:
    """What a change did, in one line, as `hallelujah split|merge|congestion|reload` and the
    Window Interface both say it."""
    from hallelujah.cli_output import rows_text
    from hallelujah.durations import format_duration
    if command == "split":
        return f"split {result['split']} in two"
    if command == "merge":
        return f"merged {' and '.join(result['merged'])}"
    if command == "congestion":
        return (f"congestion of {result['tradecraft']}: busy above {result['busy']:g} "
                f"for {format_duration(result['for_seconds'])}")
    return f"reloaded {result['analytic']}: version {result['version']}, {rows_text(result['rows'])}"
