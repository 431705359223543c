"""Self-scaling of dataset joins: a congested JOIN splits in two while the stream flows (DESIGN Fig 3).

The two new JOINs hold half the old one's partitions each and go on the least-loaded workers.
Each gets the current dataset version from the INGEST, opens its stream to POSTJOIN, and only then
does PREJOIN re-route the partitions and send `handover` down the old JOIN's stream; the old JOIN
drains, ends its stream and is forgotten when it reports finished. POSTJOIN's merge by source
position keeps the new JOINs' rows behind the old JOIN's, so no row is lost or repeated and each
key keeps its order.

Rules: a JOIN with one partition does not split; nor does one whose stream part already has
`MAX_JOINS_PER_WORKER` × workers JOINs (more JOINs than cores only add hops). The two JOINs of one
split merge back, by the same handover, into one JOIN on the least-loaded worker once both have
been idle (`congestion.py`: under a quarter of the busy threshold, nothing waiting, for twice the
congestion time). Each split and merge is recorded with its time, reason, partitions and
placement (`describe --json` → "scaling").
"""
from __future__ import annotations

import json
from typing import Any

import structlog

from congregation.deployment import Deployment
from congregation.hallelu import JahPlan, StreamPlan
from jah.ownership import PARTITIONS
from jah.windows import windows_of

log = structlog.get_logger("hallelujah.scaling")
MAX_JOINS_PER_WORKER = 2


def _stream_into(d: Deployment, jah: str, port: str) -> StreamPlan:
    assert d.plan is not None
    return next(s for s in d.plan.streams if s.receiver == jah and s.receiver_port == port)


def _stream_from(d: Deployment, jah: str, port: str) -> StreamPlan:
    assert d.plan is not None
    return next(s for s in d.plan.streams if s.sender == jah and s.sender_port == port)


async def _relieve(d: Deployment, old: list[JahPlan], halves: list[list[int]], hosts: list[Any],
                   suffixes: str) -> list[JahPlan]:
    """Create a JOIN per partition list on its host, wire it, then re-route PREJOIN to them:
    the `old` JOINs get the handover and drain."""
    assert d.plan is not None
    first = old[0].id
    prejoin = _stream_into(d, first, "in")
    postjoin = _stream_from(d, first, "out")
    dataset = _stream_into(d, first, "dataset")
    d.generation += 1
    new = []
    for partitions, host, suffix in zip(halves, hosts, suffixes):
        new_id = f"{first.split('#')[0]}#{old[0].spec.get('part', 0)}.{d.generation}{suffix}"
        spec = {**old[0].spec, "partitions": partitions, "inputs": {"in": 1, "dataset": 1}, "outputs": {"out": 1}}
        jah = JahPlan(new_id, "join", old[0].analytic, host.index, spec, {"in": 1, "dataset": 1}, {"out": 1})
        await d.create(jah)
        # the dataset last: the new JOIN runs once wired, and takes the version it is sent at once
        await d.wire(StreamPlan(f"{new_id}:out->{postjoin.receiver}:in", new_id, "out", postjoin.receiver, "in",
                                postjoin.schema))
        await d.wire(StreamPlan(f"{prejoin.sender}:to:{new_id}->{new_id}:in", prejoin.sender, f"to:{new_id}",
                                new_id, "in", prejoin.schema))
        await d.wire(StreamPlan(f"{dataset.sender}:{dataset.sender_port}->{new_id}:dataset", dataset.sender,
                                dataset.sender_port, new_id, "dataset", dataset.schema))
        new.append(jah)
    # Retiring before the PREJOIN hands over: an old JOIN may drain and report `finished` before
    # the answer comes, and one finished unretired keeps its dataset stream, on which the next
    # version then waits forever.
    d.retiring.update(j.id for j in old)
    try:
        await d.hosts[d.plan.jahs[prejoin.sender].host].request("controlReq", {
            "jah": prejoin.sender, "args": json.dumps({"split": [f"to:{j.id}" for j in old],
                                                       "into": {f"to:{j.id}": j.spec["partitions"] for j in new}})})
    except BaseException:
        d.retiring.difference_update(j.id for j in old)
        raise
    return new


def _held(jah: JahPlan) -> list[int]:
    return jah.spec.get("partitions") or list(range(PARTITIONS))


def _workers(d: Deployment) -> list[Any]:
    """The workers, least loaded first."""
    return sorted(d.hosts.values(), key=lambda h: (h.placed, h.index))


async def split(d: Deployment, jah_id: str, reason: dict[str, Any], record: Any) -> bool:
    """Split the JOIN `jah_id` in two; False when the rules say it stays as it is."""
    plan = d.plan
    if plan is None or jah_id not in plan.jahs or jah_id in d.retiring:
        return False
    old = plan.jahs[jah_id]
    held = _held(old)
    workers = _workers(d)
    siblings = [j for j in plan.jahs.values() if j.role == "join" and j.analytic == old.analytic
                and j.spec.get("part") == old.spec.get("part") and j.id not in d.retiring]
    if len(held) < 2 or len(siblings) >= MAX_JOINS_PER_WORKER * len(workers):
        return False
    new = await _relieve(d, [old], [held[:len(held) // 2], held[len(held) // 2:]],
                         [workers[0], workers[1 % len(workers)]], "ab")
    await _record_split(d, "join_split", old, held, new, record, reason=reason)
    return True


def pair_of(d: Deployment, jah_id: str) -> JahPlan | None:
    """The other JOIN made by the same split, while both run."""
    assert d.plan is not None
    base, _, suffix = jah_id.rpartition(".")
    if not (suffix[:-1].isdigit() and suffix[-1:] in ("a", "b")):
        return None
    other = f"{base}.{suffix[:-1]}{'b' if suffix[-1] == 'a' else 'a'}"
    jah = d.plan.jahs.get(other)
    return jah if jah is not None and other not in d.retiring else None


async def merge(d: Deployment, jah_id: str, reason: dict[str, Any], idle: set[str], record: Any) -> bool:
    """Merge the idle JOIN `jah_id` with its pair when that one is idle too."""
    plan = d.plan
    if plan is None or jah_id not in plan.jahs or jah_id in d.retiring:
        return False
    other = pair_of(d, jah_id)
    if other is None or other.id not in idle:
        return False
    pair = sorted([plan.jahs[jah_id], other], key=lambda j: _held(j)[0])
    held = [p for j in pair for p in _held(j)]
    (new,) = await _relieve(d, pair, [held], [_workers(d)[0]], "m")
    event = {"analytic": new.analytic, "jahs": [j.id for j in pair], "reason": reason,
             "partitions": [len(held)] + [len(_held(j)) for j in pair],
             "into": [{"jah": new.id, "worker": new.host, "partitions": [held[0], held[-1]]}]}
    log.info("join_merge", **event)
    await record(d.tc.name, "merge", event)
    return True


async def split_aggregate(d: Deployment, jah_id: str, reason: dict[str, Any], record: Any) -> bool:
    """Split a congested AGGREGATE: two new ones take half its partitions each from the next
    window boundary on. Every EXCHANGE holds its stream while the boundary is chosen after the
    latest event any of them routed, so the old AGGREGATE keeps exactly the windows it has begun
    (and their late-enough rows) and ends, its windows closed, when the watermark passes the
    boundary; a distinct value is never counted by two instances in one window. Tumbling windows
    only: a hopping row belongs to windows on both sides of any boundary."""
    plan = d.plan
    if plan is None or jah_id not in plan.jahs or jah_id in d.retiring:
        return False
    old = plan.jahs[jah_id]
    a = old.spec["analytic"]
    feeds = [s for s in plan.streams if s.receiver == jah_id and s.receiver_port == "in"
             and plan.jahs[s.sender].role == "exchange"]
    held = old.spec.get("partitions") or []
    siblings = [j for j in plan.jahs.values() if j.role == "aggregate" and j.analytic == old.analytic
                and j.id not in d.retiring]
    workers = _workers(d)
    # a hop or a session spans a time boundary: a split there would cut windows in two
    if not feeds or "hop" in a or "session" in a or len(held) < 2 \
            or len(siblings) >= MAX_JOINS_PER_WORKER * len(workers):
        return False
    merge_in = _stream_from(d, jah_id, "out")
    rejected = [s for s in plan.streams if s.sender == jah_id and s.sender_port == "rejected"]
    d.generation += 1
    halves = [held[:len(held) // 2], held[len(held) // 2:]]
    new = []
    for partitions, host, suffix in zip(halves, [workers[0], workers[1 % len(workers)]], "ab"):
        new_id = f"{jah_id.split('#')[0]}#{d.generation}{suffix}"
        spec = {**old.spec, "partitions": partitions, "inputs": {"in": len(feeds)},
                "outputs": {"out": 1, "rejected": len(rejected)}}
        jah = JahPlan(new_id, "aggregate", old.analytic, host.index, spec, {"in": len(feeds)},
                      {"out": 1, "rejected": len(rejected)})
        await d.create(jah)
        await d.wire(StreamPlan(f"{new_id}:out->{merge_in.receiver}:in", new_id, "out", merge_in.receiver, "in",
                                merge_in.schema))
        for s in rejected:
            await d.wire(StreamPlan(f"{new_id}:rejected->{s.receiver}:in", new_id, "rejected", s.receiver,
                                    s.receiver_port, s.schema))
        for s in feeds:
            await d.wire(StreamPlan(f"{s.sender}:to:{new_id}->{new_id}:in", s.sender, f"to:{new_id}", new_id,
                                    "in", s.schema))
        new.append(jah)

    async def ask(s: StreamPlan, args: dict[str, Any]) -> dict[str, Any]:
        reply = await d.hosts[plan.jahs[s.sender].host].request("controlReq", {"jah": s.sender,
                                                                               "args": json.dumps(args)})
        return json.loads(reply["result"])

    size = windows_of(a).size_us
    committed = False
    d.retiring.add(jah_id)              # before the commit, after which it may end at once
    try:
        latest = max([(await ask(s, {"prepare": True}))["latest"] for s in feeds] + [0])
        boundary = (latest // size + 1) * size       # after every event routed so far
        for s in feeds:
            await ask(s, {"commit": {"old": s.sender_port, "boundary": boundary,
                                     "into": {f"to:{j.id}": j.spec["partitions"] for j in new}}})
        committed = True
    finally:
        if not committed:                            # let the streams go on as they were
            d.retiring.discard(jah_id)
            for s in feeds:
                await ask(s, {"release": True})
    await _record_split(d, "aggregate_split", old, held, new, record, reason=reason, boundary_us=boundary)
    return True


async def _record_split(d: Deployment, what: str, old: JahPlan, held: list[int], new: list[JahPlan],
                        record: Any, **detail: Any) -> None:
    """Log a split and record it in the tradecraft's `scaling` list (describe)."""
    event = {"analytic": old.analytic, "jah": old.id, **detail,
             "partitions": [len(held)] + [len(j.spec["partitions"]) for j in new],
             "into": [{"jah": j.id, "worker": j.host, "partitions": [j.spec["partitions"][0], j.spec["partitions"][-1]]}
                      for j in new]}
    log.info(what, **event)
    await record(d.tc.name, "split", event)
