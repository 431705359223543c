"""The analytic screen: its schema and retained logs, what describe says of its scaling (a
dataset join's JOINs and their partitions, the datasets' versions, splits and merges with their
reasons), an aggregate's open windows (`query`), and the last rows of its output and of its
`rejected` rows with their reasons (both followed by the App while the screen is shown)."""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa
import trio

import hallelujah
from sheets import scaling, views
from sheets.feed import Feed, Tail
from sheets.widgets import Page, Screen

TAIL_ROWS = 10
WINDOW_ROWS = 50        # open windows shown at most (the page scrolls)


class Followed:
    """A retained log's last rows: how far it has been read, and why not when it cannot be."""

    def __init__(self, ref: str, keep: int = TAIL_ROWS) -> None:
        self.ref = ref
        self.tail = Tail(keep)
        self.how = "reading..."        # following, ended, or why it cannot be read
        self.skipped = 0               # rows before the follow began that were not read
        self.frozen: tuple[pa.Table | None, int] | None = None    # paused: the rows shown, and seen

    def pause(self, paused: bool) -> None:
        """Keep showing the rows of now (the log is still read), or show the last ones again."""
        self.frozen = (self.tail.table(), self.tail.seen) if paused else None

    def note(self) -> str:
        if self.how not in ("following", "ended"):
            return self.how
        seen = self.tail.seen if self.frozen is None else self.frozen[1]
        how = self.how if self.frozen is None else "paused, f follows again"
        shown = min(seen, self.tail.keep)
        if self.skipped:
            return f"{shown} of the rows since opened ({self.skipped:,} before not read), {how}"
        return f"{shown} of {seen:,}, {how}"

    def rows(self, first: Sequence[str] = ()) -> tuple[list[str], list[list[str]], list[bool]]:
        """Headers, cells and which columns are numbers, the `first` columns first."""
        tail = self.tail.table() if self.frozen is None else self.frozen[0]
        if tail is None or not tail.num_rows:
            return [], [], []
        names = [n for n in first if n in tail.column_names] + [n for n in tail.column_names if n not in first]
        return cells(tail.select(names))


def cells(table: pa.Table) -> tuple[list[str], list[list[str]], list[bool]]:
    """A table's column names, its values as text, and which columns are numbers."""
    kinds = [pa.types.is_integer(t) or pa.types.is_floating(t) for t in table.schema.types]
    return table.column_names, [[_show(v) for v in row.values()] for row in table.to_pylist()], kinds


def section(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]],
            numeric: Sequence[bool] | None = None, *, width: int) -> list[str]:
    """A titled block of the page: a blank line, the title, and its rows in columns, indented."""
    out = ["", title]
    if headers:
        out += ["  " + line for line in views.table_lines(headers, rows, width - 2, numeric)]
    return out


class AnalyticScreen(Screen):
    keys = (("j/k g/G", "scroll"), ("f", "pause following the last rows, or follow again"),
            ("c", "cancel the tradecraft"), ("E", "its event log"), ("Esc", "back to the tradecraft"))

    def __init__(self, tradecraft: str, analytic: str) -> None:
        self.tc, self.analytic = tradecraft, analytic
        self.info: dict[str, Any] | None = None          # the analytic, as describe says
        self.tc_info: dict[str, Any] = {}                # its tradecraft (scaling, events)
        self.output = Followed(self.ref)
        self.rejected = Followed(f"{self.ref}.rejected")
        self.windows: pa.Table | None = None             # an aggregate's open windows, last asked
        self.windows_how = "asking..."
        self.following = trio.CancelScope()              # the App's tasks for it, cancelled when left
        self.paused = False                              # `f`: the last rows shown stay as they are
        self.page = Page(self.lines)
        super().__init__(self.page)

    @property
    def crumb(self) -> str:            # type: ignore[override]
        """Its name in the breadcrumb, marked while its last rows are paused (seen at any scroll)."""
        return f"{self.analytic} [paused]" if self.paused else self.analytic

    @property
    def ref(self) -> str:
        return f"{self.tc}/{self.analytic}"

    def retained_rows(self, log: str) -> int | None:
        """Rows the retained log `log` of the analytic holds now (None when it keeps none)."""
        held = (self.info or {}).get("retained", {}).get(log)
        return None if held is None else int(held["rows"])

    def update(self, feed: Feed) -> None:
        self.tc_info = feed.tradecraft(self.tc) or {}
        self.info = views.find_analytic(self.tc_info, self.analytic)
        self.page.refresh()

    def tradecraft(self) -> str | None:
        return self.tc

    def leave(self) -> None:
        self.following.cancel()

    def keypress(self, size: tuple[int, int], key: str) -> str | None:
        if key != "f":
            return super().keypress(size, key)
        self.paused = not self.paused
        for followed in (self.output, self.rejected):
            followed.pause(self.paused)
        self.page.refresh()
        return None

    def lines(self, width: int) -> list[str]:
        a = self.info
        if a is None:
            return [f"{self.ref}: not in the congregation's answer"]
        out = [f"{self.ref}  {a['kind']}" + ("  (output)" if a.get("output") else "")]
        out += section("schema", ["field", "type"], views.schema_lines(a), width=width)
        out += section("retained", ["log", "rows", "ended"],
                       [(n, f"{r:,}", "yes" if e else "no") for n, r, e in views.retained_lines(a)],
                       [False, True, False], width=width)
        out += self.scaling_lines(a, width)
        if a["kind"] == "aggregate":
            out += self.window_lines(width)
        out += section(f"last rows of {self.ref} ({self.output.note()})", *self.output.rows(), width=width)
        if f"{self.analytic}.rejected" in a.get("retained", {}):
            out += section(f"rejected rows of {self.ref} ({self.rejected.note()})",
                           *self.rejected.rows(first=("reason", "rejected.reason")), width=width)
        return out

    def scaling_lines(self, a: dict[str, Any], width: int) -> list[str]:
        """A dataset join's JOINs, the datasets' versions and the splits and merges, when there are."""
        out: list[str] = []
        joins = scaling.join_rows(self.tc_info, a)
        if joins:
            out += section("JOINs (partitions of 256 each holds)",
                           ["jah", "wkr", "partitions", "rows in", "rows out", "held", "state"],
                           [(j.jah, j.worker, j.partitions, views.count(j.rows_in), views.count(j.rows_out),
                             views.count(j.held), j.state) for j in joins],
                           [False, False, False, True, True, True, False], width=width)
        datasets = [d["name"] for d in self.tc_info.get("analytics", []) if d.get("kind") == "ingest"]
        if joins or a["kind"] == "ingest":
            versions = scaling.version_rows(self.tc_info, [self.analytic] if a["kind"] == "ingest" else datasets)
            title = "versions loaded" if a["kind"] == "ingest" else "dataset versions (of the tradecraft's datasets)"
            out += section(title, ["at", "dataset", "version", "rows", "reason"],
                           [(views.clock(v.at), v.dataset, str(v.version), views.count(v.rows), v.reason)
                            for v in versions], [False, False, True, True, False], width=width)
        history = scaling.scaling_rows(self.tc_info, self.analytic)
        if history:
            out += section("scaling (splits and merges, with the reasons)",
                           ["at", "event", "jah", "partitions", "into (worker, partitions)", "reason"],
                           [(views.clock(s.at), s.kind, s.jahs, s.partitions, s.into, s.reason) for s in history],
                           width=width)
        return out

    def window_lines(self, width: int) -> list[str]:
        w = self.windows
        if w is None:
            return section(f"open windows ({self.windows_how})", [], [], width=width)
        more = f"first {WINDOW_ROWS} of {w.num_rows:,}" if w.num_rows > WINDOW_ROWS else f"{w.num_rows:,}"
        return section(f"open windows ({more}, {self.windows_how})", *cells(w.slice(0, WINDOW_ROWS)), width=width)


def _show(value: Any) -> str:
    return "null" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


class Follower:
    """The App's tasks for a shown analytic screen, through the library: its output's and its
    rejected rows' last rows followed as batches come, an aggregate's open windows asked each
    `every` seconds. All stop when the screen is left (its `following` scope)."""

    def __init__(self, db: hallelujah.Database, shown: Callable[[AnalyticScreen], None], *,
                 timeout: float, every: float, read_all: int) -> None:
        self.db, self.shown = db, shown
        self.timeout, self.every, self.read_all = timeout, every, read_all

    def start(self, nursery: trio.Nursery, screen: AnalyticScreen) -> None:
        """Start following what the analytic retains; what it does not retain says so at once."""
        logs = []
        for followed, log in ((screen.output, screen.analytic), (screen.rejected, f"{screen.analytic}.rejected")):
            rows = screen.retained_rows(log)
            if rows is None:
                followed.how = "it retains no output" if screen.info is not None else "not known yet"
            else:
                logs.append((followed, rows))
        screen.page.refresh()
        nursery.start_soon(self.run, screen, logs)

    async def run(self, screen: AnalyticScreen, logs: list[tuple[Followed, int]]) -> None:
        with screen.following:
            async with trio.open_nursery() as nursery:
                for followed, rows in logs:
                    nursery.start_soon(self.follow, screen, followed, rows)
                if screen.info is not None and screen.info["kind"] == "aggregate":
                    nursery.start_soon(self.windows, screen)

    async def follow(self, screen: AnalyticScreen, followed: Followed, rows: int) -> None:
        """One stream of a log: from its start when it is small enough to read whole
        (`read_all` rows), else from now; its last rows are kept and shown as batches come (at
        most 4 times a second, and with every refresh)."""
        followed.skipped = 0 if rows <= self.read_all else rows
        shown_at = -math.inf
        try:
            with trio.CancelScope(deadline=trio.current_time() + self.timeout * 2) as opening:
                async with self.db.stream(followed.ref, from_start=not followed.skipped) as batches:
                    opening.deadline = math.inf
                    followed.how = "following"
                    async for batch in batches:
                        followed.tail.add(batch)
                        if trio.current_time() - shown_at >= 0.25:
                            shown_at = trio.current_time()
                            self.shown(screen)
                    followed.how = "ended"
            if opening.cancelled_caught:
                followed.how = f"no answer in {self.timeout * 2:g}s"
        except (hallelujah.HallelujahError, EOFError, OSError) as exc:
            followed.how = f"cannot read: {exc or type(exc).__name__}"
        self.shown(screen)

    async def windows(self, screen: AnalyticScreen) -> None:
        """`db.query` of the aggregate, as `hallelujah query` asks it, once each `every` seconds."""
        while True:
            try:
                with trio.fail_after(self.timeout):
                    screen.windows = await self.db.query(screen.ref)
                screen.windows_how = f"at {views.clock(time.time())}"
            except trio.TooSlowError:
                screen.windows_how = f"no answer in {self.timeout:g}s"
            except (hallelujah.HallelujahError, OSError) as exc:
                screen.windows_how = f"cannot query: {exc}"
            self.shown(screen)
            await trio.sleep(self.every)
