"""Walking a lesson without a screen: pages, the cursor, questions and the score.

The TUI's lesson screen drives one :class:`LessonRun`; a test drives another the same way and
sees the same narration, questions, answers and score (see [Note: lessons] in :mod:`.model`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..replay import Replay
from .model import Lesson, LessonError, Page, Question


@dataclass(frozen=True)
class Verdict:
    """The outcome of one answer: whether it was right, the right answer, and why."""

    question: Question
    given: str
    right: str
    ok: bool
    reason: str

    def text(self) -> str:
        head = "right" if self.ok else f"not quite: the answer is {self.right}"
        return f"{head}. {self.reason}"


class LessonRun:
    """One pass through ``lesson``: page ``index`` open, its Replay, the answers so far."""

    def __init__(self, lesson: Lesson, data: dict[str, Any] | None = None) -> None:
        self.lesson = lesson
        self.pages: list[Page] = lesson.pages(data or {})
        if not self.pages:
            raise LessonError(f"lesson {lesson.name!r} has no pages")
        self.verdicts: dict[tuple[int, int], Verdict] = {}
        self.last: Verdict | None = None
        self.index = -1
        self.replay: Replay
        self.open(0)

    # -- pages ---------------------------------------------------------------------------------
    @property
    def page(self) -> Page:
        return self.pages[self.index]

    def open(self, i: int) -> None:
        """Open page ``i``: build its trace, cursor at the start."""
        if not 0 <= i < len(self.pages):
            raise LessonError(f"page {i + 1} of {len(self.pages)} does not exist")
        self.index = i
        self.replay = Replay(self.page.build())
        self.last = None

    # -- the cursor ----------------------------------------------------------------------------
    def pending(self) -> Question | None:
        """The question to answer before the next step is applied, if it is not answered yet."""
        nxt = self.replay.step + 1
        for k, q in enumerate(self.page.questions):
            if q.step == nxt and (self.index, k) not in self.verdicts:
                return q
        return None

    def forward(self) -> None:
        """One step on; a pending question must be answered first (:meth:`answer`)."""
        if self.pending() is not None:
            raise LessonError("answer the question first: " + self.pending().prompt)
        self.replay.forward()

    def answer(self, given: str) -> Verdict:
        """Answer the pending question, then apply its step and check against the state there."""
        q = self.pending()
        if q is None:
            raise LessonError("no question is waiting")
        k = self.page.questions.index(q)
        self.replay.seek_step(q.step)
        right = q.answer(self.replay)
        v = Verdict(q, given, right, q.check(given, right, self.replay.nranks), q.reason(self.replay))
        self.verdicts[(self.index, k)] = self.last = v
        if any(o.step == q.step and (self.index, j) not in self.verdicts for j, o in enumerate(self.page.questions)):
            self.replay.seek_step(q.step - 1)  # another prediction about the same step comes first
        return v

    def narration(self) -> str:
        return self.page.narration(self.replay)

    # -- the score -----------------------------------------------------------------------------
    @property
    def asked(self) -> int:
        return len(self.verdicts)

    @property
    def right(self) -> int:
        return sum(v.ok for v in self.verdicts.values())

    @property
    def total(self) -> int:
        """Questions in the whole lesson."""
        return sum(len(p.questions) for p in self.pages)

    def score(self) -> str:
        return f"score {self.right}/{self.asked} (of {self.total} questions)"
