"""Planning a tradecraft: every analytic's Hallelu, their Jahs, the datastreams between them,
and a SINK for each retained log (seed Fig 1, steps 3–4)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa

from congregation.hallelu import (
    STATELESS,
    Hallelu,
    JahPlan,
    Plan,
    StreamPlan,
    log_name,
)
from congregation.partitioned import PARTITIONED
from hallelujah import formats
from hallelujah.frames import schema_bytes
from hallelujah.tradecraft import Tradecraft


def hallelus_of(tc: Tradecraft, parallelism: int) -> dict[str, Hallelu]:
    """Each analytic's Hallelu, with its parallel instances: a bounded parquet source splits by
    row group up to `parallelism`, a stateless step runs as many as the analytic it reads, and a
    partitioned kind (aggregate, join of two streams) sizes itself."""
    hallelus: dict[str, Hallelu] = {}
    for a in tc.topological():
        upstream = [len(hallelus[ref.partition(".")[0]].producers(hallelus[ref.partition(".")[0]].port_of(ref)))
                    for ref in a.inputs]
        kind = "dataset join" if a.kind == "join" and "dataset" in a.spec else a.kind
        if kind in PARTITIONED:
            hallelus[a.name] = PARTITIONED[kind](tc, a, upstream, parallelism)
            continue
        if a.kind == "stream" and a.spec.get("source"):
            count = max(1, min(parallelism, formats.splittable(a.spec["source"])))
        elif a.kind in STATELESS and len(a.inputs) == 1:
            count = upstream[0]
        else:
            count = 1
        hallelus[a.name] = Hallelu(tc, a, count)
    return hallelus


def plan_tradecraft(tc: Tradecraft, place: Callable[[int], int], parallelism: int = 1) -> Plan:
    """Every Jah and datastream of a tradecraft, with a SINK per retained log."""
    hallelus = hallelus_of(tc, parallelism)
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
        for s in h.internal():
            connect(s.sender, s.sender_port, s.receiver, s.schema, s.receiver_port)
        for into, ref in zip(h.input_ports(), h.a.inputs):
            producer = hallelus[ref.partition(".")[0]]
            port = producer.port_of(ref)
            senders, receivers = producer.producers(port), h.receivers(into)
            for k, receiver in enumerate(receivers):   # instance k reads instance k, else all of them
                for sender in [senders[k]] if len(senders) == len(receivers) else senders:
                    connect(sender, port, receiver, tc.stream_schema(ref), h.receiver_port(into))
    logs: dict[str, tuple[str, pa.Schema]] = {}
    for h in hallelus.values():
        for log, port in h.retained(read):
            sink_id = f"{log}/sink"
            schema = h.ports()[port]
            # beside its first producer: the batches it keeps pass through memory, not a socket
            jahs[sink_id] = JahPlan(sink_id, "sink", h.a.name, jahs[h.producers(port)[0]].host,
                                    {"role": "sink", "log": log, **sink_spec(hallelus, h, port, schema),
                                     "schemas": {"in": schema_bytes(schema).hex()}})
            for sender in h.producers(port):       # the instances merge back in source order
                connect(sender, port, sink_id, schema)
            logs[log] = (sink_id, schema)
    for plan in jahs.values():
        plan.spec["inputs"], plan.spec["outputs"] = plan.inputs, plan.outputs
    for h in hallelus.values():       # an INGEST that feeds JOINs stays to serve those a split adds
        if h.a.kind == "join" and "dataset" in h.a.spec:
            for jah_id in hallelus[h.a.inputs[1].partition(".")[0]].jah_ids:
                jahs[jah_id].spec["hold"] = True
    sources = {jah_id: log_name(tc.name, h.a.name) for h in hallelus.values()
               if h.role in ("source", "logsource", "ingest") for jah_id in h.jah_ids}
    return Plan(jahs, streams, logs, sources)


def sink_spec(hallelus: dict[str, Hallelu], h: Hallelu, port: str, schema: pa.Schema) -> dict[str, Any]:
    """What the SINK of `h`'s `port` needs beyond its log. An aggregate's windows come out with
    their ends only growing (`monotone`), and so do they through transforms that keep that field
    as it is (no UDF, not derived again): such a SINK skips what it kept by that field, since a
    replay may close the windows at other positions than the first run did."""
    spec = h.sink_spec(port)
    a = h.a
    if spec or port != "out" or a.kind != "transform" or a.spec.get("udf") or len(a.inputs) != 1:
        return spec
    ref = a.inputs[0]
    producer = hallelus[ref.partition(".")[0]]
    field = sink_spec(hallelus, producer, producer.port_of(ref), schema).get("monotone")
    if field is not None and field in schema.names and field not in a.spec.get("derive", {}):
        return {"monotone": field}
    return {}

