"""Hallelu: the controller of one analytic — which Jahs it needs, where, and what they keep.

A `Deployment` asks each Hallelu of a tradecraft for its Jahs, adds a SINK for every retained
log, then creates the Jahs and wires the datastreams receiver-first (seed Fig 1, steps 3–4).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import pyarrow as pa

from hallelujah import formats
from hallelujah.errors import TradecraftError
from hallelujah.frames import schema_bytes
from hallelujah.tradecraft import Analytic, Tradecraft

CONGREGATION = -1          # the host index of the congregation's own runtime
ROLE_OF_KIND = {"transform": "transform", "director": "director", "manager": "manager",
                "ingest": "ingest", "join": "join"}
STATELESS = ("transform", "director", "manager")     # kinds that run as parallel instances
INPUT_PORTS = ("in", "dataset")                       # the ports of an analytic's inputs, in order


@dataclass
class JahPlan:
    id: str
    role: str
    analytic: str
    host: int
    spec: dict[str, Any]
    inputs: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, int] = field(default_factory=dict)


@dataclass
class StreamPlan:
    id: str
    sender: str
    sender_port: str
    receiver: str
    receiver_port: str
    schema: pa.Schema


def log_name(tradecraft: str, ref: str) -> str:
    """The log of a stream reference: "gps/countries", "gps/router.high", "gps/x.rejected"."""
    return f"{tradecraft}/{ref}"


def published(a: Analytic) -> bool:
    return a.kind == "stream" and not a.spec.get("source")


class Hallelu:
    """One analytic's controller."""

    def __init__(self, tc: Tradecraft, analytic: Analytic, instances: int = 1) -> None:
        self.tc = tc
        self.a = analytic
        self.instances = instances
        base = f"{tc.name}/{analytic.name}/{self.role}"
        self.jah_ids = [base] if instances == 1 else [f"{base}#{k}" for k in range(instances)]

    @property
    def role(self) -> str:
        if self.a.kind == "stream":
            return "logsource" if published(self.a) else "source"
        role = ROLE_OF_KIND.get(self.a.kind)
        if role is None or (self.a.kind == "join" and "dataset" not in self.a.spec):
            raise TradecraftError(f"{self.a.path}.kind",
                                  f'kind "{self.a.kind}" is not supported by this congregation yet')
        return role

    def ports(self) -> dict[str, pa.Schema]:
        """Output port → schema: "out" or one per route, and "rejected" where rows can fail."""
        if self.a.routes:
            ports = {route: self.a.schema for route in self.a.routes}
        else:
            ports = {"out": self.a.schema}
        if self.a.kind in ("transform", "manager"):
            ports["rejected"] = self.a.rejected_schema
        return ports

    def port_of(self, ref: str) -> str:
        """The output port that a reference to this analytic ("x", "x.route", "x.rejected") reads."""
        _, _, part = ref.partition(".")
        return part or "out"

    def retained(self, read: set[str]) -> list[tuple[str, str]]:
        """(log, port) for each output this analytic keeps: unread or marked output, and rejected."""
        kept = []
        for port in self.ports():
            ref = self.a.name if port == "out" else f"{self.a.name}.{port}"
            if port == "rejected" or self.a.output or ref not in read:
                if not (published(self.a) and port == "out"):   # its input log is its output
                    kept.append((log_name(self.tc.name, ref), port))
        return kept

    def plan(self, place: Callable[[int], int]) -> list[JahPlan]:
        """One Jah per instance; instance k of a chain lives with instance k of its producer."""
        schemas = {port: schema_bytes(s).hex() for port, s in self.ports().items()}
        for port, ref in zip(INPUT_PORTS, self.a.inputs):
            schemas[port] = schema_bytes(self.tc.stream_schema(ref)).hex()
        plans = []
        for k, jah_id in enumerate(self.jah_ids):
            host = CONGREGATION if self.role == "logsource" else place(k)
            spec: dict[str, Any] = {"role": self.role, "analytic": self.a.spec, "schemas": schemas,
                                    "source_id": log_name(self.tc.name, self.a.name)}
            if self.role == "logsource":
                spec["log"] = log_name(self.tc.name, self.a.name)
            if self.role == "source":
                spec.update(source=self.a.spec["source"], part=k, parts=self.instances)
            plans.append(JahPlan(jah_id, self.role, self.a.name, host, spec,
                                 outputs={port: 0 for port in self.ports()}))
        return plans


@dataclass
class Plan:
    jahs: dict[str, JahPlan]
    streams: list[StreamPlan]
    logs: dict[str, tuple[str, pa.Schema]]     # log name -> (sink jah id, schema)
    sources: dict[str, str]                    # source jah id -> source id

    def reachable_logs(self, jah: str) -> set[str]:
        """The retained logs downstream of a Jah (a source resumes at the least of them)."""
        sink_log = {sink: log for log, (sink, _) in self.logs.items()}
        seen, todo, found = {jah}, [jah], set()
        while todo:
            current = todo.pop()
            if current in sink_log:
                found.add(sink_log[current])
            for s in self.streams:
                if s.sender == current and s.receiver not in seen:
                    seen.add(s.receiver)
                    todo.append(s.receiver)
        return found


def instances_of(tc: Tradecraft, parallelism: int) -> dict[str, int]:
    """How many parallel instances each analytic runs: a bounded parquet source splits by row
    group up to `parallelism`, and a stateless step runs as many as the analytic it reads."""
    counts: dict[str, int] = {}
    for a in tc.topological():
        if a.kind == "stream" and a.spec.get("source"):
            counts[a.name] = max(1, min(parallelism, formats.splittable(a.spec["source"])))
        elif (a.kind in STATELESS and len(a.inputs) == 1) or (a.kind == "join" and "dataset" in a.spec):
            counts[a.name] = counts[a.inputs[0].partition(".")[0]]   # a dataset goes to every one
        else:
            counts[a.name] = 1
    return counts


def plan_tradecraft(tc: Tradecraft, place: Callable[[int], int], parallelism: int = 1) -> Plan:
    """Every Jah and datastream of a tradecraft, with a SINK per retained log."""
    counts = instances_of(tc, parallelism)
    hallelus = {a.name: Hallelu(tc, a, counts[a.name]) for a in tc.topological()}
    read = {ref for a in tc.analytics for ref in a.inputs}
    for name in [n for n, h in hallelus.items() if h.role == "logsource"
                 and not any(r.partition(".")[0] == n for r in read)]:
        del hallelus[name]                        # a pushed stream nobody reads: its log is all
    jahs = {j.id: j for h in hallelus.values() for j in h.plan(place)}
    streams: list[StreamPlan] = []

    def connect(sender: str, port: str, receiver: str, schema: pa.Schema, into: str = "in") -> None:
        streams.append(StreamPlan(f"{sender}:{port}->{receiver}:{into}", sender, port, receiver, into, schema))
        jahs[sender].outputs[port] += 1
        jahs[receiver].inputs[into] = jahs[receiver].inputs.get(into, 0) + 1

    for h in hallelus.values():
        for into, ref in zip(INPUT_PORTS, h.a.inputs):
            producer = hallelus[ref.partition(".")[0]]
            for k, jah_id in enumerate(h.jah_ids):
                senders = [producer.jah_ids[k]] if producer.instances == h.instances else producer.jah_ids
                for sender in senders:
                    connect(sender, producer.port_of(ref), jah_id, tc.stream_schema(ref), into)
    logs: dict[str, tuple[str, pa.Schema]] = {}
    for h in hallelus.values():
        for log, port in h.retained(read):
            sink_id = f"{log}/sink"
            schema = h.ports()[port]
            jahs[sink_id] = JahPlan(sink_id, "sink", h.a.name, CONGREGATION,
                                    {"role": "sink", "log": log,
                                     "schemas": {"in": schema_bytes(schema).hex()}})
            for sender in h.jah_ids:       # the instances merge back in source order
                connect(sender, port, sink_id, schema)
            logs[log] = (sink_id, schema)
    for plan in jahs.values():
        plan.spec["inputs"], plan.spec["outputs"] = plan.inputs, plan.outputs
    sources = {jah_id: log_name(tc.name, h.a.name) for h in hallelus.values()
               if h.role in ("source", "logsource", "ingest") for jah_id in h.jah_ids}
    return Plan(jahs, streams, logs, sources)


def input_logs(tc: Tradecraft) -> dict[str, pa.Schema]:
    """The input log of every pushed stream (what `publish` appends to)."""
    return {log_name(tc.name, a.name): a.schema for a in tc.analytics if published(a)}
