"""Keys shared by every screen that walks through steps: step, jump, play, go to, find, help.

Subclasses say how to move (:meth:`CursorScreen.can_back` ... :meth:`CursorScreen.go_op`) and
how to redraw (:meth:`CursorScreen.show`). Keys that make no sense where the cursor stands (next
at the last step, previous at the start) are disabled through :meth:`check_action`, and a move
that changes which are calls :meth:`refresh_bindings` so the footer and the palette follow.

Play advances one step per tick at a speed in steps per second (``+``/``-`` through
:data:`SPEEDS`), not in trace time: a step is the unit the views explain, and the time each step
took is on screen anyway.
"""

from __future__ import annotations

import re

from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen
from textual.timer import Timer

from rankscope.simulator.errors import RankscopeError

from .modals import HelpScreen, PromptScreen

SPEEDS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)  # steps per second while playing
_TIME = re.compile(r"^\s*t?\s*=?\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(s|ms|us|µs|ns)\s*$")
_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_target(text: str) -> tuple[str, float]:
    """``("step", 12)`` from ``12``; ``("time", 0.0015)`` from ``1.5ms`` (seconds from the
    trace's start); :class:`RankscopeError` otherwise."""
    text = text.strip()
    if re.fullmatch(r"-?\d+", text):
        return "step", int(text)
    m = _TIME.match(text)
    if m is None:
        raise RankscopeError(f"cannot read {text!r}: give a step (12) or a time (1.5ms, 200us)")
    return "time", float(m.group(1)) * _UNITS[m.group(2)]


class CursorScreen(Screen):
    """A screen with a step cursor; see the module docstring."""

    BINDINGS = [
        Binding("left", "step(-1)", "prev", priority=True),
        Binding("right", "step(1)", "next", priority=True),
        Binding("shift+left", "step(-10)", "-10 steps", priority=True, show=False),
        Binding("shift+right", "step(10)", "+10 steps", priority=True, show=False),
        Binding("home", "home", "start", priority=True, show=False),
        Binding("end", "end", "end", priority=True, show=False),
        Binding("space", "play", "play/pause", priority=True),
        Binding("plus,equals_sign", "speed(1)", "faster", show=False),
        Binding("minus", "speed(-1)", "slower", show=False),
        Binding("g", "goto", "go to"),
        Binding("slash", "find", "find op"),
        Binding("question_mark", "help", "help"),
        Binding("q", "app.quit", "quit"),
    ]

    playing: reactive[bool] = reactive(False, init=False)
    speed: reactive[int] = reactive(2, init=False)  # index into SPEEDS

    def __init__(self) -> None:
        super().__init__()
        self._timer: Timer | None = None
        self._enabled: tuple[bool, ...] = ()

    # -- what subclasses provide ---------------------------------------------------------------
    def can_back(self) -> bool:
        raise NotImplementedError

    def can_forward(self) -> bool:
        raise NotImplementedError

    def move(self, n: int) -> None:
        """``n`` steps on (or back, when negative)."""
        raise NotImplementedError

    def go_home(self) -> None:
        raise NotImplementedError

    def go_end(self) -> None:
        raise NotImplementedError

    def go_to(self, kind: str, value: float) -> None:
        """To ``("step", s)`` or ``("time", seconds from the start)``."""
        raise NotImplementedError

    def go_op(self, op: int) -> None:
        raise NotImplementedError

    def show(self) -> None:
        """Hand the model's state at the cursor down to the widgets."""
        raise NotImplementedError

    def describe(self) -> str:
        """The header's subtitle: what is shown (the play state is added to it)."""
        raise NotImplementedError

    # -- plumbing --------------------------------------------------------------------------------
    def moved(self) -> None:
        """Redraw, and refresh the keys when one became possible or impossible: the footer
        rebuilds itself on every refresh, which would cost more than the step. The keys first:
        a key's new style reaches the screen through its own message queue, and asked for after
        the views it would miss their frame and cost a second one."""
        enabled = (self.can_back(), self.can_forward(), self.playing)
        if enabled != self._enabled:
            self._enabled = enabled
            self.refresh_bindings()
        self.show()

    def key_bindings(self) -> list[Binding]:
        """This screen's bindings, its base classes' first: the help screen and the command
        palette list them, so neither can drift from the keys."""
        return [b for cls in reversed(type(self).__mro__) if issubclass(cls, CursorScreen)
                for b in cls.__dict__.get("BINDINGS", [])]

    def help_rows(self) -> list[tuple[str, str]]:
        """(keys, what) for every binding of this screen, for the help screen."""
        rows = []
        for b in self.key_bindings():
            keys = ", ".join(self.app.get_key_display(Binding(k, b.action))
                             for k in b.key.split(","))
            rows.append((keys, b.description))
        return rows + [("tab / shift+tab", "next / previous panel"), ("ctrl+p", "command palette")]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "step":
            ok = self.can_forward() if int(parameters[0]) > 0 else self.can_back()
        elif action == "home":
            ok = self.can_back()
        elif action == "end":
            ok = self.can_forward()
        elif action == "play":
            ok = self.playing or self.can_forward()
        else:
            return True
        return True if ok else None  # None: shown greyed out, does nothing

    # -- actions ---------------------------------------------------------------------------------
    def action_step(self, n: int) -> None:
        self.move(n)
        self.moved()

    def action_home(self) -> None:
        self.go_home()
        self.moved()

    def action_end(self) -> None:
        self.go_end()
        self.moved()

    def action_play(self) -> None:
        self.playing = not self.playing

    def action_speed(self, delta: int) -> None:
        self.speed = max(0, min(len(SPEEDS) - 1, self.speed + delta))

    def watch_playing(self, playing: bool) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if playing:
            self._timer = self.set_interval(1 / SPEEDS[self.speed], self._tick)
        play = f" · ▶ {SPEEDS[self.speed]:g} steps/s" if playing else ""
        self.sub_title = self.describe() + play
        self.moved()

    def watch_speed(self) -> None:
        if self.playing:
            self.watch_playing(True)
        else:
            self.notify(f"play speed: {SPEEDS[self.speed]:g} steps/s")

    def _tick(self) -> None:
        if self.can_forward():
            self.action_step(1)
        else:
            self.playing = False

    def action_goto(self) -> None:
        def done(text: str | None) -> None:
            if text:
                try:
                    self.go_to(*parse_target(text))
                except RankscopeError as e:
                    self.notify(str(e), severity="error")
                self.moved()
        self.app.push_screen(PromptScreen("go to", "a step (12) or a time (1.5ms)"), done)

    def action_find(self) -> None:
        def done(text: str | None) -> None:
            if text:
                try:
                    self.go_op(int(text))
                except ValueError:
                    self.notify(f"{text!r} is not an op id (a whole number)", severity="error")
                except RankscopeError as e:
                    self.notify(str(e), severity="error")
                self.moved()
        self.app.push_screen(PromptScreen("find op", "an op id (17)"), done)

    def explain(self):
        """What is on this screen, for the help (a Rich Text; subclasses say more)."""
        from rich.text import Text

        return Text()

    def glossary(self) -> str | None:
        """The help's terms, where this screen words them otherwise (None: the help's own)."""
        return None

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen(self.help_rows(), "rankscope: this screen", self.explain(), self.glossary()))
