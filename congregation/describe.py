"""`describe`: every tradecraft's state, analytics, retained logs and each Jah's live figures."""
from __future__ import annotations

import json
import os
from typing import Any

import trio

from congregation.usage import usage
from hallelujah.tradecraft import schema_to_json


async def describe(congregation: Any, only: str = "") -> dict[str, Any]:
    name_filter, _, analytic_filter = only.partition("/")
    out = []
    for row in await congregation.catalog.tradecrafts():
        name = row["name"]
        if name_filter and name != name_filter:
            continue
        d = congregation.deployments.get(name)
        stats: dict[str, dict[str, Any]] = {}
        for host in congregation.hosts.values():
            for jah_id, s in host.stats.items():
                stats[jah_id] = {**s, "worker": host.index, "pid": host.pid}
        for jah_id, last in (d.final_stats.items() if d is not None else ()):
            stats[jah_id] = {**stats.get(jah_id, {}), **last}    # finished: its last figures, exact
        jahs, event_rows = await congregation.catalog.jahs_and_events(name)
        # every log of the tradecraft in one query on the readers' connection: never behind a
        # publish's synced append (bench/CONTROL_LATENCY.md)
        log_rows = await congregation.logs.log_rows(f"{name}/") if d is not None else []
        analytics = []
        for a in (d.tc.analytics if d is not None else []):
            if analytic_filter and a.name != analytic_filter:
                continue
            logs = {}
            for info in log_rows:
                log = info["name"]
                if log == f"{name}/{a.name}" or log.startswith(f"{name}/{a.name}."):
                    logs[log.split("/", 1)[1]] = {"rows": info["rows"], "batches": info["next_seq"],
                                                  "ended": bool(info["ended"]),
                                                  "first_at": info["first_at"], "last_at": info["last_at"]}
            analytics.append({
                "name": a.name, "kind": a.kind, "output": a.output, "retained": logs,
                "schema": schema_to_json(a.schema),
                "jahs": [{"id": j["id"], "role": j["role"], "worker": j["host"],
                          **{k: v for k, v in stats.get(j["id"], {}).items() if k != "role"},
                          "state": stats.get(j["id"], {}).get("state", j["state"]),
                          "error": j["error"]}
                         for j in jahs if j["analytic"] == a.name],
            })
        events = [{"at": e["at"], "kind": e["kind"], **json.loads(e["detail"])}
                  for e in event_rows]
        stalled = congregation.progress.stalled.get(name) if row["state"] == "running" else None
        out.append({"name": name, "state": row["state"], "error": row["error"],
                    # seconds without a row moved while work waits (DESIGN "liveness"), or None
                    "stalled_for": round(trio.current_time() - stalled, 1) if stalled is not None else None,
                    "submitted_at": row["submitted_at"], "finished_at": row["finished_at"],
                    "analytics": analytics,
                    "checkpoints": d.checkpoints.describe() if d is not None and d.checkpoints else None,
                    "events": events,
                    "scaling": [e for e in events if e["kind"] in ("split", "merge")]})
    return {"congregation": congregation.name, "usage": {"pid": os.getpid(), **usage(os.getpid())}, "workers": [
        {"worker": h.index, "pid": h.pid, "jahs": len(getattr(h, "stats", {}) or {}), **usage(h.pid)}
        for i, h in sorted(congregation.hosts.items())], "tradecrafts": out}
