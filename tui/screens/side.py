"""Two different programs on the same ranks side by side, on one clock (``rankscope replay A B``
of, say, the parameter server and the ring): both collective views, each cursor at the same time.

The common clock's steps are the moments either trace finishes a step; moving on goes to the next
such moment, and each side stands where its own trace is at that time (a time position of
:class:`~rankscope.tui.replay.Replay`: the ops ended by then have finished). The shorter program
is done while the longer one still runs: the comparison a lecture wants. ``b`` / ``B`` cycle the
buffer each side's grid shows, on the sides whose program has several (NCCL's), as on the replay
screen; hidden where neither has.
"""

from __future__ import annotations

import numpy as np
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Header

from rankscope.simulator.errors import RankscopeError
from rankscope.simulator.units import format_seconds

from ..replay import Replay
from ..views.collective import CollectiveView
from ..widgets.footer import StepFooter
from .cursor import CursorScreen


def step_ends(r: Replay) -> np.ndarray:
    """When each step of ``r``'s trace ends, from its start (NaN steps left out)."""
    ends = [r.window(s)[1] for s in range(r.n_steps)]
    return np.array([e - r.t0 for e in ends if e == e])


class SideBySideScreen(CursorScreen):
    """See the module docstring."""

    DEFAULT_CSS = "SideBySideScreen CollectiveView { width: 1fr; }"
    BINDINGS = [Binding("b", "buffer(1)", "next buffer"),
                Binding("B", "buffer(-1)", "previous buffer", show=False)]

    def __init__(self, a: Replay, b: Replay, names: tuple[str, str]) -> None:
        super().__init__()
        self.sides, self.names = (a, b), names
        self.clock = np.unique(np.concatenate([step_ends(a), step_ends(b)]))
        self.k = -1  # -1: the start; else the cursor stands at self.clock[k]

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            yield CollectiveView(id="side_a")
            yield CollectiveView(id="side_b")
        yield StepFooter()

    def on_mount(self) -> None:
        self.title = "rankscope"
        self.sub_title = self.describe()
        self.moved()

    def describe(self) -> str:
        a, b = (f"{n} ({r.program.describe()})" for n, r in zip(self.names, self.sides))
        return f"{a} | {b} · one clock"

    @property
    def time(self) -> float:
        return float(self.clock[self.k]) if self.k >= 0 else 0.0

    def can_back(self) -> bool:
        return self.k > -1

    def can_forward(self) -> bool:
        return self.k < self.clock.size - 1

    def move(self, n: int) -> None:
        self.k = max(-1, min(self.clock.size - 1, self.k + n))

    def go_home(self) -> None:
        self.k = -1

    def go_end(self) -> None:
        self.k = self.clock.size - 1

    def go_to(self, kind: str, value: float) -> None:
        if kind == "time":
            self.k = int(np.searchsorted(self.clock, value, side="right")) - 1
        elif -1 <= value < self.clock.size:
            self.k = int(value)
        else:
            raise RankscopeError(f"no step {int(value)}: the common clock has steps 0..{self.clock.size - 1}")

    def go_op(self, op: int) -> None:
        raise RankscopeError("two programs: find an op in one of them with `rankscope replay FILE`")

    def has_buffers(self) -> bool:
        return any(len(r.data_buffers) > 1 for r in self.sides)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "buffer":
            return self.has_buffers()
        return super().check_action(action, parameters)

    def key_bindings(self) -> list[Binding]:
        keys = super().key_bindings()
        return keys if self.has_buffers() else [b for b in keys if not b.action.startswith("buffer")]

    def action_buffer(self, by: int) -> None:
        for r in self.sides:
            r.show_buffer(r.next_buffer(by))
        self.moved()

    def show(self) -> None:
        for r, wid, name in zip(self.sides, ("#side_a", "#side_b"), self.names):
            if self.k < 0:
                r.seek_step(-1)
            else:
                r.seek_time(r.t0 + self.time)
            view = self.query_one(wid, CollectiveView)
            view.show(r, (0, 0), None)
            done = "done" if not r.can_forward else f"step {r.step}"
            view.border_title = f"{name}: {r.program.describe()} · {done} at {format_seconds(self.time)}"
