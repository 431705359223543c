"""The Window Interface's state and keys: a stack of screens over one Feed, the `/` filter and
the `:` command line, confirmations, and the trio tasks (refresh, following an analytic, the
updates) that run beside the screen so it never waits."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
import trio
import urwid

import hallelujah
from sheets import command_line, updates
from sheets.analytic import AnalyticScreen, Follower
from sheets.command_line import CommandError
from sheets.feed import Feed
from sheets.screens import (
    CongregationsScreen,
    EventsScreen,
    TradecraftScreen,
    TradecraftsScreen,
)
from sheets.widgets import Screen, dialog

log = structlog.get_logger("sheets")
PALETTE = [("header", "black", "light gray"), ("focus", "black", "light cyan"),
           ("status", "white", "dark blue"), ("alert", "white", "dark red")]
READ_ALL = 200_000      # an output up to this many rows is read from its start for its last rows
GLOBAL_KEYS = [("q", "quit"), ("?", "this help (j/k scroll it)"), ("j/k", "down / up"),
               ("g/G", "first / last row"), ("/", "filter the rows (Enter keeps it, Esc drops it)"),
               (":", "a command (Tab completes)"), ("Enter", "open"), ("Esc", "drop the filter, else back"),
               ("c", "cancel a tradecraft (asks first)"), ("E", "event log"), ("mouse", "a click selects a row")]
SCROLL = {"j": "down", "k": "up", "down": "down", "up": "up", "page down": "page down", "page up": "page up"}


class App:
    """Screens drilled into with Enter and left with Esc (congregations > tradecrafts >
    a tradecraft > an analytic; it opens on the first congregation's tradecrafts), a status line
    saying whether the congregation answers, and one line for the last message."""

    def __init__(self, db: hallelujah.Database, read_only: bool = False, *, every: float = 1.0,
                 timeout: float = 2.0, read_all: int = READ_ALL) -> None:
        self.db, self.read_only, self.every, self.timeout = db, read_only, every, timeout
        self.feed = Feed(db, timeout)
        self.stack: list[Screen] = [CongregationsScreen(), TradecraftsScreen()]
        self.status = urwid.Text("", wrap="clip")
        self.crumbs = urwid.Text("", wrap="clip")
        self.message = urwid.Text("")          # wraps: a refusal is read whole
        self.message_bar = urwid.AttrMap(self.message, None)
        self.overlay: urwid.Widget | None = None
        self.prompt: urwid.Edit | None = None        # the `/` filter or the `:` command being typed
        self.prompt_kind = "filter"                  # which of the two
        self.confirming: Callable[[], Awaitable[None]] | None = None
        self.declined = ""                           # said when a confirmation is answered no
        self.status_bar = urwid.AttrMap(self.status, "status")
        self.frame: urwid.Frame = urwid.Frame(urwid.SolidFill(" "), header=urwid.Pile([self.status_bar, self.crumbs]),
                                              footer=self.message_bar)
        self.widget = AppWidget(self)
        self.redraw: Callable[[], None] = lambda: None
        self.nursery: trio.Nursery | None = None
        self.follower = Follower(db, self.show_page, timeout=timeout, every=every, read_all=read_all)
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
        parts.append(self.feed.current)
        if info:
            workers = len(info.get("workers", []))
            parts.append(f"congregation {info.get('congregation', '?')}, {workers} worker{'' if workers == 1 else 's'}")
        return "  |  ".join(parts)

    def say(self, text: str, alert: bool = False) -> None:
        """The message line: what an action did, or (in red) why it was refused."""
        self.message.set_text(text)
        self.message_bar.set_attr_map({None: "alert" if alert else None})

    def push(self, screen: Screen) -> None:
        if isinstance(screen, TradecraftsScreen) and screen.address is not None:
            self.feed.choose(screen.address)
        self.stack.append(screen)
        screen.update(self.feed)
        self.show()
        if isinstance(screen, AnalyticScreen) and self.nursery is not None:
            self.follower.start(self.nursery, screen)

    def pop(self) -> None:
        if len(self.stack) > 1:
            self.stack.pop().leave()
            self.screen.update(self.feed)
            self.show()

    def keypress(self, size: tuple[int, int], key: str) -> str | None:
        if self.overlay is not None:
            self.dialog_key(size, key)
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
        elif key == ":":
            self.ask("command", ":")
        elif key == "enter":
            target = self.screen.enter()
            if target is not None:
                self.push(target)
        elif key == "E":
            self.push(EventsScreen(None if isinstance(self.screen, TradecraftsScreen) else self.screen.tradecraft()))
        elif key == "c":
            self.ask_cancel(self.screen.tradecraft())
        else:
            unhandled = self.frame.keypress(size, key)
            self.show()                                # (a screen's own key, `f`, may change its crumb)
            return unhandled
        self.show()
        return None

    def mouse_event(self, size: tuple[int, int], event: str, button: int, col: int, row: int, focus: bool) -> bool:
        """A click selects the row under it (urwid's list does it); not while a question or a
        prompt waits for its answer."""
        if self.overlay is not None or self.prompt is not None:
            return True
        return bool(self.frame.mouse_event(size, event, button, col, row, focus))

    # --- the `/` filter and the `:` command line -------------------------------------------

    def ask(self, kind: str, caption: str, text: str = "") -> None:
        self.prompt = urwid.Edit(caption, text)
        self.prompt.set_edit_pos(len(text))
        self.prompt_kind = kind
        self.frame.footer = self.prompt if kind == "filter" else urwid.Pile([self.message_bar, self.prompt])

    def ask_filter(self) -> None:
        table = self.screen.table
        if table is None:
            self.say("nothing to filter here")
            return
        self.ask("filter", "/", table.filter)

    def prompt_key(self, size: tuple[int, int], key: str) -> None:
        """A filter applies as it is typed (Enter keeps it, Esc drops it); a command runs on
        Enter (Esc drops it, Tab completes its last word)."""
        assert self.prompt is not None
        table = self.screen.table
        if key in ("enter", "esc"):
            line, self.prompt = self.prompt.edit_text, None
            self.frame.footer = self.message_bar
            if self.prompt_kind == "filter" and key == "esc" and table is not None:
                table.set_filter("")
            elif self.prompt_kind == "command" and key == "enter":
                self.say("")
                self.run_command(line)
        elif key == "tab" and self.prompt_kind == "command":
            line, matches = command_line.complete(self.prompt.edit_text, self.choices)
            self.prompt.set_edit_text(line)
            self.prompt.set_edit_pos(len(line))
            self.say("  ".join(matches) if len(matches) > 1 else "")
        else:
            self.prompt.keypress((size[0],), key)
            if self.prompt_kind == "filter" and table is not None:
                table.set_filter(self.prompt.edit_text)
        self.show()

    def choices(self, kind: str, word: str) -> list[str]:
        if kind == "file":
            return command_line.files(word)
        return command_line.names(self.feed.info or {}, kind, word)

    def run_command(self, line: str) -> None:
        try:
            command = command_line.parse(line)
        except CommandError as exc:
            self.say(str(exc), alert=True)
            return
        name, args = command.name, command.args
        if name == "q":
            raise urwid.ExitMainLoop()
        if name == "tc":
            self.start(self.jump, args[0])
        elif name == "cancel":
            self.ask_cancel(args[0] if args else self.screen.tradecraft())
        elif name == "submit":
            self.ask_submit(args[0])
        elif name == "publish":
            self.start(self.ask_publish, *args)
        elif name in ("split", "merge", "reload", "congestion"):
            self.ask_change(name, args)

    def start(self, action: Callable[..., Awaitable[None]], *args: Any) -> None:
        if self.nursery is not None:
            self.nursery.start_soon(action, *args)

    async def jump(self, target: str) -> None:
        """`:tc NAME[/ANALYTIC]`: asked of the congregation (`describe`, as the CLI does), so a
        name it does not know is refused with the CLI's message, naming what exists."""
        name, _, analytic = target.partition("/")
        try:
            with trio.fail_after(self.timeout):
                await self.db.describe(target)
        except trio.TooSlowError:
            self.say(f":tc {target}: no answer in {self.timeout:g}s", alert=True)
        except (hallelujah.HallelujahError, OSError) as exc:
            self.say(f":tc {target}: {updates.said(exc)}", alert=True)
        else:
            await self.feed.refresh()           # (a tradecraft just submitted is in it)
            while len(self.stack) > 1 and not (len(self.stack) == 2 and isinstance(self.screen, TradecraftsScreen)):
                self.pop()
            if len(self.stack) == 1:
                self.push(TradecraftsScreen())
            self.push(TradecraftScreen(name))
            if analytic:
                self.push(AnalyticScreen(name, analytic))
        self.changed()

    # --- questions, and the updates they guard --------------------------------------------

    def confirm(self, lines: list[str], action: Callable[[], Awaitable[None]], declined: str) -> None:
        self.confirming, self.declined = action, declined
        self.overlay = dialog(lines, self.screen, "confirm", ("relative", 70), len(lines) + 2)
        self.show()
        self.redraw()

    def dialog_key(self, size: tuple[int, int], key: str) -> None:
        """y runs what was asked about, any other key keeps things as they are; help scrolls
        with j/k and closes with any other key."""
        if self.confirming is None and key in SCROLL and self.overlay is not None:
            self.overlay.keypress(size, SCROLL[key])
            return
        action, self.confirming = self.confirming, None
        if action is not None and key == "y":
            self.start(action)
        elif action is not None:
            self.say(self.declined)
        self.overlay = None
        self.show()

    def help_lines(self) -> list[str]:
        lines = [f"{self.screen.crumb}:"] + [f"  {k:<8} {what}" for k, what in self.screen.keys]
        lines += ["", "everywhere:"] + [f"  {k:<8} {what}" for k, what in GLOBAL_KEYS]
        return lines + ["", "commands:"] + [f"  {k:<26} {what}" for k, what in command_line.help_lines()]

    def refused(self, action: str, what: str, **about: str) -> bool:
        """In read-only mode every update is refused, saying so (and one log line)."""
        if self.read_only:
            self.say(f"read-only: {action} of {what} refused (started with --read-only)", alert=True)
            log.warning("wi_refused", action=action, reason="read-only", **about)
        return self.read_only

    def ask_cancel(self, name: str | None) -> None:
        if name is None:
            self.say("no tradecraft here to cancel")
        elif not self.refused("cancel", name, tradecraft=name):
            self.confirm([f"Cancel tradecraft {name}?", "It stops, and its retained outputs are deleted.",
                          "", "y: cancel it    any other key: keep it"],
                         lambda: self.act(f"cancel {name}", lambda: self.cancelled(name), self.timeout * 5),
                         "not cancelled")

    async def cancelled(self, name: str) -> str:
        await self.db.cancel(name)
        return f"cancelled {name}"

    def ask_submit(self, file: str) -> None:
        if self.refused("submit", file, file=file):
            return
        try:
            s = updates.read_submission(file)
        except (hallelujah.HallelujahError, OSError) as exc:
            self.say(f"submit {file} refused: {updates.said(exc)}", alert=True)
            return
        self.confirm([f"Submit tradecraft {s.name} ({s.analytics} analytics) from {file}?", "",
                      "y: submit it    any other key: do not"],
                     lambda: self.act(f"submit {file}", lambda: updates.submit(self.db, s), self.timeout * 5),
                     "not submitted")

    def ask_change(self, name: str, args: tuple[str, ...]) -> None:
        """`:split|:merge|:reload|:congestion`: asked first, then done as the CLI does it."""
        what = " ".join(args)
        if self.refused(name, what, args=what):
            return
        self.confirm([*updates.change_question(name, args), "", "y: do it    any other key: do not"],
                     lambda: self.act(f"{name} {what}", lambda: updates.change(self.db, name, args),
                                      self.timeout * 5),
                     f"{name} not done")

    async def ask_publish(self, stream: str, file: str, table: str | None = None) -> None:
        if self.refused("publish", f"{file} into {stream}", stream=stream, file=file):
            return
        try:
            with trio.fail_after(self.timeout):
                p = await updates.read_publication(self.db, stream, file, table)
        except trio.TooSlowError:
            self.say(f"publish {file}: no answer in {self.timeout:g}s", alert=True)
            return
        except (hallelujah.HallelujahError, OSError) as exc:
            self.say(f"publish {file} refused: {updates.said(exc)}", alert=True)
            return
        finally:
            self.redraw()
        rows = "" if p.total is None else f"{p.total:,} rows "
        self.confirm([f"Publish {rows}from {file} into {stream}?", "Rows acknowledged stay in the stream.", "",
                      "y: publish    any other key: do not"],
                     lambda: self.act(f"publish {file}", lambda: updates.publish(self.db, p, self.progress(p))),
                     "not published")

    def progress(self, p: updates.Publication) -> Callable[[int], None]:
        """Rows acknowledged so far, on the message line, drawn at most 4 times a second."""
        drawn = [-1.0]

        def acknowledged(rows: int) -> None:
            self.say(updates.progress_text(p, rows))
            if trio.current_time() - drawn[0] >= 0.25 or rows == p.total:
                drawn[0] = trio.current_time()
                self.redraw()
        return acknowledged

    async def act(self, what: str, doing: Callable[[], Awaitable[str]], seconds: float | None = None) -> None:
        """Do one confirmed update through the library; what it did, or why it was refused (the
        CLI's message), goes to the message line. A bug of ours is said and logged, and the
        screen stays up."""
        self.say(f"{what}...")
        self.redraw()
        try:
            with trio.fail_after(seconds) if seconds is not None else trio.CancelScope():
                self.say(await doing())
        except trio.TooSlowError:
            self.say(f"{what}: no answer in {seconds:g}s", alert=True)
        except (hallelujah.HallelujahError, OSError) as exc:
            self.say(f"{what} refused: {updates.said(exc)}", alert=True)
        except Exception as exc:        # (the screen must stay up)
            log.exception("wi_action_failed", action=what)
            self.say(f"{what} failed: {type(exc).__name__}: {exc}", alert=True)
        await self.feed.refresh()
        self.changed()

    def show_page(self, screen: AnalyticScreen) -> None:
        if screen is self.screen:
            screen.page.refresh()
            self.redraw()


class AppWidget(urwid.WidgetWrap):
    """The top widget: draws the App's frame and gives it every key and click first."""

    def __init__(self, app: App) -> None:
        self.app = app
        super().__init__(app.frame)

    def keypress(self, size: tuple[int, int], key: str) -> str | None:
        return self.app.keypress(size, key)

    def mouse_event(self, size: tuple[int, int], event: str, button: int, col: int, row: int, focus: bool) -> bool:
        return self.app.mouse_event(size, event, button, col, row, focus)


def text(widget: urwid.Widget, cols: int, rows: int) -> str:
    """What the terminal would show, as lines of text (how the screens are tested and captured)."""
    canvas = widget.render((cols, rows), focus=True)
    return "\n".join(line.decode("utf-8").rstrip() for line in canvas.text)
