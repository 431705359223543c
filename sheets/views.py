"""View models: pure functions from the client library's answers (describe, list) to the rows a
screen shows, so what the Window Interface shows is testable without a terminal."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

Info = dict[str, Any]


@dataclass(frozen=True)
class Sample:
    """A tradecraft's row totals at one moment: two of them make a rate."""
    at: float
    rows_in: int
    rows_out: int


@dataclass(frozen=True)
class TradecraftRow:
    name: str
    state: str
    note: str                  # "stalled 12s" or the error of a failed tradecraft
    rows_in: int
    rows_out: int
    in_rate: float | None      # rows/s since the previous sample; None before there is one
    out_rate: float | None


@dataclass(frozen=True)
class JahRow:
    analytic: str
    jah: str                   # the Jah's id without its tradecraft
    role: str
    worker: str
    rows_in: int
    rows_out: int
    busy: float
    backlog: int
    held: int                  # rows of state (open windows, a join's rows)
    state: str


def _analytic_rows(a: Info, name: str) -> int | None:
    log = a.get("retained", {}).get(name)
    return int(log["rows"]) if log is not None else None


def totals(tc: Info) -> tuple[int, int]:
    """Rows into a tradecraft (its streams) and out of it (its outputs). Read from the retained
    logs, which outlive the Jahs; a stream without a log counts its Jahs' rows out."""
    rows_in = rows_out = 0
    for a in tc.get("analytics", []):
        kept = _analytic_rows(a, a["name"])
        if a.get("kind") == "stream":
            rows_in += kept if kept is not None else sum(j.get("rows_out", 0) for j in a.get("jahs", []))
        if a.get("output"):
            rows_out += kept if kept is not None else sum(j.get("rows_in", 0) for j in a.get("jahs", []))
    return rows_in, rows_out


def rate(now: int, then: int, seconds: float) -> float | None:
    """Rows per second between two counts; None without a positive interval, never negative
    (a restarted count is not a negative flow)."""
    if seconds <= 0:
        return None
    return max(0.0, (now - then) / seconds)


def note(tc: Info) -> str:
    if tc.get("stalled_for") is not None:
        return f"stalled {tc['stalled_for']:.0f}s"
    return str(tc.get("error") or "")


def tradecraft_rows(info: Info, previous: dict[str, Sample], now: float) -> list[TradecraftRow]:
    """One row per tradecraft of a describe answer, with rates against `previous` samples."""
    rows = []
    for tc in info.get("tradecrafts", []):
        rows_in, rows_out = totals(tc)
        before = previous.get(tc["name"])
        dt = now - before.at if before is not None else 0.0
        rows.append(TradecraftRow(
            tc["name"], tc["state"], note(tc), rows_in, rows_out,
            rate(rows_in, before.rows_in, dt) if before else None,
            rate(rows_out, before.rows_out, dt) if before else None))
    return rows


def samples(rows: Sequence[TradecraftRow], now: float) -> dict[str, Sample]:
    return {r.name: Sample(now, r.rows_in, r.rows_out) for r in rows}


def find(info: Info | None, tradecraft: str) -> Info | None:
    """A tradecraft of a describe answer, or None when it is gone (cancelled, not yet known)."""
    for tc in (info or {}).get("tradecrafts", []):
        if tc["name"] == tradecraft:
            return tc
    return None


def find_analytic(tc: Info | None, analytic: str) -> Info | None:
    for a in (tc or {}).get("analytics", []):
        if a["name"] == analytic:
            return a
    return None


def jah_rows(tc: Info) -> list[JahRow]:
    """Every Jah of a tradecraft, analytic by analytic, as describe reports them."""
    return [JahRow(a["name"], j["id"].split("/", 1)[-1], j.get("role", ""),
                   "-" if j.get("worker", -1) < 0 else str(j["worker"]),
                   int(j.get("rows_in", 0)), int(j.get("rows_out", 0)), float(j.get("busy", 0.0)),
                   int(j.get("backlog", 0)), int(j.get("state_rows", 0)), str(j.get("state", "")))
            for a in tc.get("analytics", []) for j in a.get("jahs", [])]


def schema_lines(a: Info) -> list[tuple[str, str]]:
    return [(field, str(kind)) for field, kind in a.get("schema", {}).items()]


def retained_lines(a: Info) -> list[tuple[str, int, bool]]:
    """(log name, rows, ended) of each output an analytic retains, its rejected rows included."""
    return [(name, int(log["rows"]), bool(log["ended"])) for name, log in sorted(a.get("retained", {}).items())]


def event_lines(tcs: Sequence[Info]) -> list[tuple[float, str, str, str]]:
    """(at, tradecraft, kind, details) of every event, oldest first."""
    out = [(float(e["at"]), tc["name"], str(e["kind"]),
            ", ".join(f"{k}={v}" for k, v in e.items() if k not in ("at", "kind")))
           for tc in tcs for e in tc.get("events", [])]
    return sorted(out, key=lambda e: e[0])


def count(n: int) -> str:
    """A row count that fits a narrow column (7 characters): exact to 99,999, then k/M/G/T with
    one decimal."""
    if abs(n) < 100_000:
        return f"{n:,}"
    for unit, size in (("k", 1e3), ("M", 1e6), ("G", 1e9)):
        if abs(round(n / size, 1)) < 1000:
            return f"{n / size:.1f}{unit}"
    return f"{n / 1e12:.1f}T"


def per_second(r: float | None) -> str:
    return "-" if r is None else f"{count(round(r))}/s"


def clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))


def table_lines(headers: Sequence[str], rows: Sequence[Sequence[str]], width: int,
                numeric: Sequence[bool] | None = None) -> list[str]:
    """Rows laid out in columns that fit `width`: numbers are right-aligned and never cut; when
    the line is too wide, the widest text column is narrowed first (a cut cell ends in "~")."""
    numeric = list(numeric) if numeric is not None else [False] * len(headers)
    cells = [list(headers)] + [list(r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    excess = sum(widths) + 2 * (len(widths) - 1) - width
    while excess > 0:                      # narrow the widest text column, one character at a time
        cuttable = [i for i in range(len(widths)) if not numeric[i] and widths[i] > 3]
        if not cuttable:
            break
        widest = max(cuttable, key=lambda i: (widths[i], -i))
        widths[widest] -= 1
        excess -= 1

    def cell(text: str, i: int) -> str:
        if len(text) > widths[i]:
            text = text[:widths[i] - 1] + "~"
        return text.rjust(widths[i]) if numeric[i] else text.ljust(widths[i])
    return ["  ".join(cell(t, i) for i, t in enumerate(r)).rstrip()[:width] for r in cells]
