"""The Window Interface's state and keys: a stack of screens over one Feed, and the trio tasks
(refresh, reading an output's last rows, cancel) that run beside the screen so it never waits."""
from __future__ import annotations

from typing import Any, Awaitable, Callable

import structlog
import trio
import urwid

import hallelujah
from sheets import feed as feeds
from sheets.feed import Feed
from sheets.screens import TAIL_ROWS, AnalyticScreen, EventsScreen, Screen, TradecraftsScreen
from sheets.widgets import dialog

log = structlog.get_logger("sheets")
PALETTE = [("header", "black", "light gray"), ("focus", "black", "light cyan"),
           ("status", "white", "dark blue"), ("alert", "white", "dark red")]
GLOBAL_KEYS = [("q", "quit"), ("?", "this help"), ("j/k", "down / up"), ("g/G", "first / last row"),
               ("Enter", "open"), ("Esc", "back"), ("c", "cancel a tradecraft (asks first)"),
               ("E", "event log")]


class App:
    """Screens drilled into with Enter and left with Esc, a status line saying whether the
    congregation answers, and one line for the last message."""

    def __init__(self, db: hallelujah.Database, read_only: bool = False, *, every: float = 1.0,
                 timeout: float = 2.0) -> None:
        self.db, self.read_only, self.every, self.timeout = db, read_only, every, timeout
        self.feed = Feed(db, timeout)
        self.stack: list[Screen] = [TradecraftsScreen()]
        self.status = urwid.Text("", wrap="clip")
        self.crumbs = urwid.Text("", wrap="clip")
        self.message = urwid.Text("", wrap="clip")
        self.overlay: urwid.Widget | None = None
        self.confirming: Callable[[], Awaitable[None]] | None = None
        self.status_bar = urwid.AttrMap(self.status, "status")
        self.frame: urwid.Frame = urwid.Frame(urwid.SolidFill(" "), header=urwid.Pile([self.status_bar, self.crumbs]),
                                              footer=self.message)
        self.widget = AppWidget(self)
        self.redraw: Callable[[], None] = lambda: None
        self.nursery: trio.Nursery | None = None
        self._tail_scope: trio.CancelScope | None = None
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
        self.follow_tail()
        self.redraw()

    def show(self) -> None:
        names = [s.crumb for s in self.stack]
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
            parts.append(f"congregation {info.get('congregation', '?')}, {len(info.get('workers', []))} workers")
        return "  |  ".join(parts)

    def say(self, text: str) -> None:
        self.message.set_text(text)

    def push(self, screen: Screen) -> None:
        self.stack.append(screen)
        screen.update(self.feed)
        self.show()
        self.follow_tail()

    def pop(self) -> None:
        if len(self.stack) > 1:
            self.stack.pop()
            if self._tail_scope is not None:
                self._tail_scope.cancel()
            self.screen.update(self.feed)
            self.show()

    def keypress(self, size: tuple[int, int], key: str) -> str | None:
        if self.overlay is not None:
            self.dialog_key(key)
            return None
        if key == "q":
            raise urwid.ExitMainLoop()
        if key == "?":
            self.overlay = dialog(self.help_lines(), self.screen, "help (Esc closes)")
        elif key == "esc":
            self.pop()
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
            self.overlay = dialog([f"Cancel tradecraft {name}?", "", "y: cancel it    any other key: keep it"],
                                  self.screen, "confirm", ("relative", 60), 5)

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

    def follow_tail(self) -> None:
        """Read the last rows of the shown analytic's output when it has grown since the last read."""
        screen = self.screen
        if self._tail_scope is not None or not isinstance(screen, AnalyticScreen) or self.nursery is None:
            return
        rows = screen.output_rows()
        if rows is None:
            screen.tail_note = "it retains no output" if screen.info is not None else ""
        elif rows != screen.tail_of:
            self._tail_scope = trio.CancelScope()
            self.nursery.start_soon(self.read_tail, screen, rows, self._tail_scope)

    async def read_tail(self, screen: AnalyticScreen, rows: int, scope: trio.CancelScope) -> None:
        try:
            with scope, trio.fail_after(self.timeout * 2):
                screen.tail = await feeds.tail(self.db, screen.ref, rows, TAIL_ROWS)
                screen.tail_of, screen.tail_note = rows, f"{min(rows, TAIL_ROWS)} of {rows:,}"
        except trio.TooSlowError:
            screen.tail_note = f"no answer in {self.timeout * 2:g}s"
        except hallelujah.HallelujahError as exc:
            screen.tail_note = f"cannot read: {exc}"
        finally:
            self._tail_scope = None
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
