"""Live memory per rank, stacked by buffer category, with the peak marked (Line API).

Top: a legend. Then the selected rank's memory over the whole trace, one column per time slice,
stacked by category; a slice shows the largest state inside it, so no peak falls between
columns. ``▼`` marks the peak; ``│`` (in empty space) and ``▲`` (under the chart) the cursor.
Under the chart: the time axis, the Gantt's (:mod:`.axis`), column for column. Below: one bar per
rank at the cursor's time, on the same scale, with ``┃`` where that rank's peak reaches. Bytes are
decimal (MB, GB), as ``rankscope sim train`` prints memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rich.segment import Segment
from rich.style import Style
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from rankscope.simulator.memory import category
from rankscope.simulator.units import format_dec_bytes, format_seconds

from ..training import Memory
from .axis import column, ticks

COLOURS = {"param": "#5f87d7", "grad": "#d7875f", "optim": "#5faf87",
           "param_unsharded": "#87afff", "grad_unsharded": "#ffaf87", "activation": "#af5fd7",
           "comm": "#d7d75f", "other": "#8a8a8a"}
"""One colour per category of ``simulator.memory.CATEGORIES``: a transient buffer is a lighter
shade of the persistent state it is made from."""
_MARK = Style(color="#ffd75f", bold=True)


def colour(cats: tuple[str, ...], c: int) -> str:
    return COLOURS[category(cats[c])]


@dataclass(frozen=True)
class MemoryState:
    """The timeline, the rank whose chart is drawn, and the cursor's time."""

    memory: Memory | None = None
    rank: int = 0
    time: float = 0.0
    t0: float = 0.0
    t1: float = 1.0
    origin: float = 0.0   # the trace's start: times are printed from it


class MemoryChart(Widget):
    """See the module docstring; the owner sets ``state``."""

    DEFAULT_CSS = "MemoryChart { height: 1fr; }"
    LABEL_W = 11  # the Gantt's: the two share one time axis, column for column

    state: reactive[MemoryState] = reactive(MemoryState, always_update=True)

    def _style(self) -> Style:
        """The widget's base style, looked up once per state and size: Textual's ``rich_style``
        walks the DOM, and every text row asks for it (as for the legend). The legend and the
        chart's rows are kept while the timeline, the rank, the window and the size stay: a
        step moves only the cursor."""
        st = self.state
        key = (id(st), self.size)
        if getattr(self, "_style_key", None) != key:
            self._style_key, self._base = key, self.rich_style
            cats = st.memory.categories if st.memory else ()
            self._cat = [Style(color=colour(cats, c)) for c in range(len(cats))]
            rows_key = (id(st.memory), st.rank, st.t0, st.t1, self.size, self._base)
            if getattr(self, "_rows_key", None) != rows_key:
                self._rows_key, self._rows_of = rows_key, st.memory  # (_rows_of keeps the id alive)
                self._legend, self._rows = None, {}
        return self._base

    def _legend_lines(self) -> list[list[Segment]]:
        """The legend, wrapped to the width (once per state and size)."""
        self._style()
        if self._legend is None:
            self._legend = self._make_legend()
        return self._legend

    def _make_legend(self) -> list[list[Segment]]:
        cats, width = self.state.memory.categories, max(1, self.size.width)
        lines: list[list[Segment]] = [[]]
        used = 0
        for c, name in enumerate(cats):
            item = [Segment("■ ", self._style() + Style(color=colour(cats, c))),
                    Segment(name + "  ", self._style())]
            if used and used + len(name) + 4 > width:
                lines.append([])
                used = 0
            lines[-1] += item
            used += len(name) + 4
        return lines

    def _chart_height(self) -> int:
        n = self.state.memory.bytes.shape[1] if self.state.memory else 0
        return max(2, self.size.height - 1 - n - len(self._legend_lines()))

    def render_line(self, y: int) -> Strip:
        width, base = self.size.width, self._style()
        mem = self.state.memory
        if mem is None or not mem.times.size:
            return Strip.blank(width, base)
        if not mem.categories:  # e.g. a flight-recorder import: collectives, no allocations
            text = "no memory events in this trace" if y == 0 else ""
            return Strip([Segment(text, base + Style(dim=True))]).crop_extend(0, width, base)
        legend = self._legend_lines()
        if y < len(legend):
            return Strip(legend[y]).crop_extend(0, width, base)
        y -= len(legend) - 1
        h = self._chart_height()
        if y <= h:
            return self._chart_line(y - 1, h, width)
        if y == h + 1:
            return self._axis(width)
        rank = y - h - 2
        if rank < mem.bytes.shape[1]:
            return self._rank_bar(rank, width)
        return Strip.blank(width, base)

    def _totals(self) -> tuple[np.ndarray, np.ndarray]:
        """(E, N) totals and the per-rank peaks of the timeline, computed once per timeline."""
        mem = self.state.memory
        if getattr(self, "_tot_of", None) is not mem:
            self._tot_of, self._tot = mem, mem.total
            self._peaks = self._tot.max(axis=0)
        return self._tot, self._peaks

    def _scale(self) -> float:
        return float(max(self._totals()[1].max(), 1))

    def _columns(self, cols: int) -> np.ndarray:
        """Per column, the index of the largest state in its time slice (once per state and width:
        every text row of the chart asks)."""
        st, mem = self.state, self.state.memory
        key = (self._rows_key, cols)
        if getattr(self, "_cols_key", None) == key:
            return self._cols
        edges = st.t0 + (st.t1 - st.t0) * np.arange(cols + 1) / cols
        lo = np.maximum(np.searchsorted(mem.times, edges[:-1], side="right") - 1, 0)
        hi = np.maximum(np.searchsorted(mem.times, edges[1:], side="left"), lo + 1)
        tot = self._totals()[0][:, st.rank]
        self._cols_key = key
        self._cols = np.array([a + int(np.argmax(tot[a:b])) for a, b in zip(lo, hi)])
        self._cum = np.cumsum(mem.bytes[self._cols, st.rank, :], axis=1)  # (cols, C)
        return self._cols

    def _chart_line(self, row: int, h: int, width: int) -> Strip:
        """Text row ``row`` of the chart: the cached row (:meth:`_chart_row`) with the cursor's
        ``│`` in its column where that is empty space."""
        strip, empty = self._chart_row(row, h, width)
        cur = self._cursor_col(max(1, width - self.LABEL_W))
        if not empty[cur]:
            return strip
        x = self.LABEL_W + cur
        mark = Strip([Segment("│", self._style() + _MARK)], 1)
        return Strip.join([strip.crop(0, x), mark, strip.crop(x + 1, width)]).simplify()

    def _chart_row(self, row: int, h: int, width: int) -> tuple[Strip, list[bool]]:
        """Text row ``row`` of the chart without the cursor, and which of its columns are empty
        space (where the cursor shows), once per timeline, rank, window and size."""
        key = (row, h, width)
        if key in self._rows:
            return self._rows[key]
        st, mem, base = self.state, self.state.memory, self._style()
        cols = max(1, width - self.LABEL_W)
        idx = self._columns(cols)
        cum = self._cum
        scale = self._scale()
        level = (h - row - 0.5) / h * scale   # the height this text row stands for
        peak_i = int(np.argmax(self._totals()[0][:, st.rank]))
        peak_col = int(np.argmax(idx == peak_i)) if (idx == peak_i).any() else -1
        label = (f"r{st.rank}" if row == 0 else format_dec_bytes(scale) if row == 1 else
                 "0" if row == h - 1 else "").ljust(self.LABEL_W)
        segs = [Segment(label, base + Style(dim=row > 0))]
        empty = [False] * cols
        for c in range(cols):
            cat = int(np.searchsorted(cum[c], level, side="right"))
            if cat < cum.shape[1]:
                segs.append(Segment("█", self._cat[cat]))
            elif c == peak_col and cum[c, -1] > level - scale / h:  # just above the peak
                segs.append(Segment("▼", base + _MARK))
            else:
                segs.append(Segment(" ", base))
                empty[c] = True
        if row == 0:
            text = f" peak {format_dec_bytes(self._totals()[0][peak_i, st.rank])} at " \
                   f"{format_seconds(mem.times[peak_i] - st.origin)} "
            keep = max(self.LABEL_W, width - len(text))
            segs = list(Strip(segs).crop(0, keep)) + [Segment(text, base + _MARK)]
            empty = [e and self.LABEL_W + c < keep for c, e in enumerate(empty)]
        out = self._rows[key] = (Strip(segs).crop_extend(0, width, base).simplify(), empty)
        return out

    def _cursor_col(self, cols: int) -> int:
        st = self.state
        return min(cols - 1, max(0, column(st.time, st.t0, st.t1, cols)))

    def _axis(self, width: int) -> Strip:
        """The time axis (the Gantt's ticks) with ``▲`` at the cursor's time."""
        st = self.state
        cols = max(1, width - self.LABEL_W)
        cur = self._cursor_col(cols)
        text = ticks(st.t0, st.t1, cols, st.origin)
        dim = self._style() + Style(dim=True)
        label = f"t {format_seconds(st.time - st.origin)}"[: self.LABEL_W - 1].ljust(self.LABEL_W)
        segs = [Segment(label, dim), Segment("".join(text[:cur]), dim), Segment("▲", self._style() + _MARK),
                Segment("".join(text[cur + 1:]), dim)]
        return Strip(segs).crop_extend(0, width, self._style())

    def _rank_bar(self, rank: int, width: int) -> Strip:
        st, mem, base = self.state, self.state.memory, self._style()
        now = mem.at(st.time)[rank]
        peak = self._totals()[1]
        text = f" {format_dec_bytes(now.sum())} (peak {format_dec_bytes(peak[rank])})"
        cols = max(1, width - self.LABEL_W - len(text))
        scale = self._scale()
        cells = [Segment(" ", base)] * cols
        edge = 0
        for c, b in enumerate(now):
            stop = min(cols, int(round((edge + b) / scale * cols)))
            for i in range(int(round(edge / scale * cols)), stop):
                cells[i] = Segment("█", self._cat[c])
            edge += b
        mark = min(cols - 1, int(round(peak[rank] / scale * cols)))
        if cells[mark].text == " ":
            cells[mark] = Segment("┃", base + _MARK)
        segs = [Segment(f"r{rank}".ljust(self.LABEL_W), base), *cells, Segment(text, base)]
        return Strip(segs).crop_extend(0, width, base).simplify()
