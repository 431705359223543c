"""A pushed stream's input log, copied to another member before a publish is acknowledged.

In a cluster, a batch a client published is acknowledged once it is synced here *and* in a copy
at one other member: two of three, a majority. The copy is the log itself, shipped batch by
batch in log order with the source and origin each batch was written with, so the copy's
progress per publisher is the owner's: if the owner is lost, the member that holds the copy
takes the tradecraft over (it claims first), replays the stream from its copy, and a publisher
that retries is told what is kept already and sends only the rest.

The owner ships each input log from the copy's end on (a new copy is first brought up to date).
A copy that fails (its member lost) is replaced by one at another live member; meanwhile,
publishes wait: an acknowledgement means a majority has the batch.
"""
from __future__ import annotations

import contextlib
import json
import ssl
from typing import Any

import structlog
import trio

from congregation.cluster import REPLICAS, WATCH_EVERY, Cluster
from congregation.hallelu import published
from hallelujah.checked import checked_batch
from hallelujah.datastream import open_receiver, open_sender
from hallelujah.errors import HallelujahError, InvalidInput, NotFound, Unavailable, moving
from hallelujah.frames import Connection, connect, schema_bytes, schema_of
from jah.envelope import END_OF_STREAM, NONE
from jah.streams import CREDITS

log = structlog.get_logger("hallelujah.replication")
RETRY_EVERY = 0.5          # seconds before a lost copy is made again, at another member
OPEN_TIMEOUT = 5.0         # seconds a member has to answer a request for a copy


class Shipper:
    """Ships one input log to a copy at another member; `kept(seq)` waits until the copy has it."""

    def __init__(self, logs: Any, cluster: Cluster, tradecraft: str, epoch: int, name: str,
                 tls: ssl.SSLContext | None = None) -> None:
        self.logs, self.cluster, self.tradecraft, self.epoch, self.name = logs, cluster, tradecraft, epoch, name
        self.tls = tls
        self.acked = -1            # the last log seq the copy has synced
        self._changed = trio.Event()
        self.member = ""
        self.closed = False
        self.copy_ended = False
        self._said = ""            # the failure last logged (said once, until a copy is made again)

    async def kept(self, seq: int) -> None:
        """Wait until the copy has log seq `seq`; Unavailable once the tradecraft stopped here
        (fenced, or taken over): a publisher waiting on it tries another member."""
        while self.acked < seq:
            if self.closed:
                raise moving(self.tradecraft, f'it stopped on "{self.cluster.name}" before this batch had a copy')
            await self._changed.wait()

    async def ended(self) -> None:
        """Wait until the copy has the log's end too (a publish with `end` is answered after)."""
        while not self.copy_ended:
            if self.closed:
                raise moving(self.tradecraft, f'it stopped on "{self.cluster.name}" before the copy had the end')
            await self._changed.wait()

    def close(self) -> None:
        self.closed = True
        self._changed.set()

    def _ack(self, seq: int) -> None:
        self.acked = max(self.acked, seq)
        self._changed.set()
        self._changed = trio.Event()

    async def run(self) -> None:
        """Keep a copy somewhere, for as long as the tradecraft runs here (a failure is said
        once, until a copy is made again)."""
        while True:
            try:
                await self._ship_once()
            except (HallelujahError, EOFError) as exc:
                if str(exc) != self._said:
                    log.warning("replica_lost", log=self.name, member=self.member, error=str(exc))
                self._said = str(exc)
            except Exception:   # a bug of ours: said, and tried again; the congregation goes on
                log.exception("replica_failed", log=self.name, member=self.member)
                await trio.sleep(10 * RETRY_EVERY)
            await trio.sleep(RETRY_EVERY)

    async def _ship_once(self) -> None:
        """Ship to one member, and keep the copy there, until the copy fails (raises) or the
        tradecraft stops here (cancelled)."""
        view = await self.cluster.view()
        others = sorted(n for n in view.members if n != self.cluster.name)
        if not others:
            raise Unavailable("no other live member to hold a copy (publishes wait for one)")
        # the next member after this one by name: each copy of a cluster at another member
        self.member = next((n for n in others if n > self.cluster.name), others[0])
        # (the holder's lease: a holder that restarts has lost its copy, and is no holder then)
        await self.cluster.etcd.put(f"{REPLICAS}{self.tradecraft}", {
            "member": self.member, "epoch": self.epoch, "lease": str(view.members[self.member].lease)})
        conn = await connect(view.members[self.member].address, tls=self.tls)
        try:
            with trio.move_on_after(OPEN_TIMEOUT) as opening:    # (a stopped member answers nothing)
                await conn.send("cmdReq", {"id": 1, "command": "replicate", "args": json.dumps(
                    {"log": self.name, "epoch": self.epoch, "_routed": True})})
                kind, fields, _ = await conn.receive()
            if opening.cancelled_caught:
                raise Unavailable(f"{self.member} did not answer for a copy of {self.name} in {OPEN_TIMEOUT:g} s")
            if kind != "cmdCfm" or fields.get("error"):
                raise Unavailable(f"{self.member} refused to keep a copy of {self.name}: "
                                  f"{fields.get('error', {}).get('message', kind)}")
            start = int(json.loads(fields["result"])["next_seq"])
            log.info("replica_opened", log=self.name, member=self.member, from_seq=start)
            self._said = ""
            sender = open_sender(conn, self.name, credits=CREDITS)
            shipped: list[int] = []      # the log seq of each message sent, in order
            sent_end = False

            def granted(_: int) -> None:
                # the copy gives one credit back per batch synced, in order (and one for the end)
                returned = sender.statistics().credits_granted - CREDITS
                done = min(returned, len(shipped))
                if done:
                    self._ack(shipped[done - 1])
                if returned > len(shipped) and sent_end:
                    self.copy_ended = True
                    self._ack(self.acked)

            async with trio.open_nursery() as nursery:
                async def acks() -> None:
                    await sender.read_grants(granted)
                    nursery.cancel_scope.cancel()      # the copy went away: make another

                async def alive() -> None:
                    """A member stopped (SIGSTOP) keeps its socket open: its lease tells."""
                    while self.member in (await self.cluster.view()).members:
                        await trio.sleep(WATCH_EVERY)
                    nursery.cancel_scope.cancel()
                nursery.start_soon(acks)
                nursery.start_soon(alive)
                origins: dict[int, tuple[str, int]] = {}
                async for entry, body in self.logs.follow_raw(self.name, start):
                    if entry.seq not in origins:
                        origins = await self.logs.origins(self.name, entry.seq, entry.seq + 1024)
                    source, origin = origins.pop(entry.seq, ("", -1))
                    shipped.append(entry.seq)
                    await sender.send(body, rows=entry.rows, source=source, origin=origin)
                sent_end = True
                await sender.send(marker=END_OF_STREAM)
                await self.ended()
                # the copy is whole; if its member goes, another is made (the log is still needed
                # elsewhere if this member goes too: a finished tradecraft moves as well)
                await trio.sleep_forever()
            raise Unavailable(f"{self.member} closed its copy of {self.name}, or left the cluster")
        finally:
            await conn.aclose()


async def keep_copy(c: Any, conn: Connection, rid: int, args: dict[str, Any]) -> None:
    """Answer `replicate` at the member that keeps a copy: the copy's end, then each batch
    validated and synced (with its source and origin) before its credit goes back."""
    from hallelujah.tradecraft import parse_document
    cluster: Cluster = c.cluster
    name = str(args.get("log", ""))
    tradecraft, _, stream = name.partition("/")
    view = await cluster.view()
    record = view.tradecrafts.get(tradecraft)
    owner = view.owner(tradecraft)
    if record is None or owner is None or owner.name == cluster.name or record.create_revision != args.get("epoch"):
        raise NotFound(f'replicate {name}: no tradecraft "{tradecraft}" of that epoch runs at another member')
    # (checked against what this member allows: a document's UDFs run as it is read)
    tc = parse_document(record.json()["document"], allowed=c.allowed)
    analytic = tc.analytic(stream)
    if not published(analytic) or "." in stream:
        raise InvalidInput(f'replicate {name}: "{stream}" is not a pushed stream')
    if c.copies.get(name) != record.create_revision:   # a copy of an earlier life of the name
        await c.logs.delete(f"{tradecraft}/")
        c.copies = {n: e for n, e in c.copies.items() if not n.startswith(f"{tradecraft}/")}
    c.copies[name] = record.create_revision
    await c.logs.create(name, schema_bytes(analytic.schema))
    info = await c.logs.info(name)
    await conn.send("cmdCfm", {"id": rid, "result": json.dumps({"next_seq": info["next_seq"]})})
    receiver = open_receiver(conn, name, None, window=CREDITS, granted=CREDITS, coalesce=False)
    schema = schema_of(info["schema"])
    while True:
        msg = await receiver.receive()
        if msg.marker == END_OF_STREAM:
            await c.logs.end(name)
            await receiver.release()        # (its credit back: the owner knows the copy has the end)
            with contextlib.suppress(EOFError, HallelujahError):
                await conn.receive()        # held open until the owner lets go: it watches us by it
            return
        if msg.marker != NONE or msg.body is None:
            raise InvalidInput(f"replicate {name}: message {msg.seq} carries no batch")
        if c.copies.get(name) != record.create_revision:
            # this member took the tradecraft over (or it was cancelled): the log is not a copy
            # any more, and what a fenced owner still sends must not go into it
            raise Unavailable(f"replicate {name}: this member runs it now, or it is gone")
        checked = await trio.to_thread.run_sync(checked_batch, name, msg.seq, msg.body, schema)
        await c.logs.append(name, msg.body, checked.num_rows, msg.source, msg.origin, sync=True)
        await receiver.release()
