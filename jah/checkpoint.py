"""A Jah's part of a checkpoint: its state written when barrier N passes it, then reported.

Barriers come from the sources (asked by the congregation every `checkpoint` period) and travel
in order with the data; a port with several datastreams lines them up (`InPort`), so when barrier
N reaches a Jah, its state holds exactly what came before N on every input. A stateful Jah writes
that state as Arrow IPC files — synced, so the checkpoint it completes survives a crash — and
reports the file, its size and (a source) the position the barrier followed; the congregation
counts the reports and commits the checkpoint once every Jah has written it (Flink's asynchronous
barrier snapshots, done synchronously here: the state is small next to the stream).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import trio

SOURCE_ROLES = ("source", "logsource")


@dataclass
class State:
    """What a stateful Jah keeps at a checkpoint: named tables and a few scalars (JSON)."""

    tables: dict[str, pa.Table]
    meta: dict[str, Any] = field(default_factory=dict)


def state_dir(directory: str, checkpoint: int, jah_id: str) -> Path:
    """Where a Jah's state of one checkpoint goes: a name made of its id's safe characters."""
    return Path(directory) / str(checkpoint) / re.sub(r"[^A-Za-z0-9_.-]", "~", jah_id)


def write_state(path: Path, state: State) -> tuple[int, int]:
    """Write and sync one Jah's state (in a thread: it is blocking I/O): a file per table and
    `meta.json`, in a directory renamed into place once all are synced. (bytes, rows) written."""
    partial = path.with_name(path.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    size = rows = 0
    for name, table in state.tables.items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ValueError(f"state table name {name!r}")
        target = partial / f"{name}.arrow"
        with pa.OSFile(str(target), "wb") as sink:
            with pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)
        rows += table.num_rows
    (partial / "meta.json").write_text(json.dumps(state.meta))
    for f in partial.iterdir():
        _sync(f)
        size += f.stat().st_size
    _sync(partial)
    partial.rename(path)
    _sync(path.parent)
    return size, rows


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_state(path: str) -> State:
    """A state written by `write_state`."""
    directory = Path(path)
    tables = {}
    for f in sorted(directory.glob("*.arrow")):
        with pa.memory_map(str(f)) as source:
            tables[f.stem] = pa.ipc.open_file(source).read_all()
    return State(tables, json.loads((directory / "meta.json").read_text()))


async def take(jah: Any, checkpoint: int, position: int | None) -> None:
    """Write `jah`'s state for `checkpoint` (if it keeps any) and report it to the congregation."""
    detail: dict[str, Any] = {"id": checkpoint, "bytes": 0, "rows": 0}
    if position is not None:
        detail["position"] = position
    state = jah.snapshot()
    directory = jah.spec.get("checkpoint_dir")
    if state is not None and directory:
        path = state_dir(directory, checkpoint, jah.id)
        detail["bytes"], detail["rows"] = await trio.to_thread.run_sync(write_state, path, state)
        detail["file"] = str(path)
    jah.host.report(jah.id, "checkpointed", json.dumps(detail))
