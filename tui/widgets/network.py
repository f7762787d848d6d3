"""A picture of the network: the ranks, and arrows for the current step's transfers.

The shape follows the topology the trace recorded (``meta["topology"]``): ranks on a circle for a
ring (``ring:N``: each arrow is one link), around a switch (``switch:N``, and traces without a
topology: an arrow runs rank -> switch -> rank), or grouped by node (``nodes:MxG``: the nodes'
ranks on arcs around the fabric; an arrow inside a node is NVLink, one between nodes crosses the
NICs). A rank that sends is bold, one that receives more than one transfer at once (an incast)
red. Under the picture: how many transfers the step runs and its busiest links with their load.
Above :data:`MAX_DRAWN` ranks the picture is a summary: the counts without a drawing.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.strip import Strip
from textual.widget import Widget

from rankscope.simulator.units import format_bytes

MAX_DRAWN = 16
_ARROWS = "→↘↓↙←↖↑↗"  # by direction, 45 degrees apart, starting east, clockwise (y grows down)


@dataclass(frozen=True)
class NetState:
    """What to draw: ``shape`` is ring, switch or nodes (``per_node`` ranks each); ``transfers``
    (src, dst, bytes, reduce?) of the step; ``links`` (name, bytes, utilisation or NaN), busiest first."""

    nranks: int = 0
    shape: str = "switch"
    per_node: int = 0
    transfers: tuple[tuple[int, int, int, bool], ...] = ()
    links: tuple[tuple[str, float, float], ...] = field(default_factory=tuple)


def shape_of(topology: dict | None, nranks: int) -> tuple[str, int]:
    """(shape, ranks per node) for a trace's recorded topology."""
    meta = (topology or {}).get("meta") or {}
    preset = meta.get("preset")
    if preset == "ring":
        return "ring", 0
    if preset == "nodes" and int(meta.get("nodes", 1)) > 1:
        return "nodes", int(meta["ranks_per_node"])
    return "switch", 0


class NetworkPicture(Widget):
    """See the module docstring; the owner sets ``state``."""

    DEFAULT_CSS = "NetworkPicture { width: 40; height: 16; }"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.state = NetState()

    def update_state(self, state: NetState) -> None:
        self.state = state
        self.refresh()

    # -- geometry ---------------------------------------------------------------------------------
    def positions(self, w: int, h: int) -> dict[int | str, tuple[int, int]]:
        """Where each rank (and ``"sw"`` / ``"fabric"``) is drawn in a w x h canvas."""
        st = self.state
        cx, cy = (w - 1) / 2, (h - 1) / 2
        rx, ry = max(3.0, cx - 3), max(2.0, cy - 1)
        pos: dict[int | str, tuple[int, int]] = {}
        if st.shape == "nodes" and st.per_node:
            nodes = -(-st.nranks // st.per_node)
            for r in range(st.nranks):
                node, k = divmod(r, st.per_node)
                spread = 2 * math.pi / nodes * 0.7
                a = 2 * math.pi * node / nodes - math.pi / 2 + spread * ((k + 0.5) / st.per_node - 0.5)
                pos[r] = (round(cx + rx * math.cos(a)), round(cy + ry * math.sin(a)))
            pos["fabric"] = (round(cx), round(cy))
            return pos
        for r in range(st.nranks):
            a = 2 * math.pi * r / max(st.nranks, 1) - math.pi / 2
            pos[r] = (round(cx + rx * math.cos(a)), round(cy + ry * math.sin(a)))
        if st.shape == "switch":
            pos["sw"] = (round(cx), round(cy))
        return pos

    def paths(self) -> list[tuple[list[int | str], bool]]:
        """Per transfer, the points its arrow passes (rank, hub, rank) and whether it reduces."""
        st, out = self.state, []
        for src, dst, _, red in st.transfers:
            if st.shape == "ring":
                out.append(([src, dst], red))
            elif st.shape == "nodes" and st.per_node and src // st.per_node == dst // st.per_node:
                out.append(([src, dst], red))  # inside a node: NVLink
            else:
                out.append(([src, "fabric" if st.shape == "nodes" else "sw", dst], red))
        return out

    # -- drawing ----------------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        """The drawing, one strip per row, built once per state and size (Line API: a Rich Text
        of one segment per character cost more to lay out than the step it shows); the summary
        of a large N is a Text (:meth:`render`)."""
        st = self.state
        if st.nranks == 0 or st.nranks > MAX_DRAWN:
            return super().render_line(y)
        base = self.rich_style
        key = (id(st), self.size, base)
        if getattr(self, "_lines_key", None) != key:
            self._lines_key, self._lines_of = key, st  # (_lines_of keeps the id alive)
            self._lines = self._draw(base)
        if y < len(self._lines):
            return self._lines[y]
        return Strip.blank(self.size.width, base)

    def render(self) -> Text:
        st = self.state
        if st.nranks == 0:
            return Text("")
        return self._summary()

    def _draw(self, base: Style) -> list[Strip]:
        st = self.state
        w, h = max(10, self.size.width), max(6, self.size.height)
        rows = h - 2
        canvas = [[(" ", Style())] * w for _ in range(rows)]
        pos = self.positions(w, rows)
        for pts, red in self.paths():
            colour = "#d7875f" if red else "#d7af5f"
            for a, b in zip(pts, pts[1:]):
                _line(canvas, pos[a], pos[b], Style(color=colour), arrow=True)
        incoming: dict[int, int] = {}
        senders = {s for s, _, _, _ in st.transfers}
        for _, d, _, _ in st.transfers:
            incoming[d] = incoming.get(d, 0) + 1
        for key, (x, y) in pos.items():
            if isinstance(key, str):
                _put(canvas, x - 1, y, "SW" if key == "sw" else "NIC", Style(color="#87afd7", bold=True))
                continue
            style = Style(color="#ff5f5f", bold=True) if incoming.get(key, 0) > 1 else \
                Style(bold=key in senders, dim=key not in senders and key not in incoming)
            _put(canvas, x - len(f"r{key}") // 2, y, f"r{key}", style)
        width = self.size.width
        out = []
        for row in canvas:
            runs: list[list] = []  # characters of one style together: one segment
            for ch, style in row:
                if runs and runs[-1][1] is style:
                    runs[-1][0] += ch
                else:
                    runs.append([ch, style])
            out.append(Strip([Segment(text, base + style) for text, style in runs]).crop_extend(0, width, base))
        for line in textwrap.wrap(self._caption(w), max(1, width)):
            out.append(Strip([Segment(line, base)]))  # padded to the width by Textual, as a Text's lines are
        return out[: self.size.height]

    def _caption(self, w: int) -> str:
        st = self.state
        n = len(st.transfers)
        head = f"{n} transfer{'s' if n != 1 else ''} this step" if n else "no transfer in this step"
        busiest = ", ".join(f"{name} {'' if u != u else f'{100 * u:.0f}%'}".strip()
                            for name, _, u in st.links[:2])
        return (head + (f"; busiest: {busiest}" if busiest else ""))[: 2 * w]

    def _summary(self) -> Text:
        st = self.state
        incoming: dict[int, int] = {}
        for _, d, _, _ in st.transfers:
            incoming[d] = incoming.get(d, 0) + 1
        most = max(incoming.items(), key=lambda kv: kv[1]) if incoming else None
        moved = sum(b for _, _, b, _ in st.transfers)
        t = Text(f"{st.nranks} ranks ({st.shape}{f', {st.per_node} per node' if st.per_node else ''}): "
                 f"too many to draw\n\n", style="bold")
        t.append(f"this step: {len(st.transfers)} transfers, {format_bytes(moved)}\n")
        t.append(f"{len({s for s, _, _, _ in st.transfers})} ranks send, {len(incoming)} receive\n")
        if most:
            t.append(f"most received by one rank: {most[1]} (rank {most[0]})\n",
                     style="bold red" if most[1] > 1 else "")
        t.append(self._caption(self.size.width))
        return t


def _put(canvas, x: int, y: int, text: str, style: Style) -> None:
    if 0 <= y < len(canvas):
        for i, ch in enumerate(text):
            if 0 <= x + i < len(canvas[y]):
                canvas[y][x + i] = (ch, style)


def _line(canvas, a: tuple[int, int], b: tuple[int, int], style: Style, arrow: bool) -> None:
    """Dots from a to b (Bresenham), an arrowhead two thirds of the way when ``arrow``."""
    (x0, y0), (x1, y1) = a, b
    dx, dy = abs(x1 - x0), -abs(y1 - y0)
    sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
    err, pts = dx + dy, []
    while True:
        pts.append((x0, y0))
        if (x0, y0) == (x1, y1):
            break
        e2 = 2 * err
        if e2 >= dy:
            err += dy
            x0 += sx
        if e2 <= dx:
            err += dx
            y0 += sy
    inner = pts[1:-1]
    for x, y in inner:
        _put(canvas, x, y, "·", style)
    if arrow and inner:
        x, y = inner[min(len(inner) - 1, 2 * len(inner) // 3)]
        ang = math.atan2(b[1] - a[1], (b[0] - a[0]) / 2)
        _put(canvas, x, y, _ARROWS[round(ang / (math.pi / 4)) % 8], style + Style(bold=True))
