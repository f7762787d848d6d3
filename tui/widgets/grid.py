"""The provenance grid: ranks down, segments of one buffer across (buffer 0, or the one the
replay shows: ``b`` cycles a program's data buffers), drawn with the Line API.

Three zoom levels, picked to fit (``auto``) or by the user (``z`` cycles):
- ``sets``: each cell spells its contribution set (``{0,2,3}``, ``all``), as the CLI prints it;
- ``bars``: each cell is one glyph whose height and colour grow with its number of contributions;
- ``heat``: a zoomed-out summary when even bars do not fit: each character is a block of ranks x
  segments, coloured by their mean contribution count (a heat map). A block that holds a changed
  cell is yellow.
Only the rows and columns on screen are drawn, so a 1024 x 1024 grid costs what a screenful does.
Cells the current step changed stand out (dark on yellow); the selected cell is reversed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.events import Click, Resize
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from .sizing import set_virtual_size

ZOOMS = ("auto", "sets", "bars", "heat")
GLYPHS = " ▁▂▃▄▅▆▇█"
HEAT = "█"
# dark blue (one contribution) to green (all of them): a count reads as "how reduced"
PALETTE = ("#4c6a92", "#4f7fa0", "#4a93a6", "#43a5a0", "#4db88f", "#6ac77a", "#8fd35f", "#b5dc4a")
MAX_SET_WIDTH = 13
MEASURE_CELLS = 1024  # grids up to this many cells have their set texts measured every step
FIT_ROWS = 16  # ranks shown whole before auto zooms out; heat maps use as many block rows


@dataclass(frozen=True)
class GridState:
    """What the grid shows: ``counts[r, s]`` contributions of segment s on rank r (out of
    ``nranks``), the cells the current step changed, and ``text(r, s)`` for a cell's set."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    changed: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    text: Callable[[int, int], str] = lambda r, s: ""

    @property
    def nranks(self) -> int:
        return int(self.counts.shape[0])

    @property
    def nseg(self) -> int:
        return int(self.counts.shape[1])


_CHANGED = Style(bold=True, color="#1c1c1c", bgcolor="#ffd75f")  # dark on yellow: unmissable
_EMPTY = Style(color="#5f5f5f")


def _levels(counts: np.ndarray, n: int) -> np.ndarray:
    """Glyph level 0..8 of contribution counts out of ``n``: 0 only for none at all."""
    return np.ceil(np.asarray(counts) * 8 / max(n, 1)).astype(np.int64)


def _level_style(level: int) -> Style:
    return _EMPTY if level <= 0 else Style(color=PALETTE[level - 1])


class ProvenanceGrid(ScrollView, can_focus=True):
    """Rank x segment cells of one buffer; the owner sets ``state``, the user moves ``cursor``."""

    DEFAULT_CSS = "ProvenanceGrid { height: auto; }"
    BINDINGS = [
        Binding("up,k", "move(-1, 0)", "rank up", show=False),
        Binding("down,j", "move(1, 0)", "rank down", show=False),
        Binding("h,left_square_bracket", "move(0, -1)", "segment left", show=False),
        Binding("l,right_square_bracket", "move(0, 1)", "segment right", show=False),
    ]

    state: reactive[GridState] = reactive(GridState, always_update=True)
    cursor: reactive[tuple[int, int]] = reactive((0, 0))
    zoom: reactive[str] = reactive("auto")

    class CellSelected(Message):
        """The user picked segment ``seg`` on ``rank``."""

        def __init__(self, grid: "ProvenanceGrid", rank: int, seg: int) -> None:
            super().__init__()
            self.grid, self.rank, self.seg = grid, rank, seg

        @property
        def control(self) -> "ProvenanceGrid":
            return self.grid

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._mode = "sets"
        self._cell = 1          # characters per cell (glyph + gap) in sets/bars
        self._block = (1, 1)    # ranks x segments per glyph in heat
        self._heat: np.ndarray | None = None
        self._heat_level = np.zeros((0, 0), np.int64)
        self._styles: dict = {}
        self._heat_changed: set[tuple[int, int]] = set()
        self._changed: set[tuple[int, int]] = set()
        self._height = 0
        self._shape = (0, 0)
        self._widest = 3
        self._texts: dict[tuple[int, int], str] = {}
        self._titles: tuple[str, ...] = ()

    TITLE_MARGIN = 6  # a border title's corners, rules and spaces

    def set_titles(self, *titles: str) -> None:
        """Titles, longest first: the border shows the first that fits the grid's width (the
        last when none does), chosen again when the grid is resized."""
        self._titles = titles
        self._fit_title()

    def _fit_title(self) -> None:
        room = self.outer_size.width - self.TITLE_MARGIN
        if self._titles:
            self.border_title = next((t for t in self._titles if len(t) <= room), self._titles[-1])

    # -- layout ----------------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        """The zoom level in effect: ``sets``, ``bars`` or ``heat``."""
        return self._mode

    @property
    def _label_w(self) -> int:
        n = max(self.state.nranks, 1)
        return len(f"r{n - 1}-{n - 1}") + 1 if self._mode == "heat" else len(f"r{n - 1}") + 1

    def _measure_sets(self) -> int:
        """The width of a ``sets`` cell: the longest set text so far, as the CLI sizes its grid.

        Columns only widen while the same grid is shown (no jitter, and ``auto`` switches to
        bars at most once); grids too big to measure every step get the widest width.
        """
        st = self.state
        shape = (st.nranks, st.nseg)
        if shape != self._shape:
            self._shape, self._widest = shape, 3
        if st.nranks * st.nseg > MEASURE_CELLS:
            return MAX_SET_WIDTH
        for r in range(st.nranks):
            for s in range(st.nseg):
                self._texts[r, s] = text = st.text(r, s)
                self._widest = max(self._widest, len(text))
        return min(MAX_SET_WIDTH, self._widest)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return self.virtual_size.height

    def _relayout(self) -> None:
        """Pick the zoom level and the size of a heat block. The grid's height follows its rows
        (up to what its container allows), so whether the ranks fit is judged against
        :data:`FIT_ROWS`, not against a height that depends on the choice."""
        st, w = self.state, self.scrollable_content_region.width
        n, m = st.nranks, st.nseg
        self._texts = {}
        label = len(f"r{max(n - 1, 0)}") + 1
        mode = self.zoom
        could_be_sets = mode == "sets" or (mode == "auto" and n <= FIT_ROWS)
        width = self._measure_sets() if could_be_sets else MAX_SET_WIDTH
        if mode == "auto":
            mode = ("sets" if label + m * (width + 1) <= w and n <= FIT_ROWS else
                    "bars" if label + 2 * m <= w and n <= FIT_ROWS else "heat")
        self._mode = mode
        self.border_subtitle = f"{mode} · yellow = changed by the step · z zoom"
        if mode == "heat":
            avail_w = max(1, w - self._label_w)
            self._block = (max(1, -(-n // FIT_ROWS)), max(1, -(-m // avail_w)))
            self._heat = self._aggregate()
            self._heat_level = _levels(self._heat, 1)
            set_virtual_size(self, Size(self._label_w + self._heat.shape[1], self._heat.shape[0] + 1))
        else:
            self._cell = width + 1 if mode == "sets" else 2
            self._heat = None
            set_virtual_size(self, Size(self._label_w + m * self._cell, n + 1))
        if self.virtual_size.height != self._height:  # the container must make room
            self._height = self.virtual_size.height
            self.refresh(layout=True)
        ch = st.changed
        self._changed = set(zip(ch[:, 0].tolist(), ch[:, 1].tolist()))
        rb, cb = self._block
        self._heat_changed = set(zip((ch[:, 0] // rb).tolist(), (ch[:, 1] // cb).tolist()))

    def _aggregate(self) -> np.ndarray:
        """Mean contribution fraction per block of ranks x segments."""
        st = self.state
        if not st.counts.size:
            return np.zeros((0, 0))
        rb, cb = self._block
        # columns first: reducing the contiguous axis first is 10x faster at 1024 x 1024
        cols = np.add.reduceat(st.counts, np.arange(0, st.nseg, cb), axis=1)
        blocks = np.add.reduceat(cols, np.arange(0, st.nranks, rb), axis=0)
        nr = np.diff(np.append(np.arange(0, st.nranks, rb), st.nranks))
        nc = np.diff(np.append(np.arange(0, st.nseg, cb), st.nseg))
        return blocks / np.outer(nr, nc) / max(st.nranks, 1)

    def watch_state(self) -> None:
        self._relayout()
        self.refresh()

    def watch_zoom(self) -> None:
        self._relayout()
        self.refresh()

    def _on_resize(self, event: Resize) -> None:
        self._relayout()
        self._fit_title()

    def watch_cursor(self, cursor: tuple[int, int]) -> None:
        r, s = cursor
        if self._mode == "heat":
            rb, cb = self._block
            region = Region(self._label_w + s // cb, r // rb + 1, 1, 1)
        else:
            region = Region(self._label_w + s * self._cell, r + 1, self._cell, 1)
        self.scroll_to_region(region, spacing=(1, 0, 0, self._label_w), animate=False, force=True)
        self.refresh()

    # -- input -----------------------------------------------------------------------------------
    def action_move(self, dr: int, ds: int) -> None:
        st = self.state
        if not st.counts.size:
            return
        rb, cb = self._block if self._mode == "heat" else (1, 1)
        r = max(0, min(self.cursor[0] + dr * rb, st.nranks - 1))
        s = max(0, min(self.cursor[1] + ds * cb, st.nseg - 1))
        self.cursor = (r, s)
        self.post_message(self.CellSelected(self, r, s))

    def _on_click(self, event: Click) -> None:
        """The cell under the mouse, from the click's place and the scroll offset."""
        at = event.get_content_offset(self)
        if at is None:
            return
        st, x, y = self.state, at.x + int(self.scroll_x) - self._label_w, at.y
        if y < 1 or x < 0 or not st.counts.size:
            return
        row = y - 1 + int(self.scroll_y)
        if self._mode == "heat":
            rb, cb = self._block
            cell = (row * rb, x * cb)
        else:
            cell = (row, x // self._cell)
        if cell[0] < st.nranks and cell[1] < st.nseg:
            self.cursor = cell
            self.post_message(self.CellSelected(self, *cell))

    # -- drawing ---------------------------------------------------------------------------------
    def render_lines(self, crop: Region) -> list[Strip]:
        """Build the styles once per redraw: Style arithmetic per cell would cost more than
        the rest of the drawing."""
        base = self.rich_style
        self._styles = {k: base + _level_style(k) for k in range(9)}
        self._styles["changed"] = base + _CHANGED
        self._styles["changed_block"] = base + Style(color=_CHANGED.bgcolor)  # a yellow █
        self._styles["base"] = base
        self._styles["head"] = base + Style(bold=True)
        self._styles["label"] = base + Style(dim=True)
        return super().render_lines(crop)

    def _pick(self, key, cursor: bool) -> Style:
        style = self._styles[key]
        return style + Style(reverse=True) if cursor else style

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width, st, styles = self.size.width, self.state, self._styles
        if not st.counts.size:
            return Strip.blank(width, styles["base"])
        lw = self._label_w
        if y == 0:
            label, cells = " " * lw, self._header(scroll_x, width - lw)
        else:
            row = y - 1 + scroll_y
            nrows = self._heat.shape[0] if self._mode == "heat" else st.nranks
            if row >= nrows:
                return Strip.blank(width, styles["base"])
            label, cells = self._row(row, scroll_x, width - lw)
        head = Segment(label.ljust(lw), styles["label"])
        return Strip([head, *cells]).crop_extend(0, width, styles["base"])

    def _visible(self, scroll_x: int, avail: int, ncols: int, cell: int) -> tuple[range, int]:
        first = scroll_x // cell
        return range(first, min(ncols, first + avail // cell + 2)), scroll_x - first * cell

    def _clip(self, segs: list[Segment], skip: int, avail: int) -> list[Segment]:
        return list(Strip(segs).crop(skip, skip + avail))

    def _header(self, scroll_x: int, avail: int) -> list[Segment]:
        style = self._styles["head"]
        if self._mode == "sets":
            cols, skip = self._visible(scroll_x, avail, self.state.nseg, self._cell)
            heads = [Segment(f"s{s}".ljust(self._cell), style) for s in cols]
            return self._clip(heads, skip, avail)
        per = self._block[1] if self._mode == "heat" else 1
        cell = 1 if self._mode == "heat" else 2
        ncols = self._heat.shape[1] if self._mode == "heat" else self.state.nseg
        text = [" "] * (ncols * cell)
        for c in range(0, ncols, 5):  # a tick every 5 glyphs: the segment it starts at
            tick = f"s{c * per}"
            if c * cell + len(tick) <= len(text):
                text[c * cell:c * cell + len(tick)] = tick
        return self._clip([Segment("".join(text), style)], scroll_x, avail)

    def _row(self, row: int, scroll_x: int, avail: int) -> tuple[str, list[Segment]]:
        st, cur = self.state, self.cursor
        if self._mode == "heat":
            rb, cb = self._block
            hi = min(st.nranks, (row + 1) * rb) - 1
            label = f"r{row * rb}" + (f"-{hi}" if hi > row * rb else "")
            here = (cur[0] // rb, cur[1] // cb)
            cols, _ = self._visible(scroll_x, avail, self._heat.shape[1], 1)
            levels = self._heat_level[row].tolist()
            runs: list[tuple[str, object]] = []  # glyphs of one style run together: one segment
            for c in cols:
                changed = (row, c) in self._heat_changed
                key = ("changed_block" if changed else levels[c], (row, c) == here)
                glyph = HEAT if levels[c] or changed else " "
                if runs and runs[-1][1] == key:
                    runs[-1] = (runs[-1][0] + glyph, key)
                else:
                    runs.append((glyph, key))
            return label, [Segment(text, self._pick(*key)) for text, key in runs]
        cols, skip = self._visible(scroll_x, avail, st.nseg, self._cell)
        levels = _levels(st.counts[row], st.nranks)
        gap = Segment(" ", self._styles["base"])
        segs = []
        for s in cols:
            lvl = int(levels[s])
            style = self._pick("changed" if (row, s) in self._changed else lvl, (row, s) == cur)
            if self._mode == "sets":
                text = self._texts.get((row, s)) or st.text(row, s)
                if len(text) > self._cell - 1:
                    text = text[: self._cell - 2] + "…"
                text = text.ljust(self._cell - 1)
            else:
                text = GLYPHS[lvl]
            segs += (Segment(text, style), gap)
        return f"r{row}", self._clip(segs, skip, avail)
