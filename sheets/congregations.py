"""View models of the congregations screen: each address given, whether it answers, and its
workers as describe reports them. CPU and memory are shown when describe reports them for a
process (`cpu_seconds`, `rss_bytes`), else "-": nothing here is guessed."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from sheets.views import Info


@dataclass(frozen=True)
class Answer:
    """What one address last said: its describe answer (kept when it stops answering), why the
    last try failed (None when it answered), when it answered (trio clock), and the answer
    before that one (for CPU used between the two)."""
    info: Info | None = None
    error: str | None = None
    answered_at: float | None = None
    before: tuple[float, Info] | None = None


def answered(last: Answer, info: Info, now: float) -> Answer:
    before = (last.answered_at, last.info) if last.answered_at is not None and last.info is not None else None
    return Answer(info, None, now, before)


def failed(last: Answer, error: str) -> Answer:
    return replace(last, error=error)


def processes(info: Info) -> list[Info]:
    """The processes describe reports: its workers, and the congregation's own when it says."""
    return list(info.get("workers", [])) + ([info["usage"]] if isinstance(info.get("usage"), dict) else [])


def _total(procs: Sequence[Info], field: str) -> float | None:
    """The sum of a figure over processes; None when one does not report it (or there is none)."""
    if not procs or any(field not in p for p in procs):
        return None
    return sum(float(p[field]) for p in procs)


def _of(info: Info, pid: int | None) -> list[Info]:
    return [p for p in processes(info) if pid is None or p.get("pid") == pid]


def cpu_percent(answer: Answer, pid: int | None = None) -> float | None:
    """CPU used between the last two answers, in percent of one core (200% is two cores busy), by
    the process `pid` or by all; never negative (a restarted worker's count starts again)."""
    if answer.before is None or answer.answered_at is None or answer.info is None:
        return None
    at, info = answer.before
    now, then = _total(_of(answer.info, pid), "cpu_seconds"), _total(_of(info, pid), "cpu_seconds")
    if now is None or then is None or answer.answered_at <= at:
        return None
    return max(0.0, (now - then) / (answer.answered_at - at) * 100)


def memory(info: Info, pid: int | None = None) -> int | None:
    """Resident bytes of the process `pid`, or of all."""
    rss = _total(_of(info, pid), "rss_bytes")
    return None if rss is None else int(rss)


def size(n: int | None) -> str:
    """Bytes as a person reads them: 512B, 1.5MiB."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{n}B" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}TiB"


def percent(p: float | None) -> str:
    return "-" if p is None else f"{p:.0f}%"


@dataclass(frozen=True)
class CongregationRow:
    address: str
    name: str               # "-" before it ever answered
    up: str                 # up, down, or "-" before the first answer
    workers: int | None
    jahs: int | None
    tradecrafts: int | None
    cpu: float | None
    memory: int | None
    note: str               # why it is down, and since when


def congregation_row(address: str, answer: Answer, now: float) -> CongregationRow:
    info = answer.info or {}
    up = "down" if answer.error else "up" if answer.answered_at is not None else "-"
    note = "connecting..." if up == "-" else ""
    if answer.error:
        since = "" if answer.answered_at is None else f" (last answer {now - answer.answered_at:.0f}s ago)"
        note = f"{answer.error}{since}"
    workers = info.get("workers")
    return CongregationRow(address, str(info.get("congregation", "-")), up,
                           None if workers is None else len(workers),
                           None if workers is None else sum(int(w.get("jahs", 0)) for w in workers),
                           None if "tradecrafts" not in info else len(info["tradecrafts"]),
                           cpu_percent(answer), memory(info), note)


@dataclass(frozen=True)
class WorkerRow:
    worker: int
    pid: int | None
    jahs: int | None
    cpu: float | None
    memory: int | None


def worker_rows(answer: Answer) -> list[WorkerRow]:
    """Each worker describe reports, with its CPU and memory when it reports them."""
    return [WorkerRow(int(w["worker"]), w.get("pid"), w.get("jahs"), cpu_percent(answer, w.get("pid")),
                      memory(answer.info or {}, w.get("pid")))
            for w in (answer.info or {}).get("workers", [])]
