"""A stall explains itself: the dump of every process on `kill -USR1` or `hallelujah debug`, and
one `stalled` warning (with that dump) for a tradecraft that has work waiting and has moved no
row for `STALL_AFTER` seconds.

Only what the congregation already has is read: its hosts (to ask each worker for its dump), its
own task tree, and the statistics workers send twice a second.
"""
from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
import trio

from jah.debug import dump

log = structlog.get_logger("hallelujah.stall")
STALL_AFTER = float(os.environ.get("HALLELUJAH_STALL_AFTER", "30"))
LOOK_EVERY = 1.0
DUMP_TIMEOUT = 5.0


class Host(Protocol):
    index: int
    pid: int

    async def request(self, kind: str, fields: dict[str, Any]) -> dict[str, Any]: ...


async def dump_hosts(hosts: Mapping[int, Host], header: Iterable[str] = ()) -> str:
    """Every worker's dump, asked concurrently, after `header`; a process that does not answer
    in time is named as such."""
    texts: dict[int, str] = {}

    async def ask(index: int, host: Host) -> None:
        with trio.move_on_after(DUMP_TIMEOUT):
            try:
                cfm = await host.request("controlReq", {"jah": "", "args": json.dumps({"dump": True})})
                texts[index] = json.loads(cfm["result"])["dump"]
                return
            except Exception as exc:  # noqa: BLE001 - a dump reports what it cannot reach
                texts[index] = f"=== process {index} (pid {host.pid}): no dump: {exc} ===\n"
                return
        texts[index] = f"=== process {index} (pid {host.pid}): no answer in {DUMP_TIMEOUT:g}s ===\n"

    async with trio.open_nursery() as nursery:
        for index, host in hosts.items():
            nursery.start_soon(ask, index, host)
    return "\n".join([*header, *(texts[i] for i in sorted(texts))])


@dataclass
class Progress:
    """When each tradecraft last moved a row, and whether it is flagged stalled."""

    moved: dict[str, tuple[int, float]] = field(default_factory=dict)   # name -> (rows, since)
    stalled: dict[str, float] = field(default_factory=dict)             # name -> stalled since

    def observe(self, name: str, rows: int, pending: bool, now: float) -> bool:
        """Record a look; True once, when the tradecraft has just become stalled."""
        last = self.moved.get(name)
        if last is None or last[0] != rows or not pending:
            self.moved[name] = (rows, now)
            self.stalled.pop(name, None)
            return False
        if name not in self.stalled and now - last[1] >= STALL_AFTER:
            self.stalled[name] = last[1]
            return True
        return False

    def forget(self, keep: Iterable[str]) -> None:
        keep = set(keep)
        for table in (self.moved, self.stalled):
            for name in [n for n in table if n not in keep]:
                del table[name]


def tradecraft_activity(jahs: Iterable[str], stats: Mapping[str, Mapping[str, Any]]) -> tuple[int, bool]:
    """Rows moved so far by a tradecraft's Jahs, and whether any of them has work waiting."""
    rows, pending = 0, False
    for jah in jahs:
        s = stats.get(jah)
        if s is None:
            continue
        rows += s.get("rows_in", 0) + s.get("rows_out", 0)
        pending = pending or bool(s.get("pending"))
    return rows, pending


async def watch(congregation: Any) -> None:
    """SIGUSR1 writes every process's dump to stderr; a look every second finds stalls."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_on_signal, congregation)
        await _look_for_stalls(congregation)


async def dump_all(congregation: Any) -> str:
    """The congregation's tradecrafts (stalled ones say for how long), its own tasks, then every
    worker's."""
    return await dump_hosts(congregation.hosts, [*_deployment_lines(congregation), dump(congregation.name, [])])


async def _on_signal(congregation: Any) -> None:
    with trio.open_signal_receiver(signal.SIGUSR1) as signals:
        async for _ in signals:
            sys.stderr.write(await dump_all(congregation))
            sys.stderr.flush()


def _deployment_lines(congregation: Any) -> list[str]:
    stalled = congregation.progress.stalled
    return [f"tradecraft {name}: {d.state}"
            + (f", stalled for {trio.current_time() - stalled[name]:.0f}s" if name in stalled else "")
            + (_checkpoint_text(d.checkpoints.describe()) if getattr(d, "checkpoints", None) else "")
            for name, d in congregation.deployments.items()]


def _checkpoint_text(cp: dict[str, Any]) -> str:
    """The last complete checkpoint and the one in flight (with the Jahs it waits for)."""
    last, flying = cp["last"], cp["in_flight"]
    text = (f"; checkpoint {last['id']} complete {last['age']:.0f}s ago ({last['bytes']:,} bytes, "
            f"{last['seconds']:.3f}s)" if last else "; no checkpoint complete")
    if flying:
        text += (f"; checkpoint {flying['id']} in flight for {flying['for']:.0f}s, waiting for "
                 f"{', '.join(flying['waiting_for']) or 'nothing'}")
    return text


async def _look_for_stalls(congregation: Any) -> None:
    progress: Progress = congregation.progress
    while True:
        await trio.sleep(LOOK_EVERY)
        stats = congregation.all_statistics()
        running = {name: d for name, d in congregation.deployments.items()
                   if d.state == "running" and d.plan is not None}
        progress.forget(running)
        for name, d in running.items():
            rows, pending = tradecraft_activity(d.plan.jahs, stats)
            if progress.observe(name, rows, pending, trio.current_time()):
                log.warning("stalled", tradecraft=name, seconds=STALL_AFTER, dump=await dump_all(congregation))
