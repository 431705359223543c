"""What a process is doing, for a person whose stream stopped moving: its trio task tree (each
task with where it awaits) and, per Jah, what it awaits and each datastream's credits and queues.

Read by `kill -USR1`, `hallelujah debug` and the stall watch; never on a hot path.
"""
from __future__ import annotations

import os
import types
from collections.abc import Iterable
from typing import Any

import trio


def _where(coro: Any) -> str:
    """The innermost frame a coroutine is suspended in: file:line function."""
    frame_text = ""
    seen = 0
    while coro is not None and seen < 64:
        seen += 1
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None) \
            or getattr(coro, "ag_frame", None)
        if frame is not None and f"{os.sep}trio{os.sep}" not in frame.f_code.co_filename:
            code = frame.f_code
            frame_text = f"{os.path.basename(code.co_filename)}:{frame.f_lineno} {code.co_name}"
        nxt = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None) \
            or getattr(coro, "ag_await", None)
        if isinstance(nxt, types.GeneratorType) or hasattr(nxt, "cr_frame") or hasattr(nxt, "gi_frame") \
                or hasattr(nxt, "ag_frame"):
            coro = nxt
        else:
            break
    return frame_text or "?"


def suspended_in(task: trio.lowlevel.Task) -> str:
    """Where a task and its descendants wait, leaves only: `a; b; c`."""
    leaves: list[str] = []

    def walk(t: trio.lowlevel.Task) -> None:
        children = [c for n in t.child_nurseries for c in n.child_tasks]
        if not children:
            leaves.append(_where(t.coro))
        for child in children:
            walk(child)

    walk(task)
    return "; ".join(leaves)


def task_tree() -> list[str]:
    """Every task of this process's trio run, indented by nursery, with where each awaits."""
    lines: list[str] = []

    def walk(task: trio.lowlevel.Task, depth: int) -> None:
        lines.append(f"{'  ' * depth}{task.name} @ {_where(task.coro)}")
        for nursery in task.child_nurseries:
            for child in sorted(nursery.child_tasks, key=lambda t: t.name):
                walk(child, depth + 1)

    root = trio.lowlevel.current_root_task()
    if root is not None:
        walk(root, 0)
    return lines


def jah_lines(jahs: Iterable[Any]) -> list[str]:
    """Per Jah: role, state, what it awaits; per port, each datastream's counters."""
    lines = []
    for jah in jahs:
        lines.append(f"jah {jah.id} ({jah.role}) {jah.state}: awaiting {jah.awaiting()}")
        for name, port in jah.inputs.items():
            lines.append(f"  in {name}: {port.describe()}")
        for name, out in jah.outputs.items():
            for k, sender in enumerate(out.senders):
                lines.append(f"  out {name}[{k}]: {sender.describe()}")
    return lines


def dump(process: str, jahs: Iterable[Any], extra: Iterable[str] = ()) -> str:
    """The whole picture of one process as text."""
    head = f"=== {process} (pid {os.getpid()}) ==="
    return "\n".join([head, *extra, *jah_lines(jahs), "tasks:", *task_tree()]) + "\n"
