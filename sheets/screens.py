"""The screens of the Window Interface: tradecrafts -> a tradecraft's analytics and Jahs -> an
analytic; and the event log. Each is rebuilt from the Feed's latest answers by `update`."""
from __future__ import annotations

import time
from typing import Any

import trio
import urwid

from sheets import views
from sheets.analytic import AnalyticScreen
from sheets.congregations import congregation_row, percent, size, worker_rows
from sheets.feed import HISTORY, Feed
from sheets.widgets import Screen, Table


class CongregationsScreen(Screen):
    """Each congregation given (--at), up or down, its workers with their CPU and memory."""
    table: Table
    crumb = "congregations"
    keys = (("Enter", "its tradecrafts"), ("E", "event log of every tradecraft"))

    def __init__(self) -> None:
        self.table = Table(["congregation", "address", "state", "workers", "jahs", "tcs", "cpu", "memory", "why"],
                           [False, False, False, True, True, True, True, True, False])
        super().__init__(self.table)

    def update(self, feed: Feed) -> None:
        rows: list[tuple[Any, list[str]]] = []
        for address in feed.addresses:
            answer = feed.answers[address]
            c = congregation_row(address, answer, trio.current_time())
            rows.append((address, [c.name, c.address, c.up, views.count(c.workers), views.count(c.jahs),
                                   views.count(c.tradecrafts), percent(c.cpu), size(c.memory), c.note]))
            rows += [((address, w.worker), [f"  worker {w.worker}", str(w.pid or "-"), "", "", views.count(w.jahs),
                                            "", percent(w.cpu), size(w.memory), ""])
                     for w in worker_rows(answer)]
        self.table.set_rows(rows)

    def enter(self) -> Screen | None:
        key = self.table.focused()
        if key is None:
            return None
        return TradecraftsScreen(str(key[0] if isinstance(key, tuple) else key))


class TradecraftsScreen(Screen):
    """The tradecrafts as the congregation at `address` answers (the first one given when None)."""
    table: Table
    crumb = "tradecrafts"
    keys = (("Enter", "open the tradecraft"), ("c", "cancel the tradecraft"),
            ("E", "event log of every tradecraft"), ("Esc", "the congregations"))

    def __init__(self, address: str | None = None) -> None:
        self.address = address
        self.table = Table(["tradecraft", "state", "rows in", "in/s", "rows out", "out/s", "stalled / error"],
                           [False, False, True, True, True, True, False])
        super().__init__(self.table)

    def update(self, feed: Feed) -> None:
        self.table.set_rows([(r.name, [r.name, r.state, views.count(r.rows_in), views.per_second(r.in_rate),
                                       views.count(r.rows_out), views.per_second(r.out_rate), r.note])
                             for r in feed.rows])

    def enter(self) -> Screen | None:
        name = self.table.focused()
        return TradecraftScreen(str(name)) if name is not None else None

    def tradecraft(self) -> str | None:
        name = self.table.focused()
        return str(name) if name is not None else None


def summary(feed: Feed, name: str) -> str:
    """A tradecraft's state, totals and rates, why it is stalled or failed, and its rates of
    the last minute as sparklines."""
    row = next((r for r in feed.rows if r.name == name), None)
    if row is None:
        return f"{name}: not in the congregation's answer (cancelled, or not known yet)"
    head = (f"{name}  {row.state}  in {views.count(row.rows_in)} ({views.per_second(row.in_rate)})"
            f"  out {views.count(row.rows_out)} ({views.per_second(row.out_rate)})"
            + (f"  {row.note}" if row.note else ""))
    history = list(feed.history.get(name, ()))
    lines = [head]
    for label, rates in (("in ", [i for i, _ in history]), ("out", [o for _, o in history])):
        top = max((r for r in rates if r is not None), default=None)
        lines.append(f"{label} {views.sparkline(rates):<{HISTORY}} max {views.per_second(top)}")
    return "\n".join(lines)


class TradecraftScreen(Screen):
    table: Table
    keys = (("Enter", "open the analytic"), ("c", "cancel this tradecraft"), ("E", "its event log"),
            ("Esc", "back to the tradecrafts"))

    def __init__(self, name: str) -> None:
        self.name = self.crumb = name
        self.head = urwid.Text("")              # wraps: a failed tradecraft's whole reason is read here
        # at 80 columns the role (a Jah's name says it), the rows held, busy, then the worker are left out
        self.table = Table(["analytic / jah", "role", "wkr", "rows in", "rows out", "busy", "backlog",
                            "held", "in flight", "wm lag", "state"],
                           [False, False, False, True, True, True, True, True, True, True, False], optional=[1, 7, 5, 2])
        super().__init__(urwid.Frame(self.table, header=self.head))

    def update(self, feed: Feed) -> None:
        tc = feed.tradecraft(self.name) or {}
        checkpoint = views.checkpoint_line(tc.get("checkpoints"), self.name, size)
        self.head.set_text(summary(feed, self.name) + (f"\n{checkpoint}" if checkpoint else ""))
        rows: list[tuple[Any, list[str]]] = []
        jahs, now = views.jah_rows(tc), time.time()
        for a in tc.get("analytics", []):
            rows.append(((a["name"], ""), [a["name"], a["kind"], "", "", "", "", "", "", "", "",
                                           "output" if a.get("output") else ""]))
            rows += [((j.analytic, j.jah), ["  " + j.jah, j.role, j.worker, views.count(j.rows_in),
                                            views.count(j.rows_out), "-" if j.busy is None else f"{j.busy:.2f}",
                                            views.count(j.backlog), views.count(j.held), views.credits(j),
                                            views.watermark_lag(j.watermark, now), j.state])
                     for j in jahs if j.analytic == a["name"]]
        self.table.set_rows(rows)

    def enter(self) -> Screen | None:
        key = self.table.focused()
        return AnalyticScreen(self.name, key[0]) if isinstance(key, tuple) else None

    def tradecraft(self) -> str | None:
        return self.name


class EventsScreen(Screen):
    """describe's events (splits, merges, restarts, congestion, versions), oldest first."""
    table: Table
    keys = (("j/k g/G", "scroll"), ("Esc", "back"))

    def __init__(self, tradecraft: str | None) -> None:
        self.only = tradecraft
        self.crumb = "events"
        self.table = Table(["at", "tradecraft", "event", "details"], [False, False, False, False])
        super().__init__(self.table)

    def update(self, feed: Feed) -> None:
        tcs = (feed.info or {}).get("tradecrafts", [])
        lines = views.event_lines([tc for tc in tcs if self.only in (None, tc["name"])])
        self.table.set_rows([(i, [views.clock(at), name, kind, detail])
                             for i, (at, name, kind, detail) in enumerate(lines)])

    def tradecraft(self) -> str | None:
        return self.only
