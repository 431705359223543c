"""View models: pure functions from the client library's answers (describe, list) to the rows a
screen shows, so what the Window Interface shows is testable without a terminal."""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Info = dict[str, Any]


@dataclass(frozen=True)
class Sample:
    """A tradecraft's row totals at one moment: two of them make a rate."""
    at: float
    rows_in: int | None
    rows_out: int | None


@dataclass(frozen=True)
class TradecraftRow:
    name: str
    state: str
    note: str                  # "stalled 12s" or the error of a failed tradecraft
    rows_in: int | None        # None: describe's answer does not say (no log, no live Jah)
    rows_out: int | None
    in_rate: float | None      # rows/s since the previous sample; None before there is one
    out_rate: float | None


@dataclass(frozen=True)
class JahRow:
    analytic: str
    jah: str                   # the Jah's id without its tradecraft and analytic ("transform", ".rejected/sink")
    role: str
    worker: str
    rows_in: int | None        # None: no live figures (the Jah is gone, or not reported yet)
    rows_out: int | None
    busy: float | None
    backlog: int | None
    held: int | None           # rows of state (open windows, a join's rows)
    state: str
    in_flight: int | None = None    # batches sent, not yet taken by their receivers (what credits bound)
    blocked: bool = False           # an out end waits for a credit now
    watermark: int | None = None    # µs of event time, the least of its inputs'; None before one came


def _rows(a: Info, field: str) -> int | None:
    """Rows an analytic holds: its own retained log, else its live Jahs' `field`, else unknown."""
    log = a.get("retained", {}).get(a["name"])
    if log is not None:
        return int(log["rows"])
    live = [j[field] for j in a.get("jahs", []) if field in j]
    return int(sum(live)) if live else None


def _sum(parts: list[int | None]) -> int | None:
    return None if any(p is None for p in parts) else sum(p for p in parts if p is not None)


def totals(tc: Info) -> tuple[int | None, int | None]:
    """Rows into a tradecraft (its streams) and out of it (its outputs). Read from the retained
    logs, which outlive the Jahs, else from live Jahs; None when the answer does not say (a
    finished file source keeps no log and its Jahs are gone), never a made-up 0."""
    analytics = tc.get("analytics", [])
    return (_sum([_rows(a, "rows_out") for a in analytics if a.get("kind") == "stream"]),
            _sum([_rows(a, "rows_in") for a in analytics if a.get("output")]))


def rate(now: int | None, then: int | None, seconds: float) -> float | None:
    """Rows per second between two counts; None without a positive interval or a count, never
    negative (a restarted count is not a negative flow)."""
    if seconds <= 0 or now is None or then is None:
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


def jah_label(jah_id: str, analytic: str) -> str:
    """A Jah's id as its analytic's screen shows it: what follows "TRADECRAFT/ANALYTIC"."""
    rest = jah_id.split("/", 1)[-1]
    after = rest[len(analytic):]
    if rest.startswith(analytic) and after[:1] in ("/", "."):
        return after.lstrip("/")
    return rest


def jah_rows(tc: Info) -> list[JahRow]:
    """Every Jah of a tradecraft, analytic by analytic, as describe reports them."""
    def live(j: Info, field: str) -> int | None:
        return int(j[field]) if field in j else None
    return [JahRow(a["name"], jah_label(j["id"], a["name"]), j.get("role", ""),
                   "-" if j.get("worker", -1) < 0 else str(j["worker"]),
                   live(j, "rows_in"), live(j, "rows_out"), float(j["busy"]) if "busy" in j else None,
                   live(j, "backlog"), live(j, "state_rows"), str(j.get("state", "")),
                   live(j, "in_flight"), any(bool(d.get("waiting")) for d in j.get("datastreams", ())),
                   None if j.get("watermark") is None else int(j["watermark"]))
            for a in tc.get("analytics", []) for j in a.get("jahs", [])]


def credits(j: JahRow) -> str:
    """Batches in flight, and "blocked" when a send waits for a credit (the receiver is behind)."""
    return f"{count(j.in_flight)} blocked" if j.blocked else count(j.in_flight)


HISTORY_LAG = 86_400.0      # a watermark more than a day behind is history being replayed


def duration(seconds: float) -> str:
    """Seconds as a person reads them, in at most 5 characters: 12s, 4m05s, 3h12m, 2d07h."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86_400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86_400}d{s % 86_400 // 3600:02d}h"


def watermark_lag(watermark: int | None, now: float) -> str:
    """How far a watermark (µs of event time) is behind the wall clock `now` (seconds): "12s";
    "+3s" when it is ahead (event times in the future); the event time's UTC date itself when it
    is more than a day behind, since then the stream replays history and the lag says nothing
    about keeping up; "-" before a watermark came."""
    if watermark is None:
        return "-"
    lag = now - watermark / 1e6
    if lag > HISTORY_LAG:
        return time.strftime("%Y-%m-%d", time.gmtime(watermark / 1e6))
    return duration(lag) if lag > -1 else "+" + duration(-lag)


def checkpoint_line(cp: Info | None, tradecraft: str, size: Callable[[int], str]) -> str:
    """A tradecraft's checkpoints in one line: the last complete (id, age, size, how long it
    took) and the one in flight (how long, which Jahs it still waits for); "" when it takes none."""
    if not cp:
        return ""
    last, flying = cp.get("last"), cp.get("in_flight")
    text = f"checkpoint every {cp.get('every', 0):g}s: "
    text += "none complete yet" if last is None else (
        f"last #{last['id']} {duration(last['age'])} ago, {size(int(last['bytes']))} in {last['seconds']:.2f}s")
    if flying is not None:
        waits = [w.removeprefix(f"{tradecraft}/") for w in flying.get("waiting_for", [])]
        text += f"; #{flying['id']} in flight {flying['for']:.1f}s" + (f", waits for {', '.join(waits)}" if waits else "")
    return text


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


def count(n: int | None) -> str:
    """A row count that fits a narrow column (7 characters): exact to 99,999, then k/M/G/T with
    one decimal; "-" when unknown."""
    if n is None:
        return "-"
    if abs(n) < 100_000:
        return f"{n:,}"
    for unit, size in (("k", 1e3), ("M", 1e6), ("G", 1e9)):
        if abs(round(n / size, 1)) < 1000:
            return f"{n / size:.1f}{unit}"
    return f"{n / 1e12:.1f}T"


def per_second(r: float | None) -> str:
    return "-" if r is None else f"{count(round(r))}/s"


SPARKS = "_.,:-=+*#"


def sparkline(values: Sequence[float | None]) -> str:
    """One ASCII character per value, scaled to the largest: "_" for none or nothing, "#" for
    the largest; any flow at all is at least "." (a trickle is not nothing)."""
    top = max((v for v in values if v is not None), default=0.0)
    out = []
    for v in values:
        if v is None or v <= 0 or top <= 0:
            out.append(SPARKS[0])
        else:
            out.append(SPARKS[max(1, round(v / top * (len(SPARKS) - 1)))])
    return "".join(out)


def clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))


def _natural(cells: list[list[str]], columns: int) -> list[int]:
    return [max(len(r[i]) for r in cells) for i in range(columns)]


def table_lines(headers: Sequence[str], rows: Sequence[Sequence[str]], width: int,
                numeric: Sequence[bool] | None = None, optional: Sequence[int] = ()) -> list[str]:
    """Rows laid out in columns that fit `width`: numbers are right-aligned and never cut. When
    the line is too wide, the `optional` columns are left out, in their order, as long as it
    stays too wide; then the widest text column is narrowed (a cut cell ends in "~"), the first
    column (the row's name) last of all."""
    numeric = list(numeric) if numeric is not None else [False] * len(headers)
    cells = [list(headers)] + [list(r) for r in rows]
    keep, widths = list(range(len(headers))), _natural(cells, len(headers))
    for column in optional:
        if sum(widths[i] for i in keep) + 2 * (len(keep) - 1) <= width:
            break
        keep.remove(column)
    cells = [[r[i] for i in keep] for r in cells]
    numeric = [numeric[i] for i in keep]
    widths = [widths[i] for i in keep]
    excess = sum(widths) + 2 * (len(widths) - 1) - width
    while excess > 0:       # narrow the widest text column but the first, one character at a time
        cuttable = [i for i in range(1, len(widths)) if not numeric[i] and widths[i] > 3] or \
            ([0] if not numeric[0] and widths[0] > 3 else [])
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
