"""What a member of a cluster does with what it reads of the shared truth, every half second.

- A tradecraft that runs here but that etcd gives to another member (our lease was lost, and a
  successor claimed it) is stopped here: we are fenced.
- A running tradecraft without a live owner (its member's lease expired) is claimed, by the
  least loaded member first, and started here from its document: its file sources are read
  again from their start, its pushed streams take their publishers' retries.
"""
from __future__ import annotations

from typing import Any, Protocol

import structlog
import trio

from congregation.cluster import WATCH_EVERY, Cluster, Orphans, View
from hallelujah.errors import HallelujahError, Unavailable
from hallelujah.tradecraft import parse_document

log = structlog.get_logger("hallelujah.failover")


class Member(Protocol):
    """What failover needs of a congregation."""
    cluster: Cluster | None
    deployments: dict[str, Any]
    starting: set[str]
    copies: dict[str, int]
    logs: Any
    allowed: Any
    commands: Any


async def watch(c: Member) -> None:
    cluster = c.cluster
    assert cluster is not None
    orphans = Orphans()
    while True:
        await trio.sleep(WATCH_EVERY)
        if cluster.lease_lost():
            continue                      # (cluster.keep stops our work and joins again)
        try:
            view = await cluster.view()
            await _fence(c, cluster, view)
            for name, record in orphans.due(view, cluster.name):
                await _adopt(c, cluster, name, record)
        except Unavailable as exc:
            log.info("cluster_unreadable", error=str(exc))


async def _fence(c: Member, cluster: Cluster, view: View) -> None:
    for log_name in [n for n in c.copies if n.partition("/")[0] not in view.tradecrafts]:
        await c.logs.delete(log_name)            # a copy of a cancelled tradecraft's log
        c.copies.pop(log_name, None)
    for name, d in list(c.deployments.items()):
        owner = view.owners.get(name)
        if d.state in ("running", "starting", "finished") and (owner is None or owner.lease != cluster.lease):
            log.warning("tradecraft_fenced", tradecraft=name,
                        reason="the cluster gives it to another congregation now")
            await c.commands.forget(name)


async def _adopt(c: Member, cluster: Cluster, name: str, record: Any) -> None:
    detail = record.json()
    reason = f'its congregation "{detail.get("owner", "?")}" is gone (its lease expired)'
    c.starting.add(name)           # commands about it wait for it from the claim on
    try:
        if not await cluster.claim(name, record, reason):
            return
        await c.commands.forget(name, keep_copies=True)   # what an earlier life of it left here
        tc = parse_document(detail["document"], allowed=c.allowed)
        await c.commands.start(tc, adopted=True)
    except HallelujahError as exc:
        log.warning("failover_failed", tradecraft=name, error=str(exc))
        await cluster.set_state(name, "failed", f"could not be started again on {cluster.name}: {exc}")
    finally:
        c.starting.discard(name)


async def stop_all(c: Member, reason: str) -> None:
    """Our lease is lost: others may run our tradecrafts now, so nothing of them runs here."""
    for name in list(c.deployments):
        log.warning("tradecraft_fenced", tradecraft=name, reason=reason)
        await c.commands.forget(name)
