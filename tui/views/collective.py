"""The collective view: the provenance grid with a picture of the network beside it, the step's
transfers, the busy links, the counters, and the selected cell's or op's dependencies.

A container: :meth:`CollectiveView.show` hands the replay's state at the cursor down to its
widgets as attributes; the widgets report picks up as messages, which the screen handles.
"""

from __future__ import annotations

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from rankscope.simulator.program import OpKind
from rankscope.simulator.units import format_bytes, format_ranks, format_seconds

from ..replay import Replay
from ..widgets.grid import GridState, ProvenanceGrid
from ..widgets.network import NetState, NetworkPicture, shape_of
from ..widgets.table import Column, Rows, VirtualTable
from . import text

TRANSFERS = [Column("op", 8, True), Column("src -> dst", 13), Column("chunk", 6, True),
             Column("bytes", 8, True), Column("kind", 6), Column("start", 8, True),
             Column("dur", 8, True)]
LINKS = [Column("link", 11), Column("bytes", 8, True), Column("util", 5, True)]
RANKS = [Column("rank", 5), Column("sent", 9, True), Column("received", 9, True)]


class SetTexts:
    """The grid cells' contribution-set texts (``{0,2,3}``), kept from step to step: one step
    forward changes only the cells its ops write (``Replay.changed`` there), one step back only
    those of the step undone; any other move, a time position, or another trace starts afresh.
    The grid measures every cell's text each step to size its columns, which cost more than the
    rest of the step on 8 ranks. The texts are of the replay's shown buffer; showing another
    starts afresh."""

    def __init__(self) -> None:
        self.replay: Replay | None = None
        self.buffer = 0
        self.step: int | None = None  # the step the texts are of; None: none, or a time position
        self.changed = np.zeros((0, 2), np.int64)
        self.texts: dict[tuple[int, int], str] = {}

    def follow(self, r: Replay) -> None:
        """Drop the texts the move to ``r``'s cursor may have changed."""
        if (r is not self.replay or r.buffer != self.buffer or r.mode != "step" or self.step is None
                or abs(r.step - self.step) > 1):
            self.texts = {}
        elif r.step != self.step:
            gone = r.changed if r.step == self.step + 1 else self.changed
            for a, b in gone.tolist():
                self.texts.pop((a, b), None)
        self.replay, self.step, self.changed = r, (r.step if r.mode == "step" else None), r.changed
        self.buffer = r.buffer

    def text(self, rank: int, seg: int) -> str:
        t = self.texts.get((rank, seg))
        if t is None:
            r = self.replay
            t = self.texts[rank, seg] = format_ranks(r.layout.contributors(r.buffer, rank, seg), r.nranks)
        return t


class CollectiveView(Vertical):
    """See the module docstring. ``transfers_shown`` holds the op ids in the transfers list."""

    DEFAULT_CSS = """
    CollectiveView > Horizontal { height: 1fr; }
    CollectiveView #main { width: 1fr; }
    CollectiveView #top { height: auto; max-height: 50%; }
    CollectiveView #grid { width: 1fr; height: auto; }
    CollectiveView #transfers { height: auto; max-height: 40%; }
    CollectiveView #detail { height: 1fr; min-height: 5; padding: 0 1; overflow-y: auto; }
    CollectiveView #side { width: 31; }
    CollectiveView #status { height: 8; padding: 0 1; text-wrap: nowrap; text-overflow: ellipsis; }
    CollectiveView .panel { border: round $primary-muted; }
    CollectiveView .panel:focus { border: round $accent; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.transfers_shown = np.zeros(0, np.int64)
        self.sets = SetTexts()

    def compose(self) -> ComposeResult:
        with Horizontal():
            with Vertical(id="main"):
                with Horizontal(id="top"):
                    yield ProvenanceGrid(id="grid")
                    yield NetworkPicture(id="network")
                yield VirtualTable(TRANSFERS, id="transfers")
                yield Static(id="detail")
            with Vertical(id="side"):
                yield Static(id="status")
                yield VirtualTable(RANKS, id="ranks")
                yield VirtualTable(LINKS, id="links")

    def on_mount(self) -> None:
        self.query_one(NetworkPicture).display = self.app.size.width >= self.PICTURE_MIN_WIDTH
        for wid, title in (("grid", "provenance"), ("network", "network"), ("transfers", "transfers"),
                           ("detail", "selection"), ("status", "cursor"),
                           ("ranks", "bytes so far"), ("links", "links busy in the step")):
            w = self.query_one(f"#{wid}")
            w.add_class("panel")
            w.border_title = title

    PICTURE_MIN_WIDTH = 110
    """Narrower than this, the network picture steps aside so that the grid keeps its width."""

    def on_resize(self, event) -> None:
        self.query_one(NetworkPicture).display = event.size.width >= self.PICTURE_MIN_WIDTH

    def show(self, r: Replay, cell: tuple[int, int], op: int | None) -> None:
        """Hand the state at the cursor to the widgets; ``cell`` and ``op`` are the selection
        (``op`` wins when set)."""
        grid = self.query_one(ProvenanceGrid)
        n = r.nranks
        self.sets.follow(r)
        grid.state = GridState(r.counts, r.changed, self.sets.text)
        grid.cursor = cell
        grid.set_titles(*text.grid_titles(r))
        self.query_one("#status", Static).update(text.status(r), layout=False)
        sent, received = r.sent, r.received
        self.query_one("#ranks", VirtualTable).rows = Rows(
            n, lambda i: (f"r{i}", format_bytes(sent[i]), format_bytes(received[i])))
        self._transfers(r, op)
        use = self._links(r)
        self._network(r, use)
        detail = Text()
        if op is not None:
            detail.append(text.op_details(r, op))
            rank = int(r.program.rank[op])
        else:
            detail.append(text.cell_details(r, *cell))
            rank = cell[0]
        detail.append(text.waiting(r, rank))
        self.query_one("#detail", Static).update(detail, layout=False)

    def _transfers(self, r: Replay, op: int | None) -> None:
        """The step's transfers; with several buffers, those into the one shown first, the rest
        after them, dim."""
        p, tr, t0 = r.program, r.trace, r.t0
        ops = r.transfers()
        several = len(r.data_buffers) > 1
        if several:
            mine = p.chunk_buf[p.arg[ops]] == r.buffer
            order = np.argsort(~mine, kind="stable")
            ops, mine = ops[order], mine[order]
        self.transfers_shown = ops

        def cells(i: int) -> tuple[str, ...]:
            o = int(ops[i])
            c = int(p.arg[o])
            return (str(o), f"{int(p.rank[o])} -> {int(p.peer[o])}", str(c),
                    format_bytes(int(p.chunk_len[c])),
                    p.op_label(o),
                    format_seconds(tr.start[o] - t0), format_seconds(tr.end[o] - tr.start[o]))

        table = self.query_one("#transfers", VirtualTable)
        if several:
            table.rows = Rows(len(ops), cells, lambda i: "bold" if ops[i] == op else "" if mine[i] else "dim")
            name = p.buffers[r.buffer].name
            table.border_subtitle = f"{int(mine.sum())} into {name}, the rest dim" if ops.size else ""
        else:
            table.rows = Rows(len(ops), cells, lambda i: "bold" if ops[i] == op else "")
        table.border_title = f"transfers of step {r.step}" if r.step >= 0 else "transfers"
        hit = np.flatnonzero(ops == op) if op is not None else np.zeros(0)
        if hit.size:
            table.show_row(int(hit[0]))

    def _network(self, r: Replay, use) -> None:
        p, ops = r.program, r.transfers()
        shape, per = shape_of(r.trace.meta.get("topology"), r.nranks)
        order = np.argsort(-use.nbytes, kind="stable")
        pic = self.query_one(NetworkPicture)
        pic.update_state(NetState(r.nranks, shape, per, tuple(
            (int(p.rank[o]), int(p.peer[o]), int(p.chunk_len[p.arg[o]]), bool(p.kind[o] == OpKind.REDUCE))
            for o in ops), tuple((use.names[i], float(use.nbytes[i]), float(use.util[i])) for i in order[:4])))
        pic.border_subtitle = {"ring": "ring: one arrow per link", "switch": "arrows via the switch",
                               "nodes": f"nodes of {per}: NVLink inside, NICs across"}[shape]

    def _links(self, r: Replay):
        use = r.links()
        table = self.query_one("#links", VirtualTable)
        table.rows = Rows(len(use.link), lambda i: (
            use.names[i], format_bytes(use.nbytes[i]),
            "-" if np.isnan(use.util[i]) else f"{100 * use.util[i]:.0f}%"))
        table.border_subtitle = f"{len(use.link)} busy" if use.link.size else "none busy"
        return use
