"""Two traces of one program side by side: durations per step and per op, error, first divergence.

Comparing is a join on op id (DESIGN.md), so the two programs must be equal
(:func:`simulator.trace.program_equal`). Trace ``a`` is the reference (say, simulated) and ``b``
the one judged (say, measured): error = (b - a) / a.

[Note: step duration]
A step's duration is its span on the trace's clock: its last end minus its first start. Steps
may overlap when ranks drift apart; the span is still how long that round took. A step that
never ran (all NaN) has a NaN duration. The *first divergence* is the first step whose error's
magnitude exceeds the threshold (default 10%), or that ran in one trace and not the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.errors import UsageError
from simulator.trace import Trace, program_equal

DEFAULT_THRESHOLD = 0.10


def error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(b - a) / a, as a fraction: 0 where both are 0, inf where only a is, NaN where either is."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (b - a) / a
    out[(a == 0) & (b == 0)] = 0.0
    return out


@dataclass(frozen=True)
class Comparison:
    """Step and op durations of trace ``a`` against trace ``b`` (see [Note: step duration])."""

    a: Trace
    b: Trace
    names: tuple[str, str]
    bounds: np.ndarray      # op-id offsets of each step
    step_a: np.ndarray      # (n_steps,) seconds
    step_b: np.ndarray
    threshold: float

    @property
    def n_steps(self) -> int:
        return int(self.step_a.size)

    @property
    def step_error(self) -> np.ndarray:
        return error(self.step_a, self.step_b)

    @property
    def divergent(self) -> np.ndarray:
        """Mask of the steps that differ by more than the threshold."""
        err = self.step_error
        ran_once = np.isnan(self.step_a) != np.isnan(self.step_b)
        return ran_once | (np.abs(np.nan_to_num(err, nan=0.0)) > self.threshold)

    @property
    def first_divergence(self) -> int | None:
        hit = np.flatnonzero(self.divergent)
        return int(hit[0]) if hit.size else None

    def makespans(self) -> tuple[float, float]:
        return _makespan(self.a), _makespan(self.b)

    def ops(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Op ids of ``step`` and their durations in ``a`` and ``b``."""
        ids = np.arange(self.bounds[step], self.bounds[step + 1])
        return ids, (self.a.end - self.a.start)[ids], (self.b.end - self.b.start)[ids]


def _makespan(t: Trace) -> float:
    ran = t.ran
    return float(np.max(t.end[ran]) - np.min(t.start[ran])) if ran.any() else float("nan")


def _spans(t: Trace, bounds: np.ndarray) -> np.ndarray:
    out = np.full(bounds.size - 1, np.nan)
    full = np.flatnonzero(np.diff(bounds) > 0)
    if full.size:
        with np.errstate(invalid="ignore"):
            starts = np.fmin.reduceat(t.start, bounds[full])
            ends = np.fmax.reduceat(t.end, bounds[full])
        out[full] = ends - starts
    return out


def compare(a: Trace, b: Trace, names: tuple[str, str] = ("a", "b"), *,
            threshold: float = DEFAULT_THRESHOLD) -> Comparison:
    """Compare two traces of one program; :class:`UsageError` when the programs differ."""
    if not program_equal(a.program, b.program):
        raise UsageError(f"{names[0]} and {names[1]} hold different programs "
                         f"({a.program.describe()}, {a.program.n_ops} ops vs "
                         f"{b.program.describe()}, {b.program.n_ops} ops); compare traces of "
                         f"one program")
    bounds = a.program.step_bounds()
    return Comparison(a, b, names, bounds, _spans(a, bounds), _spans(b, bounds), threshold)
