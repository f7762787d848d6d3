"""Two traces of one program side by side: durations per step and per op, error, first divergence.

Comparing is a join on op id (the Program contract), so the two programs must be equal
(:func:`simulator.trace.program_equal`). The conventions are ``rankscope compare``'s
(simulator/compare.py, [Note: comparing traces]), so both tools print the same figures: trace
``a`` is the model and ``b`` the measurement (when only the second trace is simulated, the two
swap), and error = (a - b) / b.

[Note: step duration]
A step's duration is the time it adds (:func:`simulator.compare.step_durations`): its latest end
minus the latest end of the steps before it, so the steps add up to the makespan. A step that
never ran (all NaN) has a NaN duration. The *first divergence* is the first step whose error's
magnitude exceeds the threshold (default 10%), or that ran in one trace and not the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rankscope.simulator.compare import CompareError, collective_join, sequence_durations, step_durations
from rankscope.simulator.errors import UsageError
from rankscope.simulator.trace import Trace, program_equal

DEFAULT_THRESHOLD = 0.10


def error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a - b) / b, model against measurement, as a fraction: 0 where both are 0, inf where only b
    is, NaN where either is."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (a - b) / b
    out[(a == 0) & (b == 0)] = 0.0
    return out


@dataclass(frozen=True)
class Comparison:
    """Step and op durations of trace ``a`` against trace ``b`` (see [Note: step duration])."""

    a: Trace
    b: Trace
    names: tuple[str, str]
    bounds: np.ndarray      # op-id offsets of each step (op-id join)
    step_a: np.ndarray      # (n_steps,) seconds
    step_b: np.ndarray
    threshold: float
    # the collective-sequence join (two programs that differ but issue the same collectives, e.g.
    # a simulated training step and a measured run of several): matched op ids of a and b, and
    # each pair's position, which is the "step" here; None for the op-id join
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    joined: str = "op id"

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
        if self.pairs is None:
            return _makespan(self.a), _makespan(self.b)
        ia, ib, _ = self.pairs
        return _span(self.a, ia), _span(self.b, ib)

    def first_op(self, step: int) -> int:
        """An op of ``a`` in ``step`` (for its phase)."""
        if self.pairs is None:
            return int(self.bounds[step])
        ia, _, seq = self.pairs
        return int(ia[np.argmax(seq == step)])

    def step_of(self, op: int) -> int | None:
        """The step that op ``op`` of ``a`` is in (None: it is not joined)."""
        if self.pairs is None:
            return int(self.a.program.step[op])
        ia, _, seq = self.pairs
        hit = np.flatnonzero(ia == op)
        return int(seq[hit[0]]) if hit.size else None

    def ops(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Op ids (of ``a``) of ``step`` and their durations in ``a`` and ``b``."""
        if self.pairs is not None:
            ia, ib, seq = self.pairs
            sel = seq == step
            return ia[sel], (self.a.end - self.a.start)[ia[sel]], (self.b.end - self.b.start)[ib[sel]]
        ids = np.arange(self.bounds[step], self.bounds[step + 1])
        return ids, (self.a.end - self.a.start)[ids], (self.b.end - self.b.start)[ids]


def _makespan(t: Trace) -> float:
    ran = t.ran
    return float(np.max(t.end[ran]) - np.min(t.start[ran])) if ran.any() else float("nan")


def _span(t: Trace, ids: np.ndarray) -> float:
    ok = ~np.isnan(t.end[ids])
    return float(np.max(t.end[ids][ok]) - np.min(t.start[ids][ok])) if ok.any() else float("nan")


def _steps(t: Trace) -> np.ndarray:
    out = step_durations(t.program, t.start, t.end)
    ran = np.zeros(out.size, bool)
    step = t.program.step[t.ran]
    ran[step[step >= 0]] = True
    out[~ran] = np.nan  # never ran: no duration (step_durations gives the 0 it added)
    return out


def compare(a: Trace, b: Trace, names: tuple[str, str] = ("a", "b"), *,
            threshold: float = DEFAULT_THRESHOLD) -> Comparison:
    """Compare two traces: of one program op by op, else collective by collective (as
    ``rankscope compare`` joins them); :class:`UsageError` when neither join works."""
    if b.meta.get("executor") == "sim" and a.meta.get("executor") != "sim":
        a, b, names = b, a, (names[1], names[0])
    bounds = a.program.step_bounds()
    if program_equal(a.program, b.program, meta=False):
        return Comparison(a, b, names, bounds, _steps(a), _steps(b), threshold)
    if a.program.nranks != b.program.nranks:
        raise UsageError(f"{names[0]} and {names[1]} hold different programs ({a.program.nranks} and "
                         f"{b.program.nranks} ranks)")
    try:
        ia, ib, seq, reps = collective_join(a.program, b.program, names)
    except CompareError as e:
        raise UsageError(f"{e}; compare traces of one program, or of the same collectives") from None
    joined = "collective sequence" + (f", the last of {reps} repetitions in {names[1]}" if reps > 1 else "")
    return Comparison(a, b, names, bounds, sequence_durations(seq, a.start[ia], a.end[ia]),
                      sequence_durations(seq, b.start[ib], b.end[ib]), threshold, (ia, ib, seq), joined)
