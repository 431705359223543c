"""Any member answers: a command about a tradecraft goes to the congregation that runs it.

A client may talk to any congregation of a cluster. A command naming a tradecraft that another
member runs is sent on to it: a command with one answer as a command of our own (its error comes
back typed), a `publish` or `stream` by relaying the connection's bytes both ways once the
request is passed on, so batches and credits flow end to end and the owner applies its own
limits and checks. A command sent on carries `_routed`, and is answered where it arrives.
"""
from __future__ import annotations

import json
import ssl
from contextlib import suppress
from typing import Any

import structlog
import trio

from congregation.cluster import MOVES, View
from congregation.etcd import Etcd
from hallelujah.client import Database
from hallelujah.errors import moving
from hallelujah.frames import Connection, connect

log = structlog.get_logger("hallelujah.routing")
ROUTED = "_routed"
RELAY_CHUNK = 1 << 20
_NAMED_BY = ("tradecraft", "stream", "analytic", "jah")


def tradecraft_of(command: str, args: dict[str, Any]) -> str:
    """The tradecraft a command is about ("" for none: list, describe of everything, …)."""
    if command == "submit":
        document = args.get("document")
        if isinstance(document, str):
            with suppress(ValueError):
                document = json.loads(document)
        name = document.get("tradecraft") if isinstance(document, dict) else None
        return name if isinstance(name, str) else ""
    for key in _NAMED_BY:
        value = args.get(key)
        if isinstance(value, str) and value:
            return value.partition("/")[0]
    return ""


def owner_address(view: View, name: str, me: str) -> str | None:
    """Where a command about `name` is answered: None here (ours, or unknown to the cluster),
    else the owner's address. Unavailable while it has no live owner (a failover under way)."""
    if name not in view.tradecrafts:
        return None
    owner = view.owner(name)
    if owner is None:
        record = view.tradecrafts[name].json()
        if record.get("state") not in MOVES:
            return None
        raise moving(name, f'it ran on "{record.get("owner", "?")}", which is gone')
    return None if owner.name == me else owner.address


def peer_tls(c: Any) -> ssl.SSLContext | None:
    """How a congregation dials another: with its own certificate when it runs TLS."""
    return c.tls.client_context() if getattr(c, "tls", None) is not None else None


async def forward(c: Any, address: str, command: str, args: dict[str, Any]) -> dict[str, Any]:
    """A command of one answer, sent on to the member at `address`."""
    member = Database([address])
    member.tls = peer_tls(c)
    return await member.command(command, **{**args, ROUTED: True})


async def relay(c: Any, conn: Connection, fields: dict[str, Any], args: dict[str, Any], address: str) -> None:
    """Pass a publish or stream on to `address`, then carry bytes both ways until the owner's
    side ends (which ends the client's too: a client whose owner went away retries elsewhere)."""
    target = await connect(address, tls=peer_tls(c))
    try:
        await target.send("cmdReq", {**fields, "args": json.dumps({**args, ROUTED: True})})
        early = conn.unread()
        if early:
            await target.stream.send_all(early)

        async def upstream() -> None:
            await _pump(conn.stream, target.stream)
            with suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError, AttributeError):
                await target.stream.send_eof()   # type: ignore[attr-defined]

        async with trio.open_nursery() as nursery:
            nursery.start_soon(upstream)
            await _pump(target.stream, conn.stream)
            nursery.cancel_scope.cancel()
    finally:
        await target.aclose()


async def _pump(source: trio.abc.ReceiveStream, sink: trio.abc.SendStream) -> None:
    with suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        while data := await source.receive_some(RELAY_CHUNK):
            await sink.send_all(data)


async def members_of(etcd: Etcd, view: View, me: str) -> dict[str, Any]:
    """Every member that ever joined, up (with the seconds left on its lease) or down, and
    etcd's Raft leader: for describe."""
    load = view.load()
    members = []
    for name in sorted(set(view.known) | set(view.members)):
        live = view.members.get(name)
        if live is None:
            known = view.known[name]
            members.append({"name": name, "address": known["address"], "workers": known["workers"],
                            "tradecrafts": 0, "this": name == me, "up": False, "since": known["since"],
                            "lease_left": None})
            continue
        members.append({"name": name, "address": live.address, "workers": live.workers,
                        "tradecrafts": load[name], "this": name == me, "up": True, "since": live.since,
                        "lease_left": await etcd.time_to_live(live.lease)})
    return {"members": members, "etcd_leader": await etcd.leader()}


def placed(view: View, tradecraft: dict[str, Any]) -> dict[str, Any]:
    """A tradecraft's description with where it runs and its failovers (from the cluster)."""
    kv = view.tradecrafts.get(tradecraft["name"])
    record = kv.json() if kv is not None else {}
    owner = view.owner(tradecraft["name"])
    return {**tradecraft, "congregation": owner.name if owner else record.get("owner"),
            "failovers": record.get("failovers", [])}
