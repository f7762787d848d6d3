"""The lesson screen: a replay of the page's trace with its narration above, and a question to
answer before a step it is about is applied (see :mod:`rankscope.tui.lessons`).

Moving on onto a step with an unanswered question opens a prompt instead; the answer is checked by
:meth:`LessonRun.answer` against the simulator's state after that step, the verdict (right or
not, the right answer, why) is shown, and the step is applied. ``n``/``p`` turn the page.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.compose import compose
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Static

from .. import heap, training
from ..lessons.run import LessonRun
from .modals import PromptScreen
from .replay import ReplayScreen


class LessonScreen(ReplayScreen):
    """See the module docstring."""

    DEFAULT_CSS = """
    LessonScreen #narration-box { height: 13; padding: 0 1; border: round $accent; }
    LessonScreen #narration-box:focus { border: double $accent; }
    LessonScreen #narration { height: auto; min-height: 100%; }
    LessonScreen > ContentSwitcher { height: 1fr; }
    LessonScreen CollectiveView #top { height: 13; max-height: 13; }
    LessonScreen CollectiveView #grid { max-height: 100%; }
    LessonScreen CollectiveView NetworkPicture { height: 100%; }
    LessonScreen CollectiveView #transfers { height: 7; max-height: 7; }
    LessonScreen CollectiveView VirtualTable { overflow-y: scroll; }
    LessonScreen.-short #narration-box { height: 11; }
    LessonScreen.-short CollectiveView #top { height: 1fr; max-height: 100%; }
    LessonScreen.-short CollectiveView #transfers, LessonScreen.-short CollectiveView #detail,
    LessonScreen.-short CollectiveView #ranks, LessonScreen.-short CollectiveView #links,
    LessonScreen.-short TrainingView #tside { display: none; }
    LessonScreen.-short CollectiveView #status { height: 1fr; }
    LessonScreen.-short TrainingView #gantt { max-height: 50%; }
    """
    """The views take what the narration leaves (a ContentSwitcher's own height is its content's,
    which would be the whole screen's and push the panels below the footer); in the collective
    view the grid and the picture share a fixed band, the transfers list a fixed height, the
    selection the rest; its lists keep their scrollbars (a step with more or fewer transfers or
    busy links than fit would otherwise add or take one, and lay the whole screen out again).
    Under :data:`TALL` rows (80x24) the narration and the main panels share the screen: the grid
    with the cursor panel, or the lanes above the memory chart; the lists and the selection step
    aside, and a narration longer than its box scrolls (tab to it, then up/down)."""
    TALL = 34
    AUTO_FOCUS = "ContentSwitcher *"  # the grid or the list, as in replay, not the narration
    VERTICAL_BREAKPOINTS = [(0, "-short"), (TALL, "-tall")]
    BINDINGS = [
        Binding("n,pagedown", "page(1)", "next page"),
        Binding("p,pageup", "page(-1)", "prev page"),
    ]

    def __init__(self, run: LessonRun) -> None:
        super().__init__(run.replay, "")
        self.run = run
        self._page()

    def _page(self) -> None:
        """Take the run's open page: its replay, its title, the view it asks for."""
        run = self.run
        self.replay, self.cell, self.op = run.replay, (0, 0), None
        self.training = training.is_training(run.replay.program)
        self.title_text = f"lesson {run.lesson.name}: {run.lesson.title} · page {run.index + 1}/{len(run.pages)}"
        view = run.page.view if run.page.view in ("collective", "training") else None
        if view is None or (view == "training" and not self.training):
            view = "training" if self.training else "collective"
        self.set_reactive(ReplayScreen.view, view)

    def body(self) -> ComposeResult:
        with VerticalScroll(id="narration-box"):  # tab to it, then up/down, when the words are longer
            yield Static(id="narration")
        yield from super().body()

    # -- moving: questions first ------------------------------------------------------------------
    def move(self, n: int) -> None:
        if n < 0:
            super().move(n)
            return
        for _ in range(n):
            if self.run.pending() is not None:
                self.ask()
                return
            if not self.replay.can_forward:
                return
            super().move(1)

    def go_end(self) -> None:
        self.move(self.replay.n_steps)

    def ask(self) -> None:
        """Put the pending question; its answer applies the step."""
        q = self.run.pending()

        def done(text: str | None) -> None:
            if text is None:
                return
            v = self.run.answer(text)
            self.notify(v.text(), severity="information" if v.ok else "warning", timeout=8)
            self.follow()
            self.moved()
        self.app.push_screen(PromptScreen(f"predict: {q.prompt}", q.hint()), done)

    async def action_page(self, d: int) -> None:
        i = self.run.index + d
        if 0 <= i < len(self.run.pages):
            self.run.open(i)
            self._page()
            self._enabled = ()
            await self.turn()
            self.sub_title = self.describe()
            self.moved()
            self.call_after_refresh(heap.settle)  # the old page's widgets collected, the new page's frozen

    async def turn(self) -> None:
        """Put the open page's widgets (narration, views) in place of the last page's; the header
        and the footer stay.

        Not ``recompose()``: the screen's own widgets would be made anew too, and a
        :class:`~textual.widgets.Header` watches the app's ``title`` and ``sub_title``, whose watcher
        lists drop a closed watcher only when that attribute changes (textual ``reactive.py``,
        ``_check_watchers``), which the app's never do: every page turn would keep one more header.
        Then the screen's query cache is emptied: Textual keys it by the screen's count of DOM
        changes and leaves it to an LRU of 1024 entries to forget (textual ``dom.py``,
        ``DOMNode.query_one``; only a node's own removal clears its cache), so the entries of every
        page before, unreachable under the new count, kept that page's views alive and through them
        its replay (views and headers: 0.5 MB a turn of ps-vs-ring; the lines the widgets rendered,
        which stayed too, are :mod:`..heap`'s)."""
        old = [w for w in self.children if not isinstance(w, (Header, Footer)) and not w.has_class("-textual-system")]
        async with self.batch():
            await self.remove_children(old)
            await self.mount_all(compose(self, self.body()), before=self.query_one(Footer))
        self._query_one_cache.clear()
        if self.focused is None:  # the focused widget left with its page: focus as a screen's open does
            auto = self.AUTO_FOCUS if self.AUTO_FOCUS is not None else self.app.AUTO_FOCUS
            for widget in self.query(auto) if auto else ():
                if widget.focusable:
                    self.set_focus(widget)
                    break

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "page":
            i = self.run.index + int(parameters[0])
            return True if 0 <= i < len(self.run.pages) else None
        return super().check_action(action, parameters)

    # -- drawing ----------------------------------------------------------------------------------
    def show(self) -> None:
        super().show()
        run = self.run
        t = Text()
        t.append(f"page {run.index + 1}/{len(run.pages)}: {run.page.title} · {run.score()}\n", style="bold")
        q = run.pending()
        if q is not None:
            t.append(f"predict before step {q.step}: {q.prompt} (→ to answer)\n", style="bold cyan")
        elif not self.replay.can_forward and run.index + 1 < len(run.pages):
            t.append("end of the page: n for the next one\n", style="bold cyan")
        if run.last is not None and run.last.question.step - 1 <= self.replay.step <= run.last.question.step:
            # about the step it applied (or a second question on it), not for the rest of the page
            t.append(run.last.text() + "\n", style="green" if run.last.ok else "yellow")
        t.append(run.narration())
        nar = self.query_one("#narration", Static)
        nar.update(t, layout=False)  # in a box of fixed height: no re-layout of the screen per step
        width, box = nar.content_region.width, self.query_one("#narration-box").scrollable_content_region
        if width and max(nar.get_content_height(box.size, self.size, width), box.height) != nar.size.height:
            nar.refresh(layout=True)  # longer or shorter than the box, unlike the last step: the scroll follows
