"""`hallelujah explain FILE`: the plan a congregation would make of a document, without one —
each analytic's Jahs (their role, which process, the hash partitions they own), the
datastreams between them and the logs kept."""
from __future__ import annotations

from typing import Any

from hallelujah.tradecraft import Tradecraft


def explain(tc: Tradecraft, workers: int) -> dict[str, Any]:
    """The plan of `tc` on `workers` worker processes, placed as a congregation places it."""
    from congregation.deployment import Deployment

    class Worker:             # what placement reads of a worker
        def __init__(self, index: int) -> None:
            self.index, self.placed = index, 0

    hosts: dict[int, Any] = {i: Worker(i) for i in range(workers)}
    plan = Deployment(tc, None).make_plan(hosts)
    prefix = f"{tc.name}/"
    analytics = []
    for a in tc.analytics:
        jahs = [{"jah": j.id.removeprefix(prefix), "role": j.role,
                 "process": f"worker {j.host}",
                 **({"partitions": len(j.spec["partitions"])} if isinstance(j.spec.get("partitions"), list) else {})}
                for j in plan.jahs.values() if j.analytic == a.name]
        analytics.append({"name": a.name, "kind": a.kind, "jahs": jahs})
    return {"tradecraft": tc.name, "workers": workers, "analytics": analytics,
            "datastreams": [f"{s.sender.removeprefix(prefix)} -> {s.receiver.removeprefix(prefix)}"
                            for s in plan.streams],
            "retained": [name.removeprefix(prefix) for name in plan.logs]}


def explained_lines(info: dict[str, Any]) -> list[str]:
    """The plan as lines for people."""
    lines = [f"tradecraft {info['tradecraft']} on {info['workers']} worker{'s' if info['workers'] != 1 else ''}:"]
    for a in info["analytics"]:
        lines.append(f"  {a['name']} ({a['kind']})")
        lines.extend(f"    {j['jah']}: {j['role']} in {j['process']}"
                     + (f", {j['partitions']} partitions" if "partitions" in j else "") for j in a["jahs"])
    lines.append("datastreams:")
    lines.extend(f"  {s}" for s in info["datastreams"])
    lines.append(f"retained: {', '.join(info['retained'])}")
    return lines
