"""A running tradecraft: its plan, its Jahs on their hosts, and how it ends, fails or restarts."""
from __future__ import annotations

import json
from typing import Any, Protocol

import structlog
import trio

from congregation.checkpoints import Checkpoints, transactional_sinks
from congregation.hallelu import JahPlan, Plan, StreamPlan, input_logs
from congregation.logs import Logs
from congregation.planning import plan_tradecraft
from hallelujah.errors import collapsed
from hallelujah.frames import schema_bytes
from hallelujah.tradecraft import Tradecraft

log = structlog.get_logger("hallelujah.deployment")


class Host(Protocol):
    index: int
    address: str
    placed: int

    async def request(self, kind: str, fields: dict[str, Any]) -> dict[str, Any]: ...


class Deployment:
    """Creates a tradecraft's Jahs and wires them; stops them; tracks which logs have ended."""

    def __init__(self, tc: Tradecraft, logs: Logs) -> None:
        self.tc = tc
        self.logs = logs
        self.plan: Plan | None = None
        self.hosts: dict[int, Host] = {}
        self.state = "starting"
        self.stopped = False
        self.generation = 0                 # splits so far: names the JOINs they make
        self.retiring: set[str] = set()     # JOINs that a split relieved, draining
        self.scaling = trio.Lock()
        self.early_events: list[tuple[str, str, str]] = []   # Jah events that came while starting
        self.final_stats: dict[str, dict[str, Any]] = {}       # a finished Jah's last figures
        self.checkpoints: Checkpoints | None = None
        self.restoring: dict[str, Any] | None = None   # the checkpoint it starts from, if any

    def make_plan(self, hosts: dict[int, Host]) -> Plan:
        """Place instance k of every chain on the k-th least-loaded worker: a chain's Jahs share
        a process and pass batches through memory channels, with no serialization or socket hop
        (LIMITS.md fact 2), while parallel instances spread over the cores."""
        workers = sorted(hosts.values(), key=lambda h: (h.placed, h.index))

        def place(instance: int) -> int:
            return workers[instance % len(workers)].index

        self.hosts = hosts
        self.plan = plan_tradecraft(self.tc, place, parallelism=len(workers))
        for jah in self.plan.jahs.values():
            hosts[jah.host].placed += 1
        return self.plan

    async def start(self) -> None:
        """Create logs, resume positions, Jahs (all), then streams receiver-first."""
        plan = self.plan
        assert plan is not None
        self.stopped = False
        for name, schema in {**input_logs(self.tc), **{n: s for n, (_, s) in plan.logs.items()}}.items():
            await self.logs.create(name, schema_bytes(schema))
        cp = self.checkpoints
        transactional = transactional_sinks(plan) if cp is not None and cp.every > 0 else set()
        for name, (sink, _) in plan.logs.items():     # before the resume points: it may cut them back
            plan.jahs[sink].spec["transactional"] = sink in transactional
            await self.logs.open_log(name, sink in transactional, cp.last.id if cp and cp.last else None)
        for jah_id, source_id in plan.sources.items():
            positions = [(await self.logs.resume_points(name)).get(source_id, 0)
                         for name in plan.reachable_logs(jah_id)]
            plan.jahs[jah_id].spec["resume_from"] = min(positions, default=0)
        if self.restoring is not None:       # from a checkpoint: its positions, and state restored
            for jah_id, position in self.restoring["positions"].items():
                plan.jahs[jah_id].spec["resume_from"] = position
            for jah_id, state in self.restoring["files"].items():
                plan.jahs[jah_id].spec["restore"] = state
        for jah in plan.jahs.values():
            self._place_checkpoints(jah)
        with collapsed():
            async with trio.open_nursery() as nursery:
                for jah in plan.jahs.values():
                    nursery.start_soon(self.hosts[jah.host].request, "jahReq",
                                       {"jah": jah.id, "spec": json.dumps(jah.spec), "stop": False})
        for s in plan.streams:
            await self.wire(s)
        self.state = "running"

    async def create(self, jah: JahPlan) -> None:
        """Create one more Jah while the tradecraft runs (a JOIN of a split)."""
        assert self.plan is not None
        self.plan.jahs[jah.id] = jah
        self._place_checkpoints(jah)
        self.hosts[jah.host].placed += 1
        await self.hosts[jah.host].request("jahReq", {"jah": jah.id, "spec": json.dumps(jah.spec), "stop": False})

    def _place_checkpoints(self, jah: JahPlan) -> None:
        """Where the Jah writes its state at each checkpoint."""
        if self.checkpoints is not None:
            jah.spec["checkpoint_dir"] = str(self.checkpoints.directory)

    async def wire(self, s: StreamPlan) -> None:
        """One datastream, receiver first: it expects the stream before the sender connects."""
        assert self.plan is not None
        if s not in self.plan.streams:
            self.plan.streams.append(s)
        sender, receiver = self.plan.jahs[s.sender], self.plan.jahs[s.receiver]
        fields = {"stream": s.id, "schema": schema_bytes(s.schema), "credits": 0}
        await self.hosts[receiver.host].request("streamReq", {
            **fields, "jah": s.receiver, "port": s.receiver_port, "act": False, "address": ""})
        address = "local" if sender.host == receiver.host else self.hosts[receiver.host].address
        await self.hosts[sender.host].request("streamReq", {
            **fields, "jah": s.sender, "port": s.sender_port, "act": True, "address": address})

    async def retire(self, jah_id: str) -> bool:
        """Delete a Jah that has drained after a split: from its worker, then from the plan with
        its streams; False if unknown."""
        if self.plan is None or jah_id not in self.plan.jahs:
            return False
        jah = self.plan.jahs.pop(jah_id)
        # Its senders that live on (the INGEST's dataset stream) stop sending to it first: the
        # next version would otherwise wait forever on an input nobody reads.
        for s in [s for s in self.plan.streams if s.receiver == jah_id and s.sender in self.plan.jahs]:
            sender = self.plan.jahs[s.sender]
            try:
                await self.hosts[sender.host].request("streamReq", {
                    "stream": s.id, "jah": s.sender, "port": s.sender_port, "act": True, "detach": True,
                    "address": "", "credits": 0, "schema": b""})
            except Exception as exc:  # noqa: BLE001 - a sender on a host going away is detached anyway
                log.info("detach_failed", stream=s.id, error=str(exc))
        self.plan.streams = [s for s in self.plan.streams if jah_id not in (s.sender, s.receiver)]
        if jah.host in self.hosts:
            self.hosts[jah.host].placed -= 1
            await self._stop_one(jah.host, jah_id)
        return True

    async def stop(self, lost: int | None = None) -> None:
        """Stop every Jah (those on a lost host are gone already) and wait until they are."""
        if self.plan is None or self.stopped:
            return
        self.stopped = True
        if self.checkpoints is not None:        # its Jahs go: the one in flight will not complete
            self.checkpoints.give_up("the tradecraft's Jahs are stopping")
        async with trio.open_nursery() as nursery:
            for jah in self.plan.jahs.values():
                if jah.host != lost and jah.host in self.hosts:
                    nursery.start_soon(self._stop_one, jah.host, jah.id)
        for host in self.hosts.values():
            host.placed -= sum(1 for j in self.plan.jahs.values() if j.host == host.index)

    async def _stop_one(self, host: int, jah: str) -> None:
        try:
            await self.hosts[host].request("jahReq", {"jah": jah, "spec": "", "stop": True})
        except Exception as exc:  # noqa: BLE001 - a host that is going away is stopped anyway
            log.info("stop_failed", jah=jah, error=str(exc))

    def uses(self, host: int) -> bool:
        return self.plan is not None and any(j.host == host for j in self.plan.jahs.values())

    async def all_ended(self) -> bool:
        """Whether every retained log (and every input log) has ended: the tradecraft is finished."""
        assert self.plan is not None
        names = list(self.plan.logs) + list(input_logs(self.tc))
        for name in names:
            info = await self.logs.info(name)
            if info is None or not info["ended"]:
                return False
        return True

    def catalog_rows(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        assert self.plan is not None
        jahs = [{"id": j.id, "analytic": j.analytic, "role": j.role, "host": j.host,
                 "state": "running", "error": ""} for j in self.plan.jahs.values()]
        streams = [{"id": s.id, "sender": s.sender, "sender_port": s.sender_port,
                    "receiver": s.receiver, "receiver_port": s.receiver_port}
                   for s in self.plan.streams]
        return jahs, streams
