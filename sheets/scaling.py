"""View models of an analytic's scaling, from what describe reports: its split and merge history
with the reasons, a dataset join's JOINs with the partitions each holds, and the datasets'
versions. Pure functions of describe's answer; nothing here is guessed."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sheets.views import Info, jah_label

PARTITIONS = 256        # the hash partitions a key falls into (jah/ownership.py)


@dataclass(frozen=True)
class ScalingRow:
    at: float
    kind: str               # split, merge
    jahs: str               # the Jah(s) it replaced, as the analytic's screen names them
    partitions: str         # "256 -> 128 + 128"
    into: str               # "join#0.1a on 1 (0-127), join#0.1b on 0 (128-255)"
    reason: str             # the figures that caused it, against the tradecraft's threshold


def reason_text(kind: str, reason: Info) -> str:
    """A congestion or idle record as a person reads it: busy against the threshold, for how long."""
    if not isinstance(reason, dict):
        return str(reason or "")
    if "busy" not in reason:            # by hand: {"by": "hand"}
        return ", ".join(f"{k} {v}" for k, v in reason.items())
    over = "<=" if kind == "merge" else ">="
    return (f"busy {reason['busy']:g} {over} {reason.get('threshold_busy', 0):g} for "
            f"{reason.get('for_seconds', 0):g}s, backlog {reason.get('backlog', 0)}")


def _span(part: Sequence[int]) -> str:
    return f"{part[0]}-{part[-1]}" if part else "-"


def scaling_rows(tc: Info, analytic: str) -> list[ScalingRow]:
    """The analytic's splits and merges (describe's `scaling`), oldest first."""
    rows = []
    for e in tc.get("scaling", []):
        if e.get("analytic") != analytic:
            continue
        old = e.get("jahs") or [e.get("jah", "")]
        counts = [str(n) for n in e.get("partitions", [])]
        into = ", ".join(f"{jah_label(i['jah'], analytic)} on {i['worker']} ({_span(i.get('partitions', []))})"
                         for i in e.get("into", []))
        if e.get("kind") == "merge" and len(counts) > 1:
            moved = f"{' + '.join(counts[1:])} -> {counts[0]}"
        else:
            moved = f"{counts[0]} -> {' + '.join(counts[1:])}" if counts else "-"
        rows.append(ScalingRow(float(e["at"]), str(e.get("kind", "")),
                               ", ".join(jah_label(j, analytic) for j in old), moved, into,
                               reason_text(str(e.get("kind", "")), e.get("reason", {}))))
    return sorted(rows, key=lambda r: r.at)


@dataclass(frozen=True)
class JoinRow:
    jah: str
    worker: str
    partitions: str         # "0-127 (128)": from the split or merge that made it, or all 256 as planned
    rows_in: int | None
    rows_out: int | None
    held: int | None        # rows of the dataset it holds
    state: str


def join_rows(tc: Info, a: Info) -> list[JoinRow]:
    """A dataset join's JOINs as describe reports them. A JOIN made by a split or a merge holds
    the partitions that event names; one no event names is as planned: one JOIN per part of the
    stream, holding all 256 (DESIGN Fig 2, congregation/partitioned.py)."""
    made: dict[str, Sequence[int]] = {}
    for e in tc.get("scaling", []):
        for i in e.get("into", []):
            made[i["jah"]] = i.get("partitions", [])
    rows = []
    for j in a.get("jahs", []):
        if j.get("role") != "join":
            continue
        span = made.get(j["id"])
        if span is not None:
            first, last = (span[0], span[-1]) if span else (0, -1)
            parts = f"{first}-{last} ({last - first + 1})"
        else:
            parts = f"0-{PARTITIONS - 1} ({PARTITIONS})"
        rows.append(JoinRow(jah_label(j["id"], a["name"]), "-" if j.get("worker", -1) < 0 else str(j["worker"]),
                            parts, j.get("rows_in"), j.get("rows_out"), j.get("state_rows"), str(j.get("state", ""))))
    return rows


@dataclass(frozen=True)
class VersionRow:
    at: float
    dataset: str
    version: int
    rows: int | None
    reason: str


def version_rows(tc: Info, datasets: Sequence[str] | None = None) -> list[VersionRow]:
    """Each version of a dataset loaded (describe's `dataset_version` events), oldest first; only
    those of `datasets` when given."""
    return sorted((VersionRow(float(e["at"]), str(e.get("analytic", "")), int(e.get("version", 0)),
                              int(e["rows"]) if "rows" in e else None, str(e.get("reason", "")))
                   for e in tc.get("events", []) if e.get("kind") == "dataset_version"
                   and (datasets is None or e.get("analytic") in datasets)), key=lambda r: r.at)
