"""The Window Interface's state and keys: a stack of screens over one Feed, and the trio tasks
(refresh, reading an output's last rows, cancel) that run beside the screen so it never waits."""
from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
import trio
import urwid

import hallelujah
from sheets.feed import Feed
from sheets.screens import (
    AnalyticScreen,
    EventsScreen,
    Screen,
    TradecraftsScreen,
)
from sheets.widgets import dialog

log = structlog.get_logger("sheets")
PALETTE = [("header", "black", "light gray"), ("focus", "black", "light cyan"),
           ("status", "white", "dark blue"), ("alert", "white", "dark red")]
READ_ALL = 200_000      # an output up to this many rows is read from its start for its last rows
GLOBAL_KEYS = [("q", "quit"), ("?", "this help"), ("j/k", "down / up"), ("g/G", "first / last row"),
               ("/", "filter the rows (Enter keeps it, Esc drops it)"), ("Enter", "open"),
               ("Esc", "drop the filter, else back"), ("c", "cancel a tradecraft (asks first)"),
               ("E", "event log")]


class App:
    """Screens drilled into with Enter and left with Esc, a status line saying whether the
    congregation answers, and one line for the last message."""

    def __init__(self, db: hallelujah.Database, read_only: bool = False, *, every: float = 1.0,
                 timeout: float = 2.0, read_all: int = READ_ALL) -> None:
        self.db, self.read_only, self.every, self.timeout = db, read_only, every, timeout
        self.read_all = read_all
        self.feed = Feed(db, timeout)
        self.stack: list[Screen] = [TradecraftsScreen()]
        self.status = urwid.Text("", wrap="clip")
        self.crumbs = urwid.Text("", wrap="clip")
        self.message = urwid.Text("")          # wraps: a refusal is read whole
        self.overlay: urwid.Widget | None = None
        self.prompt: urwid.Edit | None = None        # the `/` filter being typed
        self.confirming: Callable[[], Awaitable[None]] | None = None
        self.status_bar = urwid.AttrMap(self.status, "status")
        self.frame: urwid.Frame = urwid.Frame(urwid.SolidFill(" "), header=urwid.Pile([self.status_bar, self.crumbs]),
                                              footer=self.message)
        self.widget = AppWidget(self)
        self.redraw: Callable[[], None] = lambda: None
        self.nursery: trio.Nursery | None = None
        self.show()

    @property
    def screen(self) -> Screen:
        return self.stack[-1]

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Own the background tasks until cancelled: the refresh loop, and whatever a screen starts."""
        async with trio.open_nursery() as self.nursery:
            self.nursery.start_soon(self.feed.run, self.changed, self.every)
            task_status.started()

    def changed(self) -> None:
        """New answers (or none): update the screen shown, then redraw."""
        self.screen.update(self.feed)
        self.show()
        self.redraw()

    def show(self) -> None:
        names = [s.crumb + (f" [/{s.table.filter}]" if s.table is not None and s.table.filter else "")
                 for s in self.stack]
        self.crumbs.set_text(" > ".join(names))
        self.status.set_text(self.status_text())
        self.status_bar.set_attr_map({None: "alert" if self.feed.error else "status"})
        self.frame.body = self.overlay if self.overlay is not None else self.screen

    def status_text(self) -> str:
        """Whether the congregation answers comes first, so a narrow terminal still shows it."""
        info = self.feed.info or {}
        parts = ["Hallelujah wi"]
        if self.feed.error:
            age = "" if self.feed.answered_at is None else \
                f" (last answer {trio.current_time() - self.feed.answered_at:.0f}s ago)"
            parts.append(f"unreachable{age}: {self.feed.error}")
        elif self.feed.answered_at is None:
            parts.append("connecting...")
        if self.read_only:
            parts.append("read-only")
        parts.append(",".join(self.db.addresses))
        if info:
            workers = len(info.get("workers", []))
            parts.append(f"congregation {info.get('congregation', '?')}, {workers} worker{'' if workers == 1 else 's'}")
        return "  |  ".join(parts)

    def say(self, text: str) -> None:
        self.message.set_text(text)

    def push(self, screen: Screen) -> None:
        self.stack.append(screen)
        screen.update(self.feed)
        self.show()
        self.follow_output()

    def pop(self) -> None:
        if len(self.stack) > 1:
            gone = self.stack.pop()
            if isinstance(gone, AnalyticScreen):
                gone.following.cancel()
            self.screen.update(self.feed)
            self.show()

    def keypress(self, size: tuple[int, int], key: str) -> str | None:
        if self.overlay is not None:
            self.dialog_key(key)
            return None
        if self.prompt is not None:
            self.prompt_key(size, key)
            return None
        if key == "q":
            raise urwid.ExitMainLoop()
        if key == "?":
            self.overlay = dialog(self.help_lines(), self.screen, "help (Esc closes)")
        elif key == "esc" and self.screen.table is not None and self.screen.table.filter:
            self.screen.table.set_filter("")
        elif key == "esc":
            self.pop()
        elif key == "/":
            self.ask_filter()
        elif key == "enter":
            target = self.screen.enter()
            if target is not None:
                self.push(target)
        elif key == "E":
            self.push(EventsScreen(self.screen.tradecraft() if len(self.stack) > 1 else None))
        elif key == "c":
            self.ask_cancel()
        else:
            return self.frame.keypress(size, key)
        self.show()
        return None

    def ask_filter(self) -> None:
        table = self.screen.table
        if table is None:
            self.say("nothing to filter here")
            return
        self.prompt = urwid.Edit("/", table.filter)
        self.prompt.set_edit_pos(len(table.filter))
        self.frame.footer = self.prompt

    def prompt_key(self, size: tuple[int, int], key: str) -> None:
        """Filter as the text is typed; Enter keeps it, Esc drops it."""
        assert self.prompt is not None and self.screen.table is not None
        if key in ("enter", "esc"):
            if key == "esc":
                self.screen.table.set_filter("")
            self.prompt = None
            self.frame.footer = self.message
        else:
            self.prompt.keypress((size[0],), key)
            self.screen.table.set_filter(self.prompt.edit_text)
        self.show()

    def dialog_key(self, key: str) -> None:
        action, self.confirming = self.confirming, None
        if action is not None and key == "y" and self.nursery is not None:
            self.nursery.start_soon(action)
        elif action is not None:
            self.say("not cancelled")
        self.overlay = None
        self.show()

    def help_lines(self) -> list[str]:
        lines = [f"{self.screen.crumb}:"] + [f"  {k:<8} {what}" for k, what in self.screen.keys]
        return lines + ["", "everywhere:"] + [f"  {k:<8} {what}" for k, what in GLOBAL_KEYS]

    def ask_cancel(self) -> None:
        name = self.screen.tradecraft()
        if name is None:
            self.say("no tradecraft here to cancel")
        elif self.read_only:
            self.say(f"read-only: cancel of {name} refused (started with --read-only)")
            log.warning("wi_refused", action="cancel", tradecraft=name, reason="read-only")
        else:
            self.confirming = lambda: self.cancel(name)
            self.overlay = dialog([f"Cancel tradecraft {name}?", "It stops, and its retained outputs are deleted.",
                                   "", "y: cancel it    any other key: keep it"],
                                  self.screen, "confirm", ("relative", 70), 6)

    async def cancel(self, name: str) -> None:
        """db.cancel, as `hallelujah cancel` does; the answer (or the refusal) goes to the message line."""
        self.say(f"cancelling {name}...")
        self.redraw()
        try:
            with trio.fail_after(self.timeout * 5):
                await self.db.cancel(name)
            self.say(f"cancelled {name}")
        except trio.TooSlowError:
            self.say(f"cancel {name}: no answer in {self.timeout * 5:g}s")
        except hallelujah.HallelujahError as exc:
            self.say(f"cancel {name} refused: {exc}")
        await self.feed.refresh()
        self.changed()

    def follow_output(self) -> None:
        """Follow the shown analytic's output in a task of its own, until the screen is left."""
        screen = self.screen
        if not isinstance(screen, AnalyticScreen) or self.nursery is None:
            return
        rows = screen.output_rows()
        if rows is None:
            screen.tail_how = "it retains no output" if screen.info is not None else "not known yet"
            self.show_tail(screen)
            return
        self.nursery.start_soon(self.watch_output, screen, rows)

    async def watch_output(self, screen: AnalyticScreen, rows: int) -> None:
        """One stream of the output: from its start when it is small enough to read whole
        (`read_all` rows), else from now; its last rows are kept and shown as batches come (at
        most 4 times a second, and with every refresh)."""
        screen.tail_skipped = 0 if rows <= self.read_all else rows
        shown_at = -math.inf
        with screen.following:
            try:
                with trio.CancelScope(deadline=trio.current_time() + self.timeout * 2) as opening:
                    async with self.db.stream(screen.ref, from_start=not screen.tail_skipped) as batches:
                        opening.deadline = math.inf
                        screen.tail_how = "following"
                        async for batch in batches:
                            screen.tail.add(batch)
                            if trio.current_time() - shown_at >= 0.25:
                                shown_at = trio.current_time()
                                self.show_tail(screen)
                        screen.tail_how = "ended"
                if opening.cancelled_caught:
                    screen.tail_how = f"no answer in {self.timeout * 2:g}s"
            except (hallelujah.HallelujahError, EOFError, OSError) as exc:
                screen.tail_how = f"cannot read: {exc or type(exc).__name__}"
            self.show_tail(screen)

    def show_tail(self, screen: AnalyticScreen) -> None:
        if screen is self.screen:
            screen.page.refresh()
            self.redraw()


class AppWidget(urwid.WidgetWrap):
    """The top widget: draws the App's frame and gives it every key first."""

    def __init__(self, app: App) -> None:
        self.app = app
        super().__init__(app.frame)

    def keypress(self, size: tuple[int, int], key: str) -> str | None:
        return self.app.keypress(size, key)


def text(widget: urwid.Widget, cols: int, rows: int) -> str:
    """What the terminal would show, as lines of text (how the screens are tested and captured)."""
    canvas = widget.render((cols, rows), focus=True)
    return "\n".join(line.decode("utf-8").rstrip() for line in canvas.text)
