"""Hallelus of the partitioned kinds: an aggregate, and a join of two streams.

Both spread their state over `parallelism` instances by the partition hash of a key, so the
instances hold disjoint keys: an EXCHANGE beside each instance of every input routes each row to
the instance that owns its key's partition (`jah.exchange`).
- aggregate: EXCHANGE (by the `count_distinct` field, when there is one) → AGGREGATE×m, which keep
  partial windows → MERGE, which adds the partials up and emits each window once. Session windows
  go by the group fields instead (one AGGREGATE without any), so each session is whole in one
  instance and MERGE only orders them (`jah.sessions`). Without a
  distinct count every measure adds up across any split, so the AGGREGATEs simply follow the
  parts of their input and no EXCHANGE is needed; distinct counts on two different fields cannot
  both be split, so such an aggregate runs one AGGREGATE.
- join with a stream: EXCHANGE on each side by the join keys → STREAM_JOIN×m, each holding both
  sides' rows of its partitions for the window.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from congregation.hallelu import Hallelu, JahPlan, StreamPlan
from hallelujah.tradecraft import Analytic, Tradecraft
from jah.ownership import owners
from jah.row_order import with_row_numbers
from jah.windows import partial_schema_of


def distinct_fields(spec: dict[str, Any]) -> set[str]:
    """The fields an aggregate counts distinct values of."""
    found = (re.fullmatch(r"\s*count_distinct\s*\((.*)\)\s*", text, re.DOTALL) for text in spec.get("measures", {}).values())
    return {m.group(1).strip() for m in found if m}


class Partitioned(Hallelu):
    """A Hallelu whose inputs may go through EXCHANGEs to `instances` partitioned Jahs."""

    def __init__(self, tc: Tradecraft, analytic: Analytic, upstream: list[int], instances: int,
                 keys: list[list[str]] | None) -> None:
        super().__init__(tc, analytic, instances)
        self.keys = keys
        ports = self.input_ports()
        self.exchanges = {port: self.ids(f"exchange-{port}", n) if keys else []
                          for port, n in zip(ports, upstream)}

    def receivers(self, into: str) -> list[str]:
        return self.exchanges[into] or self.jah_ids

    def receiver_port(self, into: str) -> str:
        return "in" if self.exchanges[into] else into

    def ports(self) -> dict[str, pa.Schema]:
        return {"out": self.a.schema, "rejected": self.a.rejected_schema}

    def exchange_plans(self, place: Callable[[int], int]) -> list[JahPlan]:
        plans = []
        for (port, ids), ref, keys in zip(self.exchanges.items(), self.a.inputs, self.keys or []):
            schema = self.tc.stream_schema(ref)
            outputs = [f"to{j}" for j in range(self.instances)]
            for k, jah_id in enumerate(ids):     # beside instance k of what it reads
                plans.append(self.jah(jah_id, "exchange", place(k), {"in": schema} | dict.fromkeys(outputs, schema),
                                      outputs, keys=keys, **self.exchange_extra()))
        return plans

    def exchange_extra(self) -> dict[str, Any]:
        return {}

    def internal(self) -> list[StreamPlan]:
        streams = []
        for (port, ids), ref in zip(self.exchanges.items(), self.a.inputs):
            for sender in ids:
                for j, receiver in enumerate(self.jah_ids):
                    streams.append(StreamPlan(f"{sender}:to{j}->{receiver}:{port}", sender, f"to{j}",
                                              receiver, port, self.tc.stream_schema(ref)))
        return streams


class AggregateHallelu(Partitioned):

    def __init__(self, tc: Tradecraft, analytic: Analytic, upstream: list[int], parallelism: int) -> None:
        self.sessions = "session" in analytic.spec
        if self.sessions:      # a group's sessions live in one instance: the EXCHANGE routes by group
            group = list(analytic.spec.get("group") or [])
            split = bool(group) and parallelism > 1
            super().__init__(tc, analytic, upstream, parallelism if split else 1, [group] if split else None)
        else:
            distinct = distinct_fields(analytic.spec)
            split = len(distinct) == 1 and parallelism > 1
            super().__init__(tc, analytic, upstream, parallelism if split else (1 if distinct else upstream[0]),
                             [sorted(distinct)] if split else None)
        self.merge = self.ids("merge", 1)[0]
        self.partial_schema = partial_schema_of(analytic.spec, analytic.schema)

    def producers(self, port: str) -> list[str]:
        return [self.merge] if port == "out" else self.jah_ids

    def sink_spec(self, port: str) -> dict[str, Any]:
        return {"monotone": "window_end"} if port == "out" else {}

    def exchange_extra(self) -> dict[str, Any]:
        """Its EXCHANGEs know the event time: a split moves partitions at a window boundary."""
        return {"time": self.a.spec["time"]}

    def plan(self, place: Callable[[int], int]) -> list[JahPlan]:
        inp = self.tc.stream_schema(self.a.inputs[0])
        plans = self.exchange_plans(place)
        for j, jah_id in enumerate(self.jah_ids):
            # a session aggregate names no partitions: a split at a time boundary would cut sessions
            held = {} if self.sessions else {"partitions": [p for p, o in enumerate(owners(self.instances)) if o == j]}
            plans.append(self.jah(jah_id, "aggregate", place(j),
                                  {"in": inp, "out": self.partial_schema, "rejected": self.a.rejected_schema,
                                   "result": self.a.schema}, ["out", "rejected"], **held))
        plans.append(self.jah(self.merge, "merge", place(0),
                              {"in": self.partial_schema, "out": self.a.schema}, ["out"]))
        return plans

    def internal(self) -> list[StreamPlan]:
        return super().internal() + [
            StreamPlan(f"{p}:out->{self.merge}:in", p, "out", self.merge, "in", self.partial_schema)
            for p in self.jah_ids]


class StreamJoinHallelu(Partitioned):
    def __init__(self, tc: Tradecraft, analytic: Analytic, upstream: list[int], parallelism: int) -> None:
        on = analytic.spec["on"]
        super().__init__(tc, analytic, upstream, parallelism,
                         [list(on), list(on.values())] if parallelism > 1 else None)

    @property
    def role(self) -> str:
        return "stream_join"

    def input_ports(self) -> tuple[str, ...]:
        return ("in", "with")

    def plan(self, place: Callable[[int], int]) -> list[JahPlan]:
        schemas = self.ports() | {port: self.tc.stream_schema(ref)
                                  for port, ref in zip(self.input_ports(), self.a.inputs)}
        return self.exchange_plans(place) + [self.jah(jah_id, "stream_join", place(j), schemas, list(self.ports()))
                                             for j, jah_id in enumerate(self.jah_ids)]




class DatasetJoinHallelu(Hallelu):
    """A join with a dataset (DESIGN Fig 2–4): per part of the stream a PREJOIN, the JOINs that
    hold the dataset's partitions (one, holding all 256, until congestion splits it), and a
    POSTJOIN, all beside that part's source; the dataset's INGEST also serves new JOINs."""

    def __init__(self, tc: Tradecraft, analytic: Analytic, upstream: list[int], parallelism: int) -> None:
        super().__init__(tc, analytic, upstream[0])
        self.prejoins = self.ids("prejoin", self.instances)
        self.postjoins = self.ids("postjoin", self.instances)

    def producers(self, port: str) -> list[str]:
        return self.postjoins

    def receivers(self, into: str) -> list[str]:
        return self.prejoins if into == "in" else self.jah_ids

    def ports(self) -> dict[str, pa.Schema]:
        return {"out": self.a.schema}

    def plan(self, place: Callable[[int], int]) -> list[JahPlan]:
        stream = self.tc.stream_schema(self.a.inputs[0])
        dataset = self.tc.stream_schema(self.a.inputs[1])
        numbered, joined = self.numbered()
        plans = []
        for k, (pre, join, post) in enumerate(zip(self.prejoins, self.jah_ids, self.postjoins)):
            host = place(k)
            route = f"to:{join}"
            plans += [self.jah(pre, "prejoin", host, {"in": stream, route: numbered}, [route], keys=list(self.a.spec["on"])),
                      self.jah(join, "join", host, {"in": numbered, "dataset": dataset, "out": joined}, ["out"],
                               part=k),
                      self.jah(post, "postjoin", host, {"in": joined, "out": self.a.schema}, ["out"])]
        return plans

    def numbered(self) -> tuple[pa.Schema, pa.Schema]:
        """The stream into the JOINs and their output, each with the rows' numbers by which
        POSTJOIN keeps the stream's order (`jah.row_order`)."""
        return with_row_numbers(self.tc.stream_schema(self.a.inputs[0])), with_row_numbers(self.a.schema)

    def internal(self) -> list[StreamPlan]:
        numbered, joined = self.numbered()
        streams = []
        for pre, join, post in zip(self.prejoins, self.jah_ids, self.postjoins):
            streams += [StreamPlan(f"{pre}:to:{join}->{join}:in", pre, f"to:{join}", join, "in", numbered),
                        StreamPlan(f"{join}:out->{post}:in", join, "out", post, "in", joined)]
        return streams


PARTITIONED: dict[str, type[Hallelu]] = {"aggregate": AggregateHallelu, "join": StreamJoinHallelu,
                                         "dataset join": DatasetJoinHallelu}
