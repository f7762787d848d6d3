"""The time axis the Gantt and the memory chart share: one column per 1/cols of [t0, t1], a tick
every 16 columns labelled with the time since the trace's start."""

from __future__ import annotations

import numpy as np

from rankscope.simulator.units import format_seconds

TICK_EVERY = 16


def column(t: float, t0: float, t1: float, cols: int) -> int:
    """The column of time ``t`` (not clamped)."""
    return int(np.floor((t - t0) / max(t1 - t0, 1e-30) * cols))


def ticks(t0: float, t1: float, cols: int, origin: float) -> list[str]:
    """``cols`` characters: ``|1.2ms`` at every :data:`TICK_EVERY`-th column, blanks between."""
    text = [" "] * cols
    for c in range(0, cols, TICK_EVERY):
        t = t0 + (t1 - t0) * c / cols - origin
        tick = "|" + (format_seconds(t) if abs(t) > 1e-15 else "0")
        text[c:c + len(tick)] = tick[: cols - c]
    return text
