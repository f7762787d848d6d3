"""A table that draws only the rows on screen (Line API), for lists of thousands of rows.

The owner hands down a :class:`Rows`: a row count and a function from a row index to its cells,
so a 1024-rank step's transfers cost nothing until they scroll into view. Textual's DataTable
would copy every cell into its own store on every step. The header stays put; the cursor row is
highlighted and reported up with :class:`VirtualTable.RowHighlighted`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.events import Click
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from .sizing import set_virtual_size


@dataclass(frozen=True)
class Column:
    title: str
    width: int
    right: bool = False  # right-align (numbers)


@dataclass(frozen=True)
class Rows:
    """``n`` rows; ``cells(i)`` gives row i's texts, ``style(i)`` an optional Rich style for it
    (a divergent step, an op of the current step)."""

    n: int = 0
    cells: Callable[[int], tuple[str, ...]] = lambda i: ()
    style: Callable[[int], str] = lambda i: ""


class VirtualTable(ScrollView, can_focus=True):
    """Columns fixed at construction; rows set by the owner through ``rows``."""

    DEFAULT_CSS = """
    VirtualTable { height: 1fr; overflow-x: hidden; }
    VirtualTable > .vt--header { text-style: bold; color: $text-accent; }
    VirtualTable > .vt--cursor { background: $block-cursor-blurred-background; }
    VirtualTable:focus > .vt--cursor { background: $block-cursor-background;
                                       color: $block-cursor-foreground; }
    """
    COMPONENT_CLASSES = {"vt--header", "vt--cursor"}
    BINDINGS = [
        Binding("up,k", "move(-1)", "row up", show=False),
        Binding("down,j", "move(1)", "row down", show=False),
        Binding("pageup", "move(-10)", "page up", show=False),
        Binding("pagedown", "move(10)", "page down", show=False),
    ]

    rows: reactive[Rows] = reactive(Rows, always_update=True)
    cursor: reactive[int] = reactive(0)

    class RowHighlighted(Message):
        """The user moved the cursor to row ``index``."""

        def __init__(self, table: "VirtualTable", index: int) -> None:
            super().__init__()
            self.table, self.index = table, index

        @property
        def control(self) -> "VirtualTable":
            return self.table

    def __init__(self, columns: list[Column], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.columns = columns
        self._width = sum(c.width + 1 for c in columns)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return self.rows.n + 1

    def watch_rows(self, rows: Rows) -> None:
        set_virtual_size(self, Size(self._width, rows.n + 1))  # a step's new row count: no re-layout
        if self.cursor >= rows.n:
            self.cursor = max(0, rows.n - 1)
        self.refresh()

    def watch_cursor(self, old: int, new: int) -> None:
        self.scroll_to_region(Region(0, new + 1, 1, 1), spacing=(1, 0, 0, 0), animate=False,
                              force=True)
        self.refresh()

    def show_row(self, index: int) -> None:
        """Move the cursor to ``index`` without reporting it (the owner chose it)."""
        self.cursor = max(0, min(index, self.rows.n - 1))

    def action_move(self, delta: int) -> None:
        if self.rows.n:
            self.cursor = max(0, min(self.cursor + delta, self.rows.n - 1))
            self.post_message(self.RowHighlighted(self, self.cursor))

    def _on_click(self, event: Click) -> None:
        at = event.get_content_offset(self)
        if at is None:
            return
        row = at.y - 1 + int(self.scroll_y)
        if at.y >= 1 and row < self.rows.n:
            self.cursor = row
            self.post_message(self.RowHighlighted(self, row))

    def _line(self, texts: tuple[str, ...], style: Style) -> list[Segment]:
        """One segment per row: a row has one style, and fewer segments draw faster."""
        out = []
        for col, text in zip(self.columns, texts):
            text = text if len(text) <= col.width else text[: col.width - 1] + "…"
            out.append((text.rjust if col.right else text.ljust)(col.width))
        return [Segment(" ".join(out) + " ", style)]

    def render_lines(self, crop: Region) -> list[Strip]:
        """Look the component styles up once per redraw, not once per line."""
        self._base = self.rich_style
        self._head = self.get_component_rich_style("vt--header")
        self._cursor = self.get_component_rich_style("vt--cursor")
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width, base = self.size.width, self._base
        if y == 0:
            segs = self._line(tuple(c.title for c in self.columns), self._head)
            return Strip(segs).crop_extend(scroll_x, scroll_x + width, base)
        row = y - 1 + scroll_y
        rows = self.rows
        if row >= rows.n:
            return Strip.blank(width, base)
        extra = rows.style(row)
        style = base + Style.parse(extra) if extra else base
        if row == self.cursor:
            style += self._cursor
        return Strip(self._line(rows.cells(row), style)).crop_extend(scroll_x, scroll_x + width,
                                                                    style)
