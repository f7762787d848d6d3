"""The replay screen: one trace, one cursor, the collective view and (for training programs) the
training view, switched with ``v``. ``b`` (``B`` back) cycles the buffer the grid shows where the
program cuts its message into several (NCCL's rings, tree channels, NVLS heads); with one buffer
the keys are hidden, from the footer and from the help.

The screen owns the :class:`~tui.replay.Replay` and the selection (a grid cell, or an op picked
from a list or found with ``/``); after every move it hands both down to the visible view.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import reactive
from textual.widgets import ContentSwitcher, Header

from rankscope.simulator.errors import RankscopeError
from rankscope.simulator.program import OpKind

from .. import drill, training
from ..lessons.predict import next_question
from ..replay import Replay
from ..views.collective import CollectiveView
from ..views.training import TrainingView
from ..widgets.footer import StepFooter
from ..widgets.grid import ZOOMS, ProvenanceGrid
from ..widgets.table import VirtualTable
from .cursor import CursorScreen
from .modals import HelpScreen, PromptScreen


class ReplayScreen(CursorScreen):
    """See the module docstring."""

    BINDINGS = [
        Binding("z", "zoom", "zoom"),
        Binding("b", "buffer(1)", "next buffer"),
        Binding("B", "buffer(-1)", "previous buffer", show=False),
        Binding("v", "view", "view"),
        Binding("o", "open_collective", "open collective"),
        Binding("a", "predict", "predict next", show=False),
    ]

    view: reactive[str] = reactive("collective", init=False)

    def __init__(self, replay: Replay, title: str) -> None:
        super().__init__()
        self.replay = replay
        self.title_text = title
        self.training = training.is_training(replay.program)
        self.cell: tuple[int, int] = (0, 0)
        self.op: int | None = None
        self.predicted = [0, 0]  # right, asked (the `a` key's questions)
        self.set_reactive(ReplayScreen.view, "training" if self.training else "collective")

    def compose(self) -> ComposeResult:
        yield Header()
        yield from self.body()
        yield StepFooter()

    def body(self) -> ComposeResult:
        """What lies between the header and the footer: the views."""
        with ContentSwitcher(initial=self.view):
            yield CollectiveView(id="collective")
            if self.training:
                trace = self.replay.trace
                fsdp = any(b.category == "param_unsharded" for b in trace.program.buffers)
                yield TrainingView(training.lanes(trace), training.memory(trace), fsdp=fsdp, id="training")

    def on_mount(self) -> None:
        self.title = "rankscope"
        self.sub_title = self.describe()
        self.moved()

    def describe(self) -> str:
        return self.title_text

    # -- moving ----------------------------------------------------------------------------------
    def can_back(self) -> bool:
        return self.replay.can_back

    def can_forward(self) -> bool:
        return self.replay.can_forward

    def move(self, n: int) -> None:
        if n > 0:
            self.replay.forward(n)
        else:
            self.replay.back(-n)
        self.follow()

    def follow(self) -> None:
        """Drop a selected op that is not of the current step: the selection panel describes what
        the cursor stands on, never an op of a step left behind."""
        if self.op is not None and int(self.replay.program.step[self.op]) != self.replay.step:
            self.op = None

    def go_home(self) -> None:
        self.replay.seek_step(-1)
        self.follow()

    def go_end(self) -> None:
        self.replay.seek_step(self.replay.n_steps - 1)
        self.follow()

    def go_to(self, kind: str, value: float) -> None:
        r = self.replay
        if kind == "time":
            r.seek_time(r.t0 + value)
        elif -1 <= value < r.n_steps:
            r.seek_step(int(value))
        else:
            raise RankscopeError(f"no step {int(value)}: this trace has steps 0..{r.n_steps - 1}")

    def go_op(self, op: int) -> None:
        self.replay.seek_op(op)
        self.op = op

    def show(self) -> None:
        view = self.query_one(f"#{self.view}")
        if isinstance(view, CollectiveView):
            view.show(self.replay, self.cell, self.op)
        else:
            view.show(self.replay, self.op)

    # -- keys and picks --------------------------------------------------------------------------
    def action_predict(self) -> None:
        """Ask about the next step before applying it; check the answer against the state after it."""
        q = next_question(self.replay)
        if q is not None and self.replay.buffer != 0:  # the questions are about buffer 0's cells
            self.replay.show_buffer(0)
            self.moved()
        if q is None:
            self.notify("nothing to predict about the next step", severity="warning")
            return

        def done(text: str | None) -> None:
            if text is None:
                return
            self.replay.seek_step(q.step)
            self.follow()
            right = q.answer(self.replay)
            ok = q.check(text, right, self.replay.nranks)
            self.predicted[0] += ok
            self.predicted[1] += 1
            head = "right" if ok else f"not quite: the answer is {right}"
            self.notify(f"{head}. {q.reason(self.replay)} (score {self.predicted[0]}/{self.predicted[1]})",
                        severity="information" if ok else "warning", timeout=8)
            self.moved()
        self.app.push_screen(PromptScreen(f"predict: {q.prompt}", q.hint()), done)

    def collective_here(self) -> int | None:
        """The COLLECTIVE op to open: the selected one, else the current step's first."""
        p = self.replay.program
        if self.op is not None and p.kind[self.op] == OpKind.COLLECTIVE:
            return self.op
        ops = self.replay.comm_ops()
        ops = ops[p.kind[ops] == OpKind.COLLECTIVE]
        return int(ops[0]) if ops.size else None

    def action_open_collective(self) -> None:
        """Open the collective's own schedule (see :mod:`..drill`) in the collective view; escape comes back."""
        op = self.collective_here()
        if op is None:
            return
        trace, title = drill.schedule(self.replay.trace, op)
        self.app.push_screen(DrillScreen(Replay(trace), title))

    def explain(self):
        from . import explain

        if self.view == "training":
            return explain.training(self.query_one(TrainingView).fsdp)
        from ..views.text import buffer_words

        r = self.replay
        return explain.collective(self.query_one(ProvenanceGrid).mode, len(r.data_buffers), buffer_words(r))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "predict":
            return True if self.replay.can_forward and next_question(self.replay) is not None else None
        if action == "open_collective":  # hidden where there are no collective ops at all
            if not self.training:
                return False
            return True if self.view == "training" and self.collective_here() is not None else None
        if action == "view":
            return True if self.training else None
        if action == "buffer":  # hidden for one buffer; disabled in the training view
            if not self.has_buffers():
                return False
            return True if self.view == "collective" else None
        return super().check_action(action, parameters)

    def has_buffers(self) -> bool:
        """Whether ``b`` has another buffer to show."""
        return len(self.replay.data_buffers) > 1

    def glossary(self) -> str | None:
        """With several buffers a segment is one of the buffer shown, not of buffer 0."""
        if not self.has_buffers():
            return None
        return HelpScreen.GLOSSARY.replace("a byte range of buffer 0", "a byte range of the buffer the grid shows")

    def key_bindings(self) -> list[Binding]:
        """Without another buffer to show, the buffer keys are left out of the help and the
        command palette, as they are hidden from the footer."""
        keys = super().key_bindings()
        return keys if self.has_buffers() else [b for b in keys if not b.action.startswith("buffer")]

    def action_buffer(self, by: int) -> None:
        """Show the data buffer ``by`` on in the grid; the selected cell stays where the new
        buffer has it, else moves to its last segment."""
        r = self.replay
        r.show_buffer(r.next_buffer(by))
        self.cell = (self.cell[0], max(0, min(self.cell[1], r.nsegments - 1)))
        self.moved()

    def action_zoom(self) -> None:
        """The grid's next zoom level in the collective view; in the training view, time
        magnified around the cursor, in the lanes and the chart at once."""
        if self.view == "training":
            zoom = self.query_one(TrainingView).next_zoom()
            self.notify(f"time x{zoom}" if zoom > 1 else "the whole step")
        else:
            grid = self.query_one(ProvenanceGrid)
            grid.zoom = ZOOMS[(ZOOMS.index(grid.zoom) + 1) % len(ZOOMS)]
        self.moved()

    def action_view(self) -> None:
        self.view = "collective" if self.view == "training" else "training"

    def watch_view(self, view: str) -> None:
        self.query_one(ContentSwitcher).current = view
        self.moved()

    def on_provenance_grid_cell_selected(self, message: ProvenanceGrid.CellSelected) -> None:
        self.cell, self.op = (message.rank, message.seg), None
        self.show()

    def on_virtual_table_row_highlighted(self, message: VirtualTable.RowHighlighted) -> None:
        if message.table.id in ("transfers", "ttransfers"):
            view = self.query_one(f"#{self.view}")
            self.op = int(view.transfers_shown[message.index])
            self.show()


class DrillScreen(ReplayScreen):
    """A collective's own schedule, opened from a training step; escape goes back to it."""

    BACK = "back to the step"
    # escape and b go back (a drilled collective is one ring on one buffer: b has no buffer to show);
    # b is bound on its own and kept out of the footer, which would otherwise name it in escape's place
    # (ReplayScreen binds b first, and Textual keeps a key where the first class that binds it put it)
    BINDINGS = [Binding("escape", "back", BACK, priority=True), Binding("b", "back", BACK, priority=True, show=False)]

    def has_buffers(self) -> bool:
        return False

    def help_rows(self) -> list[tuple[str, str]]:
        """One row for both keys back, as for every other key with two."""
        rows = super().help_rows()
        keys = ", ".join(k for k, what in rows if what == self.BACK)
        first = next(i for i, (_, what) in enumerate(rows) if what == self.BACK)
        return [(keys, what) if i == first else (k, what) for i, (k, what) in enumerate(rows)
                if what != self.BACK or i == first]

    def action_back(self) -> None:
        self.app.pop_screen()
