"""Per-rank compute and comm lanes over time, with the time cursor (Line API).

One row per (rank, lane) of :class:`tui.training.Lanes` (compute and comm, or compute and one row
per collective stream); time runs across the whole width. A bar
carries its label when it fits; a bar shorter than a column still shows as one glyph of its own
(see :meth:`Gantt.placed`), so no op vanishes at any zoom. The cursor is a vertical line at the replay's time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ..training import Lanes
from .axis import column, ticks

COLOURS = {"fwd": "#5f87d7", "bwd": "#af5fd7", "opt": "#5faf87", "compute": "#87afaf",
           "reduce": "#d7875f", "copy": "#d7af5f"}
_CURSOR = Style(color="#ffd75f", bold=True)


def _shade(hex_colour: str, k: float) -> str:
    """``hex_colour`` scaled by ``k``: every other bar of a lane is darker, so that two bars of
    one kind that touch (fwd0 then fwd1) still read as two."""
    rgb = [int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{min(255, int(c * k)):02x}" for c in rgb)


def lane_tag(name: str, room: int) -> str:
    """A lane's name in ``room`` characters: whole if it fits, else its words' initials
    (``reduce_scatter`` -> ``rs``, ``all_gather`` -> ``ag``), else cut."""
    if len(name) <= room:
        return name
    initials = "".join(w[0] for w in name.replace("-", "_").split("_") if w)
    return (initials if len(initials) > 1 else name)[:max(1, room)]


@dataclass(frozen=True)
class GanttState:
    """Bars to draw over ``[t0, t1]``; ``kind(op)`` names its colour (a key of COLOURS) and
    ``label(op)`` its text; ``time`` is the cursor, ``selected`` an op to emphasise."""

    lanes: Lanes | None = None
    nranks: int = 0
    t0: float = 0.0
    t1: float = 1.0
    time: float = 0.0
    kind: Callable[[int], str] = lambda op: "compute"
    label: Callable[[int], str] = lambda op: ""
    selected: int | None = None
    origin: float = 0.0   # the trace's start: tick labels count from it


class Gantt(ScrollView):
    """Rows ``r0 compute``, ``r0 comm``, ``r1 compute``, ... under a time axis (``comm`` is one row
    per collective stream where the trace records several)."""

    DEFAULT_CSS = "Gantt { height: auto; max-height: 14; }"
    LABEL_W = 11

    state: reactive[GanttState] = reactive(GanttState, always_update=True)

    def _per_rank(self) -> int:
        """Rows per rank: the trace's lanes."""
        lanes = self.state.lanes
        return len(lanes.names) if lanes is not None else 2

    def watch_state(self, st: GanttState) -> None:
        self.virtual_size = Size(self.size.width, st.nranks * self._per_rank() + 1)
        self.refresh()

    def get_content_height(self, container, viewport, width: int) -> int:
        return self.state.nranks * self._per_rank() + 1

    def _col(self, t: float, cols: int) -> int:
        return column(t, self.state.t0, self.state.t1, cols)

    def placed(self, rank: int, lane: int, cols: int) -> list[tuple[int, int, int]]:
        """(op, first column, past-the-last column) of the bars of (``rank``, ``lane``) drawn in
        ``cols`` columns. A bar starts no earlier than the previous one ends, so a bar shorter
        than a column that follows another in the same column moves one column on instead of
        being drawn over; bars outside the window are left out."""
        st, out, free = self.state, [], 0
        sl = st.lanes.of(rank, lane)
        for op, a, b in zip(st.lanes.op[sl], st.lanes.start[sl], st.lanes.end[sl]):
            if b < st.t0 or a > st.t1:
                continue
            c0 = max(min(cols - 1, max(0, self._col(a, cols))), free)
            if c0 >= cols:
                break
            c1 = min(cols, max(c0 + 1, self._col(b, cols)))
            out.append((int(op), c0, c1))
            free = c1
        return out

    def _bars(self, row: int, cols: int, base: Style) -> tuple[list[tuple[str, Style]], Strip]:
        """Row ``row``'s label and bars without the cursor, as characters and as one strip; kept
        while the bars stay put: a step moves only the cursor, one column, so a redraw of the
        lanes is the cached rows with that column replaced."""
        st = self.state
        key = (id(st.lanes), st.t0, st.t1, st.selected, cols, base)
        if getattr(self, "_bars_key", None) != key:
            self._bars_key, self._bars_of, self._bars_rows = key, st.lanes, {}  # (_bars_of keeps the id alive)
        if row in self._bars_rows:
            return self._bars_rows[row]
        rank, lane = divmod(row, len(st.lanes.names))
        chars: list[tuple[str, Style]] = [(" ", base)] * cols
        for i, (op, c0, c1) in enumerate(self.placed(rank, lane, cols)):
            colour = _shade(COLOURS.get(st.kind(int(op)), "#808080"), 0.75 if i % 2 else 1.0)
            style = base + Style(bgcolor=colour, color="#000000")
            if op == st.selected:
                style += Style(bold=True, underline=True)
            text = st.label(int(op))[: c1 - c0].ljust(c1 - c0)
            for i, ch in enumerate(text):
                chars[c0 + i] = (ch, style)
        label = f"r{rank}" if lane == 0 else " " * (len(str(rank)) + 1)
        label = f"{label} {lane_tag(st.lanes.names[lane], self.LABEL_W - 2 - len(label))}"
        head = Segment(label.ljust(self.LABEL_W), base + Style(dim=lane > 0))
        out = self._bars_rows[row] = (chars, Strip([head, *(Segment(ch, sty) for ch, sty in chars)]).simplify())
        return out

    def render_lines(self, crop):
        """Look the widget's style up once per redraw (it walks the DOM), not once per row."""
        self._base = self.rich_style
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        cols = max(1, width - self.LABEL_W)
        if not hasattr(self, "_base"):  # a line asked for outside a redraw (tests do)
            self._base = self.rich_style
        st, base = self.state, self._base
        if st.lanes is None:
            return Strip.blank(width, base)
        cursor = min(cols - 1, max(0, self._col(st.time, cols)))
        if y == 0:
            return Strip([Segment(" " * self.LABEL_W, base), *self._axis(cols, cursor)])
        row = y - 1 + self.scroll_offset.y
        if row // len(st.lanes.names) >= st.nranks:
            return Strip.blank(width, base)
        chars, strip = self._bars(row, cols, base)
        ch, style = chars[cursor]
        on_bar = not (ch == " " and style == base)
        mark = Segment(ch, style + Style(reverse=True)) if on_bar else Segment("│", base + _CURSOR)
        x = self.LABEL_W + cursor
        return Strip.join([strip.crop(0, x), Strip([mark], 1), strip.crop(x + 1, self.LABEL_W + cols)]).simplify()

    def _axis(self, cols: int, cursor: int) -> list[Segment]:
        st = self.state
        text = ticks(st.t0, st.t1, cols, st.origin)
        dim = self._base + Style(dim=True)
        mark = Segment("▼", self._base + _CURSOR) if text[cursor] == " " else \
            Segment(text[cursor], self._base + _CURSOR + Style(reverse=True))
        return [Segment("".join(text[:cursor]), dim), mark,
                Segment("".join(text[cursor + 1:]), dim)]
