"""Shared checks of the integration tests: exact row comparison, reads that fail instead of hanging."""
from __future__ import annotations

import pyarrow as pa
import trio


def assert_rows_equal(got: pa.Table, expected: pa.Table, what: str) -> None:
    """Same columns, same rows in the same order; a short message naming the first difference."""
    if expected.num_rows == 0:
        assert got.num_rows == 0, f"{what}: expected no rows, got {got.num_rows}"
        return
    assert got.column_names == expected.column_names, \
        f"{what}: columns {got.column_names}, expected {expected.column_names}"
    g, e = got.to_pylist(), expected.to_pylist()
    first = next((i for i, (a, b) in enumerate(zip(g, e)) if a != b), None)
    assert len(g) == len(e) and first is None, (
        f"{what}: {len(g)} rows, expected {len(e)}; first difference at row {first}: "
        f"got {g[first] if first is not None else None}, expected {e[first] if first is not None else None}")


async def read(db, ref: str, timeout: float = 20) -> pa.Table:
    """`db.read(ref)`, failing (not hanging) when the output never ends or its tradecraft fails."""
    tradecraft = ref.split("/")[0]
    got: list[pa.Table] = []

    async def watch() -> None:
        while True:
            row = {t["name"]: t for t in await db.list()}.get(tradecraft, {})
            if row.get("state") == "failed":
                raise AssertionError(f"{tradecraft} failed while reading {ref}: {row.get('error')}")
            await trio.sleep(0.1)

    async def reader(cancel: trio.CancelScope) -> None:
        got.append(await db.read(ref))
        cancel.cancel()

    with trio.fail_after(timeout):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            nursery.start_soon(reader, nursery.cancel_scope)
    return got[0]


async def wait_state(db, tradecraft: str, state: str = "finished", timeout: float = 15) -> dict:
    """The tradecraft's `list()` row once it reaches `state` (fails with the last state seen)."""
    row: dict = {}
    with trio.move_on_after(timeout):
        while True:
            row = {t["name"]: t for t in await db.list()}.get(tradecraft, {})
            if row.get("state") == state:
                return row
            await trio.sleep(0.05)
    raise AssertionError(f"{tradecraft} did not reach {state!r} in {timeout}s: {row}")


async def retained_rows(db, tradecraft: str) -> dict[str, int]:
    """Retained log name (as `describe` shows it, e.g. "router.east") -> rows it holds."""
    info = await db.describe(tradecraft)
    return {name: log["rows"] for a in info["tradecrafts"][0]["analytics"]
            for name, log in a["retained"].items()}
