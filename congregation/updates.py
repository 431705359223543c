"""Commands that change a running tradecraft by hand (issue 15 §1, the Window Interface's
"update"): force a split or a merge of a dataset JOIN, reload a dataset, and change a tradecraft's
congestion thresholds. Each is `async def NAME(congregation, args) -> dict`, registered in
congregation/commands.py's UPDATES.

Each refuses with what it needs (NotFound naming what exists, InvalidInput naming the field),
changes nothing when refused, and is recorded as an event with its reason ("by hand"), so
describe's history says why the plan changed."""
from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import structlog

from congregation.scaling import MAX_JOINS_PER_WORKER, merge, pair_of, split
from hallelujah.errors import InvalidInput, NotFound
from hallelujah.tradecraft import parse_document

log = structlog.get_logger("hallelujah.updates")
BY_HAND = {"by": "hand"}       # the reason recorded for a split or merge asked for


def _running(c: Any, name: Any) -> Any:
    """The running deployment of the tradecraft `name`."""
    d = c.deployments.get(name) if isinstance(name, str) else None
    if d is None or d.state != "running" or d.plan is None:
        running = sorted(n for n, r in c.deployments.items() if r.state == "running")
        raise NotFound(f'no running tradecraft "{name}" (running: {", ".join(running) or "none"})')
    return d


def _join(c: Any, args: dict[str, Any]) -> tuple[Any, str]:
    """The deployment and the id of the JOIN `args["jah"]` names ("TRADECRAFT/ANALYTIC/join...")."""
    jah = args.get("jah")
    if not isinstance(jah, str) or jah.count("/") < 2:
        raise InvalidInput(f'jah {jah!r}: expected a JOIN\'s id, TRADECRAFT/ANALYTIC/join...')
    d = _running(c, jah.split("/", 1)[0])
    joins = sorted(j.id for j in d.plan.jahs.values() if j.role == "join" and j.id not in d.retiring)
    if jah not in joins:
        raise NotFound(f'no JOIN "{jah}" running (JOINs: {", ".join(joins) or "none"})')
    return d, jah


async def _changed(c: Any, d: Any) -> None:
    await c.catalog.set_deployment(d.tc.name, *d.catalog_rows())


async def split_join(c: Any, args: dict[str, Any]) -> dict[str, Any]:
    """Split the JOIN `args["jah"]` in two now, by the rules congestion splits it by."""
    d, jah = _join(c, args)
    async with d.scaling:
        done = await split(d, jah, BY_HAND, c.catalog.record_event)
    if not done:
        raise InvalidInput(f'"{jah}" does not split: it holds a single partition, or its analytic has '
                           f'{MAX_JOINS_PER_WORKER} JOINs per worker already')
    await _changed(c, d)
    log.info("split_by_hand", jah=jah)
    return {"split": jah}


async def merge_joins(c: Any, args: dict[str, Any]) -> dict[str, Any]:
    """Merge the JOIN `args["jah"]` with the other JOIN of its split now."""
    d, jah = _join(c, args)
    other = pair_of(d, jah)
    if other is None:
        raise InvalidInput(f'"{jah}" has no JOIN to merge with (only the two JOINs of one split merge)')
    async with d.scaling:
        done = await merge(d, jah, BY_HAND, {jah, other.id}, c.catalog.record_event)
    if not done:
        raise InvalidInput(f'"{jah}" and "{other.id}" did not merge')
    await _changed(c, d)
    log.info("merge_by_hand", jahs=[jah, other.id])
    return {"merged": sorted([jah, other.id])}


async def congestion(c: Any, args: dict[str, Any]) -> dict[str, Any]:
    """Set a running tradecraft's congestion thresholds (`args["congestion"]`, as the document's
    "congestion" object; one left out keeps its value), checked as a submit checks them. They apply from the next look at its
    Jahs; the document kept in the catalog is not rewritten, so a restart goes back to it."""
    d = _running(c, args.get("tradecraft"))
    asked = args.get("congestion")
    if isinstance(asked, dict):           # a threshold not given keeps its current value
        asked = {**d.tc.document.get("congestion", {}), **asked}
    tc = parse_document({**d.tc.document, "congestion": asked}, allowed=c.allowed)
    before = d.tc.congestion
    d.tc = replace(d.tc, congestion=tc.congestion, document=tc.document)
    detail = {"busy": tc.congestion.busy, "for_seconds": tc.congestion.for_seconds,
              "before": {"busy": before.busy, "for_seconds": before.for_seconds}, **BY_HAND}
    await c.catalog.record_event(tc.name, "congestion_thresholds", detail)
    log.info("congestion_thresholds", tradecraft=tc.name, **detail)
    return {"tradecraft": tc.name, "busy": tc.congestion.busy, "for_seconds": tc.congestion.for_seconds}


async def reload_dataset(c: Any, args: dict[str, Any]) -> dict[str, Any]:
    """Load the next version of the ingest `args["analytic"]` ("TRADECRAFT/ANALYTIC") now, as its
    timer would; answered once the version is handed over (its INGEST records the version, with
    the reason "reload", in the events)."""
    ref = args.get("analytic")
    if not isinstance(ref, str) or "/" not in ref:
        raise InvalidInput(f"analytic {ref!r}: expected a dataset, TRADECRAFT/ANALYTIC")
    name, _, analytic = ref.partition("/")
    d = _running(c, name)
    datasets = sorted(a.name for a in d.tc.analytics if a.kind == "ingest")
    if analytic not in datasets:
        raise NotFound(f'no dataset "{ref}" (datasets of {name}: {", ".join(datasets) or "none"})')
    jahs = [j for j in d.plan.jahs.values() if j.role == "ingest" and j.analytic == analytic]
    if not jahs or jahs[0].host not in d.hosts:
        raise NotFound(f'"{ref}" has no INGEST running (it may have loaded once and finished)')
    reply = await d.hosts[jahs[0].host].request("controlReq", {"jah": jahs[0].id,
                                                              "args": json.dumps({"reload": True})})
    loaded = json.loads(reply["result"])
    log.info("reload_by_hand", analytic=ref, **loaded)
    return {"analytic": ref, **loaded}
