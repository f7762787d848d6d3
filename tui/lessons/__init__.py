"""Guided lessons, in order, from one device to measured collectives (see [Note: lessons] in
:mod:`.model`). ``rankscope learn`` lists them; ``rankscope learn NAME`` opens one."""

from __future__ import annotations

from . import basics, collectives, measured, sharding
from .model import Lesson, LessonError

LESSONS: tuple[Lesson, ...] = (*basics.LESSONS, *collectives.LESSONS, *sharding.LESSONS, *measured.LESSONS)


def lesson(name: str) -> Lesson:
    """The lesson called ``name``, or :class:`LessonError` naming the choices."""
    for les in LESSONS:
        if les.name == name:
            return les
    raise LessonError(f"no lesson {name!r}: choose from {', '.join(x.name for x in LESSONS)}")
