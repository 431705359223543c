"""Small urwid widgets the screens share: what every screen answers, a table laid out to the
width it is drawn at, and a scrolling page of lines."""
from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any

import urwid

from sheets import views

if TYPE_CHECKING:
    from sheets.feed import Feed

MOVES = {"j": "down", "k": "up"}


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

    def leave(self) -> None:
        """Left for good (Esc): stop what runs for it."""


class Line(urwid.Text):
    """A row that can take the focus (so the list shows where the cursor is)."""
    _selectable = True

    def keypress(self, size: tuple[int], key: str) -> str:
        return key


def _jump(listbox: urwid.ListBox, key: str) -> str | None:
    """j/k move as the arrows do, g/G go to the first and last row; other keys are returned."""
    if not listbox.body:
        return key if key not in (*MOVES, "g", "G") else None
    if key == "g":
        listbox.set_focus(0)
        return None
    if key == "G":
        listbox.set_focus(len(listbox.body) - 1)
        return None
    return MOVES.get(key, key)


class Sized(urwid.WidgetWrap):
    """A list laid out again (`layout(width)`) whenever the width it is drawn at changes; j/k g/G move."""
    listbox: urwid.ListBox
    width = 80

    def layout(self, width: int) -> None:
        raise NotImplementedError

    def render(self, size: tuple[int, int], focus: bool = False) -> urwid.Canvas:
        if size[0] != self.width:
            self.layout(size[0])
        return super().render(size, focus)

    def keypress(self, size: tuple[int, int], key: str) -> str | None:
        move = _jump(self.listbox, key)
        return None if move is None else super().keypress(size, move)


class Table(Sized):
    """A header and selectable rows laid out in columns."""

    def __init__(self, headers: Sequence[str], numeric: Sequence[bool], optional: Sequence[int] = ()) -> None:
        """`optional`: the columns left out, in this order, while the rows do not fit the width."""
        self.headers, self.numeric, self.optional = list(headers), list(numeric), list(optional)
        self.keys: list[Hashable] = []
        self.cells: list[list[str]] = []
        self.all_rows: list[tuple[Hashable, Sequence[str]]] = []
        self.filter = ""
        self.header = urwid.Text("", wrap="clip")
        self.walker: urwid.SimpleFocusListWalker[urwid.Widget] = urwid.SimpleFocusListWalker([])
        self.listbox = urwid.ListBox(self.walker)
        super().__init__(urwid.Frame(self.listbox, header=urwid.AttrMap(self.header, "header")))

    def focused(self) -> Hashable | None:
        if not self.walker:
            return None
        return self.keys[self.listbox.focus_position]

    def set_rows(self, rows: Sequence[tuple[Hashable, Sequence[str]]]) -> None:
        """Replace the rows, keeping the cursor on the same key (or as near as there is); only
        rows with the filter's text in a cell (any case) are shown."""
        self.all_rows = list(rows)
        keep, index = self.focused(), self.listbox.focus_position if self.walker else 0
        shown = [(k, c) for k, c in rows if not self.filter or any(self.filter in cell.lower() for cell in c)]
        self.keys = [k for k, _ in shown]
        self.cells = [list(c) for _, c in shown]
        self.layout(self.width)
        if self.walker:
            at = self.keys.index(keep) if keep in self.keys else min(index, len(self.walker) - 1)
            self.listbox.set_focus(at)

    def set_filter(self, text: str) -> None:
        self.filter = text.lower()
        self.set_rows(self.all_rows)

    def layout(self, width: int) -> None:
        self.width = width
        lines = views.table_lines(self.headers, self.cells, width, self.numeric, self.optional)
        self.header.set_text(lines[0])
        index = self.listbox.focus_position if self.walker else 0
        self.walker[:] = [urwid.AttrMap(Line(line, wrap="clip"), None, focus_map="focus") for line in lines[1:]]
        if self.walker:
            self.listbox.set_focus(min(index, len(self.walker) - 1))



class Page(Sized):
    """Lines of text made for the width they are drawn at (`make(width)`), scrolled with j/k g/G."""

    def __init__(self, make: Callable[[int], list[str]]) -> None:
        self.make = make
        self.walker: urwid.SimpleFocusListWalker[urwid.Widget] = urwid.SimpleFocusListWalker([])
        self.listbox = urwid.ListBox(self.walker)
        super().__init__(self.listbox)

    def refresh(self, width: int | None = None) -> None:
        self.width = width or self.width
        index = self.listbox.focus_position if self.walker else 0
        self.walker[:] = [Line(line, wrap="clip") for line in self.make(self.width)]
        if self.walker:
            self.listbox.set_focus(min(index, len(self.walker) - 1))

    def layout(self, width: int) -> None:
        self.refresh(width)


def dialog(lines: Sequence[str], under: urwid.Widget, title: str, width: Any = ("relative", 80),
           height: Any = ("relative", 80)) -> urwid.Overlay:
    """A framed box of text over another widget (help, a confirmation)."""
    body = urwid.ListBox(urwid.SimpleFocusListWalker([urwid.Text(line) for line in lines]))
    return urwid.Overlay(urwid.LineBox(body, title=title), under, "center", width, "middle", height)
