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

    with trio.move_on_after(timeout) as waited:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            nursery.start_soon(reader, nursery.cancel_scope)
    if waited.cancelled_caught:
        raise AssertionError(f"{ref} did not end in {timeout}s; what every process was doing:\n"
                             f"{await stall_dump(db, tradecraft)}")
    return got[0]


async def stall_dump(db, tradecraft: str) -> str:
    """`hallelujah debug` and `describe`, so a stall seen only in CI says where it stood."""
    with trio.move_on_after(10):
        return await db.debug(tradecraft) + "\n" + repr(await db.describe(tradecraft))
    return "(the congregation did not answer `debug` in 10 s)"


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


def read_by_logsource(info: dict) -> int:
    """Rows a tradecraft's log source has read since its congregation started (`info`: the
    tradecraft as describe tells it)."""
    return next(j.get("rows_out", 0) for a in info["analytics"] for j in a["jahs"] if j["role"] == "logsource")


async def logsource_rows(db, tradecraft: str) -> int:
    return read_by_logsource((await db.describe(tradecraft))["tradecrafts"][0])


async def killed_after_a_checkpoint(data_dir, extra: list[str], doc: dict, stream: str, parts: list[pa.Table],
                                    at: int, output: str, timeout: float = 90) -> tuple[pa.Table, dict, dict]:
    """Publish `parts` as one publisher; once the log source has read parts 0..`at`, take a
    checkpoint; publish one more part, SIGKILL the congregation, start it again on its data dir
    and publish every part again (kept once), then the end. Returns the output read to its end,
    the checkpoint taken, and the tradecraft as describe tells it after the restart."""
    from tests.conftest import Daemon
    name = stream.split("/")[0]
    rows = sum(p.num_rows for p in parts[:at + 1])
    daemons: list[Daemon] = []

    def start() -> Daemon:
        daemons.append(Daemon(data_dir, workers=2, extra=[*extra, "--checkpoint-every", "0"]).start())
        return daemons[-1]

    try:
        db = start().db()
        await db.submit(doc)
        with trio.fail_after(timeout):
            for i, part in enumerate(parts[:at + 2]):
                await db.publish(stream, part, publisher_id="pub", first_seq=i)
                if i == at:
                    while await logsource_rows(db, name) < rows:    # the log source has read them all
                        await trio.sleep(0.02)
                    taken = await db.checkpoint(name)
            daemons[-1].kill()
            db = start().db()
            for i, part in enumerate(parts):
                await db.publish(stream, part, publisher_id="pub", first_seq=i)
            await db.publish(stream, [], end=True, schema=parts[0].schema)
            got = await read(db, output, timeout=timeout)
            info = (await db.describe(name))["tradecrafts"][0]
        return got, taken, info
    finally:
        for d in daemons:
            d.stop()
