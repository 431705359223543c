"""Membership and the shared truth of a cluster of congregations, kept in etcd.

Layout (under /hallelujah/):
- `members/NAME`: a congregation's address and workers, on its lease: it goes when the lease does.
- `tradecrafts/TC`: the document, its state, the member that runs it (`owner`) and its failovers.
- `replicas/TC`: the member that holds a copy of its pushed streams' input logs (replication.py).
- `owners/TC`: the member that runs it, on that member's lease. Its create revision is the
  owner's fencing token: a state written by an owner is written only while that key is the one
  it created, so a congregation that lost its lease (a stall, a partition) never overwrites what
  its successor did.

A congregation whose lease expires is failed; its `owners/` keys go with the lease, and the
other members claim the tradecrafts they find without an owner (`watch`). A congregation also
fences itself on its own timer: when no keepalive has been answered for a lease's TTL it stops
what it runs and joins again, empty-handed (etcd 3.4 may revoke a lease early after its leader
stalls; that is the same case).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import structlog
import trio

from congregation.etcd import KV, Etcd, absent, created_at, delete_op, put_op
from hallelujah.errors import TradecraftError, Unavailable

log = structlog.get_logger("hallelujah.cluster")
ROOT = "/hallelujah/"
MEMBERS, TRADECRAFTS, OWNERS = f"{ROOT}members/", f"{ROOT}tradecrafts/", f"{ROOT}owners/"
REPLICAS = f"{ROOT}replicas/"      # TC -> the member holding a copy of its pushed streams' logs
KNOWN = f"{ROOT}known/"            # every member that ever joined (no lease): who is down
WATCH_EVERY = 0.5          # seconds between looks at the cluster's truth
CLAIM_STAGGER = 0.5        # seconds more a member waits to claim an orphan per member less loaded
FAILOVERS_KEPT = 20        # failovers a tradecraft's record keeps, for describe
# the states of a tradecraft that another member takes over: a finished one too, whose outputs
# are then computed again there from its sources and copied logs (they were on the lost member)
MOVES = ("running", "finished")


@dataclass(frozen=True)
class Member:
    name: str
    address: str
    workers: int
    lease: int
    since: float


@dataclass
class View:
    """The cluster's truth at one revision."""
    members: dict[str, Member] = field(default_factory=dict)
    tradecrafts: dict[str, KV] = field(default_factory=dict)
    owners: dict[str, KV] = field(default_factory=dict)
    replicas: dict[str, KV] = field(default_factory=dict)
    known: dict[str, Any] = field(default_factory=dict)

    def owner(self, tradecraft: str) -> Member | None:
        """The live member that runs `tradecraft`, if any."""
        kv = self.owners.get(tradecraft)
        if kv is None:
            return None
        member = self.members.get(kv.json()["member"])
        return member if member is not None and member.lease == kv.lease else None

    def load(self) -> dict[str, int]:
        """Tradecrafts owned by each live member."""
        counts = {name: 0 for name in self.members}
        for kv in self.owners.values():
            name = kv.json()["member"]
            if name in counts:
                counts[name] += 1
        return counts

    def least_loaded(self) -> Member:
        """The member with the fewest tradecrafts per worker (by name on a tie)."""
        load = self.load()
        return min(self.members.values(), key=lambda m: (load[m.name] / max(m.workers, 1), m.name))


class Cluster:
    """This congregation's membership: its lease, and its reads and writes of the shared truth."""

    def __init__(self, etcd: Etcd, name: str, address: str, workers: int, ttl: int = 2) -> None:
        self.etcd = etcd
        self.name = name
        self.address = address
        self.workers = workers
        self.ttl = ttl
        self.lease = 0
        self._answered_at = 0.0       # trio time at which the last answered keepalive was sent
        self.fences: dict[str, int] = {}   # tradecraft -> create revision of the owners/ key we made
        self.epochs: dict[str, int] = {}   # tradecraft -> create revision of its record (one life of a name)

    async def join(self, patience: float | None = None) -> None:
        """Take a lease and register under it. A member of the same name still registered (this
        congregation before a kill -9, say) is waited for until its lease runs out."""
        deadline = trio.current_time() + (patience if patience is not None else self.ttl + 3.0)
        key = f"{MEMBERS}{self.name}"
        while True:
            lease = await self.etcd.grant(self.ttl)
            sent = trio.current_time()
            info = {"name": self.name, "address": self.address, "workers": self.workers,
                    "lease": str(lease), "since": time.time()}
            held, _ = await self.etcd.txn([absent(key)], [put_op(key, info, lease),
                                                          put_op(f"{KNOWN}{self.name}", info)])
            if held:
                self.lease, self._answered_at = lease, sent
                self.fences.clear()
                log.info("cluster_joined", member=self.name, lease=lease)
                return
            await self.etcd.revoke(lease)
            other = await self.etcd.get(key)
            if trio.current_time() > deadline:
                where = other.json().get("address", "?") if other else "?"
                raise Unavailable(f'--name {self.name}: a live congregation of that name is already a member '
                                  f'of the cluster (at {where}); give this one another --name')
            await trio.sleep(0.25)

    def lease_lost(self) -> bool:
        """No keepalive answered for a whole TTL: etcd may have given our work to others."""
        return trio.current_time() - self._answered_at > self.ttl

    async def keep(self, on_lost: Callable[[str], Awaitable[None]]) -> None:
        """Keep the lease alive; when it is lost, stop what we run (`on_lost`) and join again."""
        while True:
            await trio.sleep(self.ttl / 4)
            sent = trio.current_time()
            try:
                left = await self.etcd.keepalive(self.lease)
            except Unavailable as exc:
                left, why = -1, f"etcd did not answer: {exc}"
            else:
                why = "etcd says the lease expired"
            if left > 0:
                self._answered_at = sent
                continue
            if left == 0 or self.lease_lost():
                log.warning("cluster_lease_lost", member=self.name, reason=why)
                await on_lost(why)
                with trio.move_on_after(self.ttl):     # (if it still lives: what it held is free now)
                    try:
                        await self.etcd.revoke(self.lease)
                    except Unavailable:
                        pass
                while True:
                    try:
                        await self.join(patience=float("inf"))
                        break
                    except Unavailable as exc:
                        log.warning("cluster_rejoin_failed", member=self.name, error=str(exc))
                        await trio.sleep(self.ttl / 2)

    async def leave(self) -> None:
        """On a clean stop: let the others take over at once, not after the lease's TTL."""
        if self.lease:
            with trio.move_on_after(2):
                await self.etcd.revoke(self.lease)

    async def view(self) -> View:
        view = View()
        for kv in await self.etcd.prefix(ROOT):
            if kv.key.startswith(MEMBERS):
                m = kv.json()
                view.members[m["name"]] = Member(m["name"], m["address"], int(m["workers"]), kv.lease,
                                                 float(m["since"]))
            elif kv.key.startswith(TRADECRAFTS):
                view.tradecrafts[kv.key[len(TRADECRAFTS):]] = kv
            elif kv.key.startswith(OWNERS):
                view.owners[kv.key[len(OWNERS):]] = kv
            elif kv.key.startswith(REPLICAS):
                view.replicas[kv.key[len(REPLICAS):]] = kv
            elif kv.key.startswith(KNOWN):
                view.known[kv.key[len(KNOWN):]] = kv.json()
        return view

    async def create(self, name: str, document: dict[str, Any], owner: Member) -> None:
        """Record a submitted tradecraft and the member that will run it, in one transaction."""
        record = {"document": document, "state": "running", "error": "", "owner": owner.name,
                  "submitted_at": time.time(), "accepted_by": self.name, "failovers": []}
        held, _ = await self.etcd.txn(
            [absent(f"{TRADECRAFTS}{name}")],
            [put_op(f"{TRADECRAFTS}{name}", record), put_op(f"{OWNERS}{name}", _owner(owner), owner.lease)])
        if not held:
            raise TradecraftError("tradecraft", f'a tradecraft named "{name}" exists already in the cluster '
                                  f'(cancel it first)')

    async def confirm(self, name: str) -> bool:
        """Is `name` ours, by a key on our current lease? Keeps its fence for later writes."""
        kv = await self.etcd.get(f"{OWNERS}{name}")
        record = await self.etcd.get(f"{TRADECRAFTS}{name}")
        if kv is None or record is None or kv.lease != self.lease or kv.json()["member"] != self.name:
            return False
        self.fences[name] = kv.create_revision
        self.epochs[name] = record.create_revision
        return True

    async def claim(self, name: str, record: KV, reason: str) -> bool:
        """Take an orphaned tradecraft: ours if no one else took it since `record` was read."""
        detail = record.json()
        failover = {"at": time.time(), "from": detail.get("owner", ""), "to": self.name, "reason": reason}
        detail.update(owner=self.name, failovers=(detail.get("failovers", []) + [failover])[-FAILOVERS_KEPT:])
        key = f"{TRADECRAFTS}{name}"
        held, revision = await self.etcd.txn(
            [absent(f"{OWNERS}{name}"),
             {"key": put_op(key, None)["request_put"]["key"], "target": "MOD", "result": "EQUAL",
              "mod_revision": str(record.mod_revision)}],
            [put_op(key, detail), put_op(f"{OWNERS}{name}", _owner(self._me()), self.lease)])
        if held:
            self.fences[name] = revision
            log.warning("tradecraft_failover", tradecraft=name, **{k: v for k, v in failover.items() if k != "at"})
        return held

    async def set_state(self, name: str, state: str, error: str = "") -> bool:
        """Record a tradecraft's end, while it is ours (False: fenced, someone else runs it now)."""
        fence = self.fences.get(name)
        kv = await self.etcd.get(f"{TRADECRAFTS}{name}")
        if fence is None or kv is None:
            return False
        detail = {**kv.json(), "state": state, "error": error}
        held, _ = await self.etcd.txn([created_at(f"{OWNERS}{name}", fence)],
                                      [put_op(f"{TRADECRAFTS}{name}", detail)])
        return held

    async def remove(self, name: str) -> None:
        """Forget a cancelled tradecraft (its record and its owner)."""
        await self.etcd.txn([], [delete_op(f"{TRADECRAFTS}{name}"), delete_op(f"{OWNERS}{name}"),
                                 delete_op(f"{REPLICAS}{name}")])
        self.fences.pop(name, None)

    def _me(self) -> Member:
        return Member(self.name, self.address, self.workers, self.lease, 0.0)


def _owner(member: Member) -> dict[str, Any]:
    return {"member": member.name, "address": member.address, "since": time.time()}


class Orphans:
    """When each tradecraft without an owner was first seen, to stagger claims by load."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}

    def due(self, view: View, me: str) -> list[tuple[str, KV]]:
        """The orphans this member should try to claim now: at once if it holds the copy of its
        input logs, else (after the holder's turn) at once if it is the least loaded,
        CLAIM_STAGGER seconds later per member less loaded than it."""
        now = trio.current_time()
        orphans = {name: kv for name, kv in view.tradecrafts.items()
                   if kv.json().get("state") in MOVES and view.owner(name) is None}
        self.seen = {name: self.seen.get(name, now) for name in orphans}
        if me not in view.members:
            return []
        load = view.load()
        ranked = sorted(view.members.values(), key=lambda m: (load[m.name] / max(m.workers, 1), m.name))
        rank = [m.name for m in ranked].index(me)

        def turn(name: str) -> int:
            copy = view.replicas.get(name)
            holder = copy.json() if copy is not None else {}
            current = holder.get("epoch") == view.tradecrafts[name].create_revision
            member = view.members.get(holder.get("member", ""))
            if not current or member is None or str(member.lease) != holder.get("lease"):
                return rank
            return 0 if holder["member"] == me else rank + 2
        return [(name, kv) for name, kv in orphans.items() if now - self.seen[name] >= turn(name) * CLAIM_STAGGER]
