"""The training view: compute and comm lanes per rank with the time cursor, live memory per rank
stacked by category with its peak, and the list of transfers (the step's in bold).

For programs that compute, allocate or free (:func:`tui.training.is_training`). Like the
collective view, a container that hands state down through :meth:`TrainingView.show`.
"""

from __future__ import annotations

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from rankscope.simulator.program import OpKind
from rankscope.simulator.units import format_bytes, format_dec_bytes, format_seconds

from .. import shards
from ..replay import Replay
from ..training import Lanes, Memory, coll_label, is_comm, label
from ..widgets.gantt import Gantt, GanttState, lane_tag
from ..widgets.memory import MemoryChart, MemoryState
from ..widgets.table import Column, Rows, VirtualTable
from . import text

TRANSFERS = [Column("step", 4, True), Column("op", 4, True), Column("phase", 14),
             Column("src->dst", 8), Column("bytes", 6, True), Column("kind", 14),
             Column("start", 7, True)]


def shard_text(r: Replay) -> Text:
    """Per FSDP unit: the shard every rank keeps, then its full parameters and gradients per rank."""
    t = Text()
    t.append("unit      shard/rank  params r0..  grads r0..\n", style="bold")
    for row in shards.rows(r):
        t.append(f"{row.unit:<9} {format_dec_bytes(row.shard_bytes):>10}  {row.params:<12} {row.grads}\n")
    t.append(f"{shards.FULL} full copy  {shards.FILLING} collective running  {shards.NONE} shard only", style="dim")
    return t


def _kind(p, op: int) -> str:
    """The colour key of a bar: fwd/bwd/opt by its label's start, else compute; reduce or copy."""
    if p.kind[op] == OpKind.COMPUTE:
        name = label(p, op)
        return next((k for k in ("fwd", "bwd", "opt") if name.startswith(k)), "compute")
    return "reduce" if p.kind[op] == OpKind.REDUCE else "copy"  # a collective's bar: the copy colour


class TrainingView(Vertical):
    """See the module docstring. ``transfers_shown`` holds the op ids in the transfers list."""

    DEFAULT_CSS = """
    TrainingView #tstatus { height: 1; padding: 0 1; }
    TrainingView #tbody { height: 1fr; }
    TrainingView #tmain { width: 1fr; }
    TrainingView #gantt { border: round $primary-muted; }
    TrainingView #memory { height: 1fr; border: round $primary-muted; }
    TrainingView #tside { width: 50; }
    TrainingView #shards { height: auto; max-height: 12; border: round $primary-muted; padding: 0 1; }
    TrainingView #ttransfers { height: 1fr; border: round $primary-muted; }
    TrainingView #tdetail { height: 9; border: round $primary-muted; padding: 0 1;
                            overflow-y: auto; }
    TrainingView #ttransfers:focus { border: round $accent; }
    """

    ZOOMS = (1, 2, 4, 8, 16, 32)
    """How many times the lanes and the chart magnify time around the cursor (``z`` cycles)."""

    def __init__(self, lanes: Lanes, memory: Memory, *, fsdp: bool = False, id: str | None = None) -> None:
        super().__init__(id=id)
        self.lanes, self.memory = lanes, memory
        self.transfers_shown = np.zeros(0, np.int64)
        self.zoom = 1
        self.fsdp = fsdp  # the program all-gathers units (ZeRO-3/FSDP): show the shard panel

    def next_zoom(self) -> int:
        """Magnify time by the next factor of :data:`ZOOMS`, back to the whole step after the last."""
        self.zoom = self.ZOOMS[(self.ZOOMS.index(self.zoom) + 1) % len(self.ZOOMS)]
        return self.zoom

    def window(self, r: Replay) -> tuple[float, float]:
        """The time both the lanes and the chart show: the whole trace at zoom 1, else a
        1/zoom of it centred on the cursor (kept inside the trace)."""
        t0, t1 = r.t0, max(r.t_end, r.t0 + 1e-12)
        if self.zoom == 1:
            return t0, t1
        span = (t1 - t0) / self.zoom
        a = min(max(r.time - span / 2, t0), t1 - span)
        return a, a + span

    def compose(self) -> ComposeResult:
        yield Static(id="tstatus")
        with Horizontal(id="tbody"):
            with Vertical(id="tmain"):  # one column: the lanes and the chart share the time axis
                yield Gantt(id="gantt")
                yield MemoryChart(id="memory")
            with Vertical(id="tside"):
                if self.fsdp:
                    yield Static(id="shards")
                yield VirtualTable(TRANSFERS, id="ttransfers")
                yield Static(id="tdetail")

    def on_mount(self) -> None:
        streams = self.lanes.names[1:]  # one comm row, or one per collective stream (tags as the rows)
        tags = " · ".join(f"{lane_tag(s, Gantt.LABEL_W - 4)} {s}" for s in streams)
        self.query_one("#gantt").border_title = "lanes: compute and comm per rank (▼ cursor)" if len(streams) == 1 \
            else f"lanes: compute · {tags} (▼ cursor)"
        self.query_one("#memory").border_title = "live memory by category"
        self.query_one("#ttransfers").border_title = "transfers and collectives (the step's in bold)"
        self.query_one("#tdetail").border_title = "selection"
        if self.fsdp:
            self.query_one("#shards").border_title = "FSDP units: shards and full copies per rank"

    def show(self, r: Replay, op: int | None) -> None:
        """Hand the state at the cursor to the widgets; ``op`` is the selected op, if any."""
        p = r.program
        t0, t1 = self.window(r)
        self.query_one("#tstatus", Static).update(text.status_line(r), layout=False)
        self.query_one(Gantt).state = GanttState(
            self.lanes, p.nranks, t0, t1, r.time, lambda o: _kind(p, o),
            lambda o: label(p, o), op, r.t0)
        rank = int(p.rank[op]) if op is not None else 0
        self.query_one(MemoryChart).state = MemoryState(self.memory, rank, r.time, t0, t1, r.t0)
        zoom = f" · time x{self.zoom} (z)" if self.zoom > 1 else " · z zooms time"
        self.query_one("#memory").border_subtitle = \
            f"chart: rank {rank} over time · bars: every rank at the cursor{zoom}"
        self._transfers(r, op)
        if self.fsdp:
            self.query_one("#shards", Static).update(shard_text(r), layout=False)
        detail = Text()
        if op is not None:
            detail.append(text.op_details(r, op))
            if p.kind[op] == OpKind.COLLECTIVE:
                detail.append("o: open this collective's own schedule (the ring steps)\n", style="bold cyan")
        else:
            detail.append("pick a transfer (tab, then up/down) to see what it waits for\n",
                          style="dim")
        detail.append(text.waiting(r, rank))
        self.query_one("#tdetail", Static).update(detail, layout=False)

    def _transfers(self, r: Replay, op: int | None) -> None:
        p, tr = r.program, r.trace
        ops = self.transfers_shown = np.flatnonzero(is_comm(p))
        current = set(r.comm_ops().tolist())

        def cells(i: int) -> tuple[str, ...]:
            o = int(ops[i])
            hit = p.phase_of(int(p.step[o]))
            if p.kind[o] == OpKind.COLLECTIVE:  # rank r's part; bytes: the whole buffer
                who, nbytes, kind = f"rank {int(p.rank[o])}", int(p.coll_bytes[p.arg[o]]), coll_label(p, o)
            else:
                who, nbytes = f"{int(p.rank[o])}->{int(p.peer[o])}", int(p.chunk_len[p.arg[o]])
                kind = p.op_label(o)
            return (str(int(p.step[o])), str(o), hit[0].name if hit else "", who, format_bytes(nbytes), kind,
                    format_seconds(tr.start[o] - r.t0))

        table = self.query_one("#ttransfers", VirtualTable)
        table.rows = Rows(len(ops), cells, lambda i: ("bold reverse" if ops[i] == op else
                                                      "bold" if int(ops[i]) in current else "dim"))
        mark = op if op is not None else (min(current) if current else None)
        hit = np.flatnonzero(ops == mark) if mark is not None else np.zeros(0)
        if hit.size:
            table.show_row(int(hit[0]))
