"""The compare screen: two traces side by side, step by step and op by op (or, for a simulated
training step against a measured run, collective by collective: :func:`rankscope.simulator.compare.compare`).

Left, every step's duration in trace A (the model) and trace B (the measurement) and the error
of A against B, (A - B) / B as ``rankscope compare`` prints it; divergent steps
(beyond the threshold) in red, the first one marked. Right, the ops of the step at the cursor
with their durations in both. ``d`` jumps to the first divergence.
"""

from __future__ import annotations

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Header, Static

from rankscope.simulator.compare import Comparison, error
from rankscope.simulator.errors import RankscopeError
from rankscope.simulator.program import OpKind, Program
from rankscope.simulator.trace import Trace
from rankscope.simulator.units import format_seconds

from ..widgets.footer import StepFooter
from ..widgets.table import Column, Rows, VirtualTable
from .cursor import CursorScreen

STEPS = [Column("step", 4, True), Column("phase", 16), Column("A", 8, True), Column("B", 8, True),
         Column("error", 8, True), Column("", 7)]
OPS = [Column("op", 5, True), Column("what", 22), Column("A", 8, True), Column("B", 8, True),
       Column("error", 8, True)]


def short(p: Program, op: int) -> str:
    """``0 -> 1 c0 copy`` for a transfer, else the op's kind and rank (the op table's column)."""
    if p.kind[op] <= OpKind.COPY:
        return f"{int(p.rank[op])} -> {int(p.peer[op])} c{int(p.arg[op])} {p.op_label(op)}"
    return f"{p.op_label(op)} on r{int(p.rank[op])}"


def percent(e: float) -> str:
    """``+50.0%``; rounding first, so that float noise never prints as ``-0.0%``."""
    return "-" if np.isnan(e) else ("inf" if np.isinf(e) else f"{round(100 * e, 1) + 0.0:+.1f}%")


def _describe(t: Trace, name: str) -> str:
    clock = t.meta.get("clock") or "unknown"
    return f"{name} ({t.meta.get('executor') or 'unknown'}, {clock} clock)"


class CompareScreen(CursorScreen):
    """See the module docstring. The cursor is a step, 0 .. n_steps-1."""

    DEFAULT_CSS = """
    CompareScreen #summary { height: auto; border: round $primary-muted; padding: 0 1; }
    CompareScreen #steps { width: 59; border: round $primary-muted; }
    CompareScreen #ops { width: 1fr; border: round $primary-muted; }
    CompareScreen VirtualTable:focus { border: round $accent; }
    """
    BINDINGS = [Binding("d", "divergence", "first divergence")]

    def __init__(self, comparison: Comparison) -> None:
        super().__init__()
        self.cmp = comparison
        self.step = 0

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="summary")
        with Horizontal():
            yield VirtualTable(STEPS, id="steps")
            yield VirtualTable(OPS, id="ops")
        yield StepFooter()

    def on_mount(self) -> None:
        c = self.cmp
        self.title = "rankscope compare"
        self.sub_title = self.describe()
        self.query_one("#summary").border_title = "model A against measured B: (A - B) / B"
        self.query_one("#steps").border_title = ("step durations (time each step adds)" if c.seq is None else
                                                 "collective k of every rank (time it adds)")
        err, div = c.step_error, c.divergent
        first = c.first_divergence
        p = c.a.program
        phase = [p.phase_of(int(p.step[c.first_op(s)])) for s in range(c.n_steps)]
        self.query_one("#steps", VirtualTable).rows = Rows(c.n_steps, lambda i: (
            str(i), f"{phase[i][0].name} {phase[i][1]}" if phase[i] else "",
            format_seconds(c.step_model[i]), format_seconds(c.step_measured[i]), percent(err[i]),
            "◀ first" if i == first else ""), lambda i: "bold red" if div[i] else "")
        self.query_one("#summary", Static).update(self._summary())
        self.moved()

    def explain(self):
        from .explain import compare

        return compare()

    def describe(self) -> str:
        return f"{self.cmp.names[0]} vs {self.cmp.names[1]}"

    def _summary(self) -> Text:
        c = self.cmp
        ma, mb = c.total_model, c.total_measured
        t = Text()
        t.append(f"A: {_describe(c.a, c.names[0])}, makespan {format_seconds(ma)}\n")
        t.append(f"B: {_describe(c.b, c.names[1])}, makespan {format_seconds(mb)}\n")
        what = f"{c.n_steps} steps" if c.seq is None else f"{c.n_steps} collectives per rank, joined on the {c.joined_on}"
        t.append(f"{c.a.program.describe()}, {what}; model A against measured B: makespan "
                 f"{percent(float(error(np.array([ma]), np.array([mb]))[0]))}; ")
        first = c.first_divergence
        if first is None:
            t.append(f"no step differs by more than {100 * c.threshold:.0f}%", style="green")
        else:
            t.append(f"first divergence at step {first} ({percent(c.step_error[first])}, "
                     f"threshold {100 * c.threshold:.0f}%)", style="bold red")
        return t

    # -- moving ----------------------------------------------------------------------------------
    def can_back(self) -> bool:
        return self.step > 0

    def can_forward(self) -> bool:
        return self.step < self.cmp.n_steps - 1

    def move(self, n: int) -> None:
        self.step = max(0, min(self.step + n, self.cmp.n_steps - 1))

    def go_home(self) -> None:
        self.step = 0

    def go_end(self) -> None:
        self.step = max(0, self.cmp.n_steps - 1)

    def go_to(self, kind: str, value: float) -> None:
        if kind == "time":
            raise RankscopeError("compare goes to steps only: give a step number")
        if not 0 <= value < self.cmp.n_steps:
            raise RankscopeError(f"no step {int(value)}: these traces have steps "
                                 f"0..{self.cmp.n_steps - 1}")
        self.step = int(value)

    def go_op(self, op: int) -> None:
        p = self.cmp.a.program
        if not 0 <= op < p.n_ops:
            raise RankscopeError(f"no op {op}: these traces have ops 0..{p.n_ops - 1}" if p.n_ops
                                 else f"no op {op}: these traces have no ops")
        step = self.cmp.step_of(op)
        if step is None:
            raise RankscopeError(f"op {op} is not a collective joined between the two traces")
        self.step = step

    def action_divergence(self) -> None:
        if self.cmp.first_divergence is not None:
            self.step = self.cmp.first_divergence
            self.moved()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "divergence":
            return True if self.cmp.first_divergence is not None else None
        return super().check_action(action, parameters)

    def show(self) -> None:
        if not self.cmp.n_steps:
            return
        self.query_one("#steps", VirtualTable).show_row(self.step)
        ids, da, db = self.cmp.ops(self.step)
        err = error(da, db)
        p = self.cmp.a.program
        off = np.abs(np.nan_to_num(err)) > self.cmp.threshold

        def cells(i: int) -> tuple[str, ...]:
            return (str(int(ids[i])), short(p, int(ids[i])), format_seconds(da[i]),
                    format_seconds(db[i]), percent(err[i]))

        table = self.query_one("#ops", VirtualTable)
        table.rows = Rows(ids.size, cells, lambda i: "red" if off[i] else "")
        table.border_title = f"ops of step {self.step}"

    def on_virtual_table_row_highlighted(self, message: VirtualTable.RowHighlighted) -> None:
        if message.table.id == "steps":
            self.step = message.index
            self.moved()
