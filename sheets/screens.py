"""The screens of the Window Interface: tradecrafts -> a tradecraft's analytics and Jahs -> an
analytic; and the event log. Each is rebuilt from the Feed's latest answers by `update`."""
from __future__ import annotations

from typing import Any

import pyarrow as pa
import trio
import urwid

from sheets import views
from sheets.feed import HISTORY, Feed, Tail
from sheets.widgets import Page, Table

TAIL_ROWS = 10


class Screen(urwid.WidgetWrap):
    """What every screen answers: its name in the breadcrumb, its keys, where Enter goes, and
    which tradecraft `c` and `E` act on."""
    crumb = ""
    keys: tuple[tuple[str, str], ...] = ()
    table: Table | None = None          # the rows `/` filters, on screens that have them

    def update(self, feed: Feed) -> None:
        raise NotImplementedError

    def enter(self) -> Screen | None:
        return None

    def tradecraft(self) -> str | None:
        return None


class TradecraftsScreen(Screen):
    table: Table
    crumb = "tradecrafts"
    keys = (("Enter", "open the tradecraft"), ("c", "cancel the tradecraft"),
            ("E", "event log of every tradecraft"))

    def __init__(self) -> None:
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
        self.table = Table(["analytic / jah", "role", "wkr", "rows in", "rows out", "busy", "backlog",
                            "held", "state"], [False, False, False, True, True, True, True, True, False])
        super().__init__(urwid.Frame(self.table, header=self.head))

    def update(self, feed: Feed) -> None:
        self.head.set_text(summary(feed, self.name))
        tc = feed.tradecraft(self.name) or {}
        rows: list[tuple[Any, list[str]]] = []
        jahs = views.jah_rows(tc)
        for a in tc.get("analytics", []):
            rows.append(((a["name"], ""), [a["name"], a["kind"], "", "", "", "", "", "",
                                           "output" if a.get("output") else ""]))
            rows += [((j.analytic, j.jah), ["  " + j.jah, j.role, j.worker, views.count(j.rows_in),
                                            views.count(j.rows_out), "-" if j.busy is None else f"{j.busy:.2f}",
                                            views.count(j.backlog),
                                            views.count(j.held), j.state])
                     for j in jahs if j.analytic == a["name"]]
        self.table.set_rows(rows)

    def enter(self) -> Screen | None:
        key = self.table.focused()
        return AnalyticScreen(self.name, key[0]) if isinstance(key, tuple) else None

    def tradecraft(self) -> str | None:
        return self.name


class AnalyticScreen(Screen):
    """Schema, retained outputs with their rows, and the last rows of the output (followed
    through the library by the App while the screen is shown)."""
    keys = (("j/k g/G", "scroll"), ("c", "cancel the tradecraft"), ("E", "its event log"),
            ("Esc", "back to the tradecraft"))

    def __init__(self, tradecraft: str, analytic: str) -> None:
        self.tc, self.analytic = tradecraft, analytic
        self.crumb = analytic
        self.info: dict[str, Any] | None = None
        self.tail = Tail(TAIL_ROWS)             # the output's last rows, followed by the App
        self.following = trio.CancelScope()     # cancelled when the screen is left
        self.tail_how = "reading..."            # following, ended, or why it cannot
        self.tail_skipped = 0                   # rows before the follow began that were not read
        self.page = Page(self.lines)
        super().__init__(self.page)

    @property
    def ref(self) -> str:
        return f"{self.tc}/{self.analytic}"

    def output_rows(self) -> int | None:
        """Rows the analytic's own retained log holds (None when it keeps none)."""
        log = (self.info or {}).get("retained", {}).get(self.analytic)
        return None if log is None else int(log["rows"])

    def update(self, feed: Feed) -> None:
        self.info = views.find_analytic(feed.tradecraft(self.tc), self.analytic)
        self.page.refresh()

    def lines(self, width: int) -> list[str]:
        a = self.info
        if a is None:
            return [f"{self.ref}: not in the congregation's answer"]
        out = [f"{self.ref}  {a['kind']}" + ("  (output)" if a.get("output") else ""), "", "schema"]
        out += ["  " + line for line in views.table_lines(
            ["field", "type"], views.schema_lines(a), width - 2)]
        out += ["", "retained"]
        out += ["  " + line for line in views.table_lines(
            ["log", "rows", "ended"], [(n, f"{r:,}", "yes" if e else "no") for n, r, e in views.retained_lines(a)],
            width - 2, [False, True, False])]
        out += ["", f"last rows of {self.ref} ({self.tail_note()})"]
        tail = self.tail.table()
        if tail is not None and tail.num_rows:
            kinds = [pa.types.is_integer(t) or pa.types.is_floating(t) for t in tail.schema.types]
            out += ["  " + line for line in views.table_lines(
                tail.column_names, [[_show(v) for v in row.values()] for row in tail.to_pylist()],
                width - 2, kinds)]
        return out

    def tradecraft(self) -> str | None:
        return self.tc

    def tail_note(self) -> str:
        if self.tail_how not in ("following", "ended"):
            return self.tail_how
        shown = min(self.tail.seen, TAIL_ROWS)
        if self.tail_skipped:
            return f"{shown} of the rows since opened ({self.tail_skipped:,} before not read), {self.tail_how}"
        return f"{shown} of {self.tail.seen:,}, {self.tail_how}"


def _show(value: Any) -> str:
    return "null" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


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
