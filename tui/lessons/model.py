"""What a lesson is: data that the TUI renders and a test walks without a screen.

[Note: lessons]
A :class:`Lesson` is a short sequence of :class:`Page`. A page is a real trace, built when the
page opens (by the simulator, or measured on gloo and handed in by the CLI), a narration that
follows the cursor (a function of the :class:`~rankscope.tui.replay.Replay`: its numbers come from
the simulator's state, never typed in) and questions. A :class:`Question` is asked *before* its
step is applied ("what will rank 2 hold in chunk 1 after this step?"); its right answer is a
function of the state *after* that step, read from the same Replay the screen shows, so the
program checks the student's prediction against the simulator itself. A lesson is walked by
:class:`~rankscope.tui.lessons.run.LessonRun`, which keeps the score.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from rankscope.simulator.errors import RankscopeError
from rankscope.simulator.trace import Trace
from rankscope.simulator.units import parse_size

from ..replay import Replay


class LessonError(RankscopeError):
    """A lesson that does not exist, or a page that cannot be built."""


def parse_ranks(text: str, nranks: int) -> frozenset[int]:
    """``{0,2-3}``, ``0 2 3``, ``all``, ``none`` -> a set of ranks."""
    t = text.strip().lower().strip("{}[]() ")
    if t in ("all", "every rank", "everyone"):
        return frozenset(range(nranks))
    if t in ("", "none", "nothing", "no one", "{}", "-"):
        return frozenset()
    out: set[int] = set()
    for part in re.split(r"[,\s]+", t):
        part = part.removeprefix("ranks").removeprefix("rank").removeprefix("r")
        if "-" in part:
            a, b = (int(x) for x in part.split("-", 1))
            if not 0 <= a <= b < nranks:
                raise ValueError(f"{part}: not a range of ranks 0..{nranks - 1}")
            out |= set(range(a, b + 1))
        elif part:
            out.add(int(part))
    return frozenset(out)


BYTES_TOLERANCE = 0.02
"""A size is right within 2%: answers are read from printed sizes (24.2MiB, 25.4MB), rounded."""


def _same_bytes(given: str, right: str) -> bool:
    g, r = parse_size(given.replace(" ", "")), parse_size(right.replace(" ", ""))
    return abs(g - r) <= BYTES_TOLERANCE * max(abs(r), 1)


KINDS: dict[str, Callable[[str, str, int], bool]] = {
    "ranks": lambda g, r, n: parse_ranks(g, n) == parse_ranks(r, n),
    "rank": lambda g, r, n: int(g.strip().lower().removeprefix("rank").removeprefix("r")) == int(r),
    "bytes": lambda g, r, n: _same_bytes(g, r),
    "choice": lambda g, r, n: g.strip().lower() == r.strip().lower(),
}
"""How a given answer is compared with the right one, per kind of question."""


@dataclass(frozen=True)
class Question:
    """Asked when the cursor stands at step ``step - 1``, before step ``step`` is applied.
    ``answer(r)`` and ``reason(r)`` read a Replay standing at the end of step ``step``."""

    step: int
    prompt: str
    kind: str
    answer: Callable[[Replay], str]
    reason: Callable[[Replay], str]
    choices: tuple[str, ...] = ()

    def hint(self) -> str:
        return {"ranks": "a set of ranks: 0,2,3 or 1-3 or all",
                "rank": "one rank: 2", "bytes": "a size: 48MiB, 1.5GB, 4096",
                "choice": " / ".join(self.choices)}[self.kind]

    def check(self, given: str, right: str, nranks: int) -> bool:
        """Whether ``given`` says ``right``; an answer that cannot be read is wrong."""
        try:
            return KINDS[self.kind](given, right, nranks)
        except (ValueError, RankscopeError):
            return False


@dataclass(frozen=True)
class Page:
    """One trace with its narration and questions (see [Note: lessons])."""

    title: str
    build: Callable[[], Trace]
    narration: Callable[[Replay], str]
    questions: tuple[Question, ...] = ()
    view: str | None = None      # "collective" or "training" to open in; None: the screen's choice


@dataclass(frozen=True)
class Lesson:
    """``pages(data)`` builds the page list; ``data`` is what the CLI handed in (a real run's
    result), or {}."""

    name: str
    title: str
    summary: str
    pages: Callable[[dict[str, Any]], list[Page]]
    needs: tuple[str, ...] = field(default_factory=tuple)   # keys of data the CLI may compute
