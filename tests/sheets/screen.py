"""Driving the Window Interface in a test: an App over a real congregation, keys fed to its top
widget, and the screen read back as text (the way mitmproxy tests its urwid console)."""
from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio

import hallelujah
from sheets.app import App, text

SIZES = [(80, 24), (160, 48)]


class Driver:
    def __init__(self, app: App) -> None:
        self.app = app

    def keys(self, *keys: str, size: tuple[int, int] = (80, 24)) -> None:
        for key in keys:
            self.app.widget.keypress(size, key)

    def command(self, line: str, *then: str) -> None:
        """Type `:` and `line`, then Enter (or the keys `then` names instead)."""
        self.keys(":", *line, *(then or ["enter"]))

    @property
    def message(self) -> str:
        """The message line, whole (on screen a long one wraps)."""
        return str(self.app.message.text)

    def screen(self, size: tuple[int, int] = (80, 24)) -> str:
        shown = text(self.app.widget, *size)
        lines = shown.split("\n")
        assert len(lines) == size[1] and all(len(line) <= size[0] for line in lines), shown
        return shown

    async def until(self, check: Callable[[str], bool], what: str, timeout: float = 15,
                    size: tuple[int, int] = (80, 24)) -> str:
        """The screen once `check(screen)` holds; fails naming `what` and showing the last screen."""
        shown = ""
        with trio.move_on_after(timeout):
            while True:
                shown = self.screen(size)
                if check(shown):
                    return shown
                await trio.sleep(0.05)
        raise AssertionError(f"the screen never showed {what} in {timeout}s; last screen:\n{shown}")


def line_of(shown: str, first: str) -> list[str] | None:
    """The words of the screen line whose first word is `first`, or None."""
    return next((words for words in map(str.split, shown.split("\n")) if words and words[0] == first), None)


def row(shown: str, first: str) -> list[str]:
    """The words of the screen line whose first word is `first` (fails when there is none)."""
    words = line_of(shown, first)
    if words is None:
        raise AssertionError(f"no line starting with {first!r} on the screen:\n{shown}")
    return words


@asynccontextmanager
async def driven(db: hallelujah.Database, read_only: bool = False, every: float = 0.2,
                 timeout: float = 2.0, **more: int) -> AsyncIterator[Driver]:
    app = App(db, read_only, every=every, timeout=timeout, **more)
    async with trio.open_nursery() as nursery:
        await nursery.start(app.run)
        yield Driver(app)
        nursery.cancel_scope.cancel()
