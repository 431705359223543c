"""Hallelu: the controller of one analytic — which Jahs it needs, where, and what they keep.

A `Deployment` asks each Hallelu of a tradecraft for its Jahs, adds a SINK for every retained
log, then creates the Jahs and wires the datastreams receiver-first (seed Fig 1, steps 3–4).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import pyarrow as pa

from hallelujah.errors import TradecraftError
from hallelujah.frames import schema_bytes
from hallelujah.tradecraft import Analytic, Tradecraft

CONGREGATION = -1          # the host index of the congregation's own runtime
ROLE_OF_KIND = {"transform": "transform", "director": "director", "manager": "manager"}


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

    def __init__(self, tc: Tradecraft, analytic: Analytic) -> None:
        self.tc = tc
        self.a = analytic
        self.jah_id = f"{tc.name}/{analytic.name}/{self.role}"

    @property
    def role(self) -> str:
        if self.a.kind == "stream":
            return "logsource" if published(self.a) else "source"
        role = ROLE_OF_KIND.get(self.a.kind)
        if role is None:
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

    def plan(self, place: Callable[[], int]) -> JahPlan:
        host = CONGREGATION if self.role == "logsource" else place()
        schemas = {port: schema_bytes(s).hex() for port, s in self.ports().items()}
        if self.a.inputs:
            schemas["in"] = schema_bytes(self.tc.stream_schema(self.a.inputs[0])).hex()
        spec: dict[str, Any] = {"role": self.role, "analytic": self.a.spec, "schemas": schemas,
                                "source_id": log_name(self.tc.name, self.a.name)}
        if self.role == "logsource":
            spec["log"] = log_name(self.tc.name, self.a.name)
        if self.role == "source":
            spec["source"] = self.a.spec["source"]
        return JahPlan(self.jah_id, self.role, self.a.name, host, spec,
                       outputs={port: 0 for port in self.ports()})


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


def plan_tradecraft(tc: Tradecraft, place: Callable[[], int]) -> Plan:
    """Every Jah and datastream of a tradecraft, with a SINK per retained log."""
    hallelus = {a.name: Hallelu(tc, a) for a in tc.topological()}
    jahs = {h.jah_id: h.plan(place) for h in hallelus.values()}
    streams: list[StreamPlan] = []

    def connect(sender: Hallelu, port: str, receiver: str, receiver_port: str, schema: pa.Schema) -> None:
        streams.append(StreamPlan(f"{sender.jah_id}:{port}->{receiver}:{receiver_port}",
                                  sender.jah_id, port, receiver, receiver_port, schema))
        jahs[sender.jah_id].outputs[port] += 1
        jahs[receiver].inputs[receiver_port] = jahs[receiver].inputs.get(receiver_port, 0) + 1

    read = {ref for a in tc.analytics for ref in a.inputs}
    for name in [n for n, h in hallelus.items() if h.role == "logsource"
                 and not any(r.partition(".")[0] == n for r in read)]:
        del jahs[hallelus.pop(name).jah_id]       # a pushed stream nobody reads: its log is all
    for h in hallelus.values():
        for ref in h.a.inputs:
            producer = hallelus[ref.partition(".")[0]]
            connect(producer, producer.port_of(ref), h.jah_id, "in", tc.stream_schema(ref))
    logs: dict[str, tuple[str, pa.Schema]] = {}
    for h in hallelus.values():
        for log, port in h.retained(read):
            sink_id = f"{log}/sink"
            schema = h.ports()[port]
            jahs[sink_id] = JahPlan(sink_id, "sink", h.a.name, CONGREGATION,
                                    {"role": "sink", "log": log,
                                     "schemas": {"in": schema_bytes(schema).hex()}})
            connect(h, port, sink_id, "in", schema)
            logs[log] = (sink_id, schema)
    for plan in jahs.values():
        plan.spec["inputs"], plan.spec["outputs"] = plan.inputs, plan.outputs
    sources = {h.jah_id: log_name(tc.name, h.a.name) for h in hallelus.values()
               if h.role in ("source", "logsource")}
    return Plan(jahs, streams, logs, sources)


def input_logs(tc: Tradecraft) -> dict[str, pa.Schema]:
    """The input log of every pushed stream (what `publish` appends to)."""
    return {log_name(tc.name, a.name): a.schema for a in tc.analytics if published(a)}
