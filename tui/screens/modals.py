"""Small screens on top of a replay: a one-line prompt (go to, find) and the help screen.

A prompt is a modal screen rather than an Input in the layout because the replay's step keys
(left/right, home/end) are priority bindings: inside a modal they no longer apply, so the Input
keeps its own cursor keys.
"""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static


class PromptScreen(ModalScreen[str | None]):
    """Ask for one line; dismiss with the text (enter) or None (escape)."""

    DEFAULT_CSS = """
    PromptScreen { align: center middle; }
    PromptScreen > Vertical { width: 60; height: auto; border: round $accent; padding: 0 1;
                              background: $surface; }
    PromptScreen Label { color: $text-muted; }
    """
    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, title: str, hint: str) -> None:
        super().__init__()
        self.title_text, self.hint = title, hint

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = self.title_text
            yield Input(placeholder=self.hint)
            yield Label(f"{self.hint}; enter to go, escape to cancel")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    """Every key of the screen below, from its bindings (one source of truth), and the terms."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 100; max-width: 96%; height: auto; max-height: 94%;
                                  border: round $accent; padding: 0 1; background: $surface; }
    """
    BINDINGS = [Binding("escape,q,question_mark", "close", "close")]

    GLOSSARY = (
        "provenance: the set of ranks whose input a cell's current value contains.\n"
        "segment s: a byte range of buffer 0 between chunk boundaries (a ring's chunk).\n"
        "changed (yellow): cells the current step's transfers wrote.\n"
        "algbw = S x (share of bytes moved) / time; busbw = algbw x nccl-tests factor.\n"
        "step k: every op of steps 0..k has finished; time t: every op that ended by t.")

    def __init__(self, rows: list[tuple[str, str]], title: str, explain=None, glossary: str | None = None) -> None:
        super().__init__()
        self.rows, self.title_text, self.explain = rows, title, explain
        self.glossary = self.GLOSSARY if glossary is None else glossary

    def compose(self) -> ComposeResult:
        from .explain import DEFAULTS

        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        for key, what in self.rows:
            table.add_row(key, what)
        with VerticalScroll() as box:  # scrolls when the screen is smaller than the help
            box.border_title = self.title_text
            box.border_subtitle = "escape to close · up/down to scroll"
            if self.explain:
                yield Static(self.explain, id="explain")
            yield Static(table)
            yield Static("\n" + self.glossary + "\n" + DEFAULTS, id="glossary")

    def action_close(self) -> None:
        self.dismiss(None)
