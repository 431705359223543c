"""Hallelu: the controller of one analytic — which Jahs it needs, where, and what they keep.

A `Deployment` asks each Hallelu of a tradecraft for its Jahs, adds a SINK for every retained
log, then creates the Jahs and wires the datastreams receiver-first (seed Fig 1, steps 3–4).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from hallelujah.errors import TradecraftError
from hallelujah.frames import schema_bytes
from hallelujah.tradecraft import Analytic, Tradecraft

ROLE_OF_KIND = {"transform": "transform", "director": "director", "manager": "manager",
                "ingest": "ingest", "join": "join", "aggregate": "aggregate"}
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
    """One analytic's controller: by default one Jah kind in `instances` parallel instances."""

    def __init__(self, tc: Tradecraft, analytic: Analytic, instances: int = 1) -> None:
        self.tc = tc
        self.a = analytic
        self.instances = instances
        self.jah_ids = self.ids(self.role, instances)

    def ids(self, role: str, instances: int) -> list[str]:
        base = f"{self.tc.name}/{self.a.name}/{role}"
        return [base] if instances == 1 else [f"{base}#{k}" for k in range(instances)]

    def producers(self, port: str) -> list[str]:
        """The Jahs that send this analytic's output `port`."""
        return self.jah_ids

    def receivers(self, into: str) -> list[str]:
        """The Jahs that take this analytic's input `into` ("in", "dataset", "with")."""
        return self.jah_ids

    def internal(self) -> list[StreamPlan]:
        """Datastreams between this analytic's own Jahs."""
        return []

    def receiver_port(self, into: str) -> str:
        """The port of `receivers(into)` that the input arrives on."""
        return into

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
        if self.a.kind in ("transform", "manager") or (self.a.kind == "stream" and not published(self.a)):
            ports["rejected"] = self.a.rejected_schema     # a file source's rows it cannot read
        return ports

    def input_ports(self) -> tuple[str, ...]:
        return INPUT_PORTS

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

    def sink_spec(self, port: str) -> dict[str, Any]:
        """What the SINK of an output port needs beyond its log (an aggregate's window field)."""
        return {}

    def jah(self, jah_id: str, role: str, host: int, schemas: dict[str, pa.Schema], outputs: list[str],
            **extra: Any) -> JahPlan:
        """The plan of one Jah of this analytic; `schemas` names the schema of each port."""
        spec: dict[str, Any] = {"role": role, "analytic": self.a.spec,
                                "schemas": {p: schema_bytes(s).hex() for p, s in schemas.items()},
                                "source_id": log_name(self.tc.name, self.a.name), **extra}
        return JahPlan(jah_id, role, self.a.name, host, spec, outputs={port: 0 for port in outputs})

    def plan(self, place: Callable[[int], int]) -> list[JahPlan]:
        """One Jah per instance; instance k of a chain lives with instance k of its producer."""
        schemas = self.ports() | {port: self.tc.stream_schema(ref)
                                  for port, ref in zip(self.input_ports(), self.a.inputs)}
        plans = []
        for k, jah_id in enumerate(self.jah_ids):
            extra: dict[str, Any] = {}
            if self.role == "logsource":
                extra["log"] = log_name(self.tc.name, self.a.name)
            if self.role == "source":
                extra.update(source=self.a.spec["source"], part=k, parts=self.instances)
            plans.append(self.jah(jah_id, self.role, place(k), schemas, list(self.ports()), **extra))
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


def input_logs(tc: Tradecraft) -> dict[str, pa.Schema]:
    """The input log of every pushed stream (what `publish` appends to)."""
    return {log_name(tc.name, a.name): a.schema for a in tc.analytics if published(a)}
