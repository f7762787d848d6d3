"""Simulated against measured: join two traces of one program and report the error.

[Note: comparing traces]
Two traces of the same program join on op id (the Program contract). Imported traces whose
programs differ in shape but hold the same collectives join on *collective sequence*: the k-th
COLLECTIVE op of rank r in one matches the k-th of rank r in the other, and they must agree on
kind and bytes. When the measurement holds m >= 2 repetitions of the model's sequence on every
rank (a measured run of m training steps against one simulated step), its *last* repetition is
the one joined (the steady state: the first step pays warm-up, DDP's bucket rebuild, Adam's
state), and its total time is that step's window when the trace records step windows
(``meta.steps``), else the span of the joined collectives. Anything else is a
:class:`CompareError` (exit 2).

Which is which: the trace whose executor is "sim" is the *model*, the other the *measurement*;
if neither or both are simulated, A is the model and B the measurement. Every error is
``(model - measured) / measured``, in %. Durations:
  op    end - start of the op;
  step  the time the step adds: the latest end in step k minus the latest end in step k-1
        (minus the earliest start for step 0), so the steps add up to the makespan;
  class the summed durations of the ops of one class (reduce, copy, compute, all-gather, ...).
The *first divergence* is the first step whose duration errs by more than the threshold (10%).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import RankscopeError
from .program import CollKind, OpKind, Program
from .trace import Trace, program_equal


class CompareError(RankscopeError):
    """Two traces that cannot be compared (different programs, no common ops)."""


def error(model: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """(model - measured) / measured, as a fraction: 0 where both are 0, +-inf where only the
    measurement is 0, NaN where either is NaN. The one error rule of the CLI and the TUI."""
    model, measured = np.asarray(model, dtype=np.float64), np.asarray(measured, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.asarray((model - measured) / measured, dtype=np.float64)
    out[(model == 0) & (measured == 0)] = 0.0
    return out


def _scalar_error(model: float, measured: float) -> float:
    return float(error(np.array([model]), np.array([measured]))[0])


@dataclass(frozen=True)
class Comparison:
    """Trace ``a`` (the model) against trace ``b`` (the measurement), joined as [Note: comparing
    traces] says: the figures ``rankscope compare`` prints and the steps the TUI's compare
    screen walks."""

    a: Trace
    b: Trace
    names: tuple[str, str]     # (model, measured)
    joined_on: str             # "op id", or "collective sequence ..."
    ia: np.ndarray             # joined op ids of a
    ib: np.ndarray             # the matching op ids of b
    ran: np.ndarray            # mask over the pairs: ran in both (the op figures count these)
    step_model: np.ndarray     # (n_steps,) seconds each step adds; NaN: never ran
    step_measured: np.ndarray
    total_model: float
    total_measured: float
    threshold: float
    seq: np.ndarray | None = None  # collective join: each pair's position (the "step"); None: op-id join

    # -- the pieces ---------------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        return self.names[0]

    @property
    def measured_name(self) -> str:
        return self.names[1]

    @property
    def op_model(self) -> np.ndarray:
        """Durations in ``a`` of the joined ops that ran in both."""
        ia = self.ia[self.ran]
        return self.a.end[ia] - self.a.start[ia]

    @property
    def op_measured(self) -> np.ndarray:
        ib = self.ib[self.ran]
        return self.b.end[ib] - self.b.start[ib]

    @property
    def op_class(self) -> np.ndarray:
        return op_classes(self.a.program)[self.ia[self.ran]]

    @property
    def n_steps(self) -> int:
        return int(self.step_model.size)

    @property
    def step_error(self) -> np.ndarray:
        return error(self.step_model, self.step_measured)

    @property
    def divergent(self) -> np.ndarray:
        """Mask of the steps that err by more than the threshold, or ran in one trace only."""
        ran_once = np.isnan(self.step_model) != np.isnan(self.step_measured)
        return ran_once | (np.abs(np.nan_to_num(self.step_error, nan=0.0)) > self.threshold)

    @property
    def first_divergence(self) -> int | None:
        hit = np.flatnonzero(self.divergent)
        return int(hit[0]) if hit.size else None

    # -- navigation (the TUI) ------------------------------------------------------------------
    def ops(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Op ids (of ``a``) of ``step`` and their durations in ``a`` and ``b`` (every op of the
        step, ran or not: NaN durations for those that did not)."""
        if self.seq is None:
            bounds = self.a.program.step_bounds()
            ids = np.arange(bounds[step], bounds[step + 1])
            return ids, (self.a.end - self.a.start)[ids], (self.b.end - self.b.start)[ids]
        sel = self.seq == step
        ia, ib = self.ia[sel], self.ib[sel]
        return ia, (self.a.end - self.a.start)[ia], (self.b.end - self.b.start)[ib]

    def first_op(self, step: int) -> int:
        """An op of ``a`` in ``step`` (for its phase)."""
        if self.seq is None:
            return int(self.a.program.step_bounds()[step])
        return int(self.ia[np.argmax(self.seq == step)])

    def step_of(self, op: int) -> int | None:
        """The step that op ``op`` of ``a`` is in (None: it is not joined)."""
        if self.seq is None:
            return int(self.a.program.step[op])
        hit = np.flatnonzero(self.ia == op)
        return int(self.seq[hit[0]]) if hit.size else None

    # -- the report (the CLI) ------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        e = np.abs(error(self.op_model, self.op_measured))
        e = e[~np.isnan(e)]
        return {
            "model": self.model_name, "measured": self.measured_name, "joined_on": self.joined_on,
            "ops": int(self.ran.sum()),
            "median_abs_error": float(np.median(e)) if e.size else None,
            "p90_abs_error": float(np.percentile(e, 90)) if e.size else None,
            "total_model": self.total_model, "total_measured": self.total_measured,
            "total_error": _scalar_error(self.total_model, self.total_measured),
            "first_divergence_step": self.first_divergence,
            "threshold": self.threshold,
        }

    def by_class(self) -> list[dict[str, Any]]:
        out = []
        cls, dm, dx = self.op_class, self.op_model, self.op_measured
        for c in sorted(set(cls.tolist())):
            sel = cls == c
            m, x = float(dm[sel].sum()), float(dx[sel].sum())
            out.append({"class": c, "ops": int(sel.sum()), "model": m, "measured": x,
                        "error": _scalar_error(m, x)})
        return out

    def by_step(self) -> list[dict[str, Any]]:
        e = self.step_error
        return [{"step": k, "model": float(a), "measured": float(b), "error": float(x)}
                for k, (a, b, x) in enumerate(zip(self.step_model, self.step_measured, e))]


def op_classes(prog: Program) -> np.ndarray:
    """The class each op is counted in: its :meth:`Program.op_label`."""
    return prog.op_labels()


def step_durations(prog: Program, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """What each step adds to the run (see the module note); NaN for steps that never ran."""
    if prog.n_ops == 0:
        return np.zeros(0)
    last = np.full(prog.n_steps, -np.inf)
    ok = ~np.isnan(end) & (prog.step >= 0)
    np.maximum.at(last, prog.step[ok], end[ok])
    first = np.nanmin(start) if np.any(~np.isnan(start)) else 0.0
    prev = np.concatenate([[first], last[:-1]])
    prev = np.maximum.accumulate(np.where(np.isinf(prev), first, prev))
    out = last - prev
    out[np.isinf(last)] = np.nan
    return np.maximum(out, 0.0)


def _collective_keys(prog: Program) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(op ids, rank, k-th collective of that rank) of every COLLECTIVE op, in op order per rank."""
    ops = np.flatnonzero(prog.kind == OpKind.COLLECTIVE)
    ops = ops[np.lexsort((ops, prog.rank[ops]))]
    r = prog.rank[ops]
    seq = np.arange(ops.size) - np.searchsorted(r, r)
    return ops, r, seq


def compare(a: Trace, b: Trace, names: tuple[str, str] = ("A", "B"), *, threshold: float = 0.10) -> Comparison:
    """Join ``a`` and ``b`` (see [Note: comparing traces]) and measure model against measurement."""
    if b.meta.get("executor") == "sim" and a.meta.get("executor") != "sim":
        a, b, names = b, a, (names[1], names[0])
    pa, pb = a.program, b.program
    if pa.nranks != pb.nranks:
        raise CompareError(f"{names[0]} and {names[1]} hold different programs ({pa.nranks} and {pb.nranks} ranks)")
    seq = None
    if program_equal(pa, pb, meta=False):
        ia = ib = np.arange(pa.n_ops)
        joined = "op id"
        steps_a, steps_b = step_durations(pa, a.start, a.end), step_durations(pb, b.start, b.end)
    else:
        ia, ib, seq, reps = collective_join(pa, pb, names)
        joined = "collective sequence" + (f" (the last of {names[1]}'s {reps} repetitions)" if reps > 1 else "")
        steps_a = sequence_durations(seq, a.start[ia], a.end[ia])
        steps_b = sequence_durations(seq, b.start[ib], b.end[ib])
    ran = ~np.isnan(a.end[ia]) & ~np.isnan(b.end[ib])
    if not ran.any():
        raise CompareError(f"{names[0]} and {names[1]} have no op that ran in both")
    total_b = b.makespan
    if seq is not None and reps > 1:  # the measured step: its recorded window, else its collectives' span
        windows = [w[-1] for w in (b.meta.get("steps") or {}).values() if w]
        total_b = max(float(w[1] - w[0]) for w in windows) if windows else b.span(ib)
    return Comparison(a, b, names, joined, ia, ib, ran, steps_a, steps_b, a.makespan, total_b, threshold, seq)


def collective_join(pa: Program, pb: Program, names: tuple[str, str]
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The collective-sequence join of [Note: comparing traces]: op ids of A and of B matched
    pairwise, each pair's position k in its rank's sequence, and how many repetitions of A's
    sequence B holds (its last one is joined). CompareError when the sequences do not line up."""
    oa, ra, sa = _collective_keys(pa)
    ob, rb, sb = _collective_keys(pb)
    reps = _repetitions(ra, rb, pa.nranks)
    if reps > 1:
        per = np.bincount(ra, minlength=pa.nranks)
        keep = sb >= (reps - 1) * per[rb]
        ob, rb, sb = ob[keep], rb[keep], sb[keep] - (reps - 1) * per[rb[keep]]
    if oa.size == 0 or ob.size == 0:
        raise CompareError(f"{names[0]} and {names[1]} hold different programs ({pa.describe()}, "
                           f"{pa.n_ops} ops; {pb.describe()}, {pb.n_ops} ops), and no collectives to "
                           f"join them on")
    if oa.size != ob.size or not (np.array_equal(ra, rb) and np.array_equal(sa, sb)):
        raise CompareError(f"{names[0]} and {names[1]} hold different programs (different ops, and "
                           f"collective sequences of {oa.size} and {ob.size} ops that do not line up)")
    ka, kb = pa.coll_kind[pa.arg[oa]], pb.coll_kind[pb.arg[ob]]
    na, nb = pa.coll_bytes[pa.arg[oa]], pb.coll_bytes[pb.arg[ob]]
    bad = np.flatnonzero((ka != kb) | (na != nb))
    if bad.size:
        i = bad[0]
        raise CompareError(f"collective {int(sa[i])} of rank {int(ra[i])} differs: "
                           f"{CollKind(int(ka[i])).label} of {int(na[i])} B in {names[0]}, "
                           f"{CollKind(int(kb[i])).label} of {int(nb[i])} B in {names[1]}")
    return oa, ob, sa, reps


def _repetitions(ra: np.ndarray, rb: np.ndarray, nranks: int) -> int:
    """m when every rank has m times as many collectives in B as in A (m >= 2), else 1."""
    na, nb = np.bincount(ra, minlength=nranks), np.bincount(rb, minlength=nranks)
    if not na.any() or (nb[na == 0] != 0).any():
        return 1
    m = nb[na > 0] // na[na > 0]
    ok = (m >= 2) & (nb[na > 0] == m * na[na > 0])
    return int(m[0]) if ok.all() and (m == m[0]).all() else 1


def sequence_durations(seq: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Step = the k-th collective across ranks: latest end minus the previous one's latest end."""
    k = int(seq.max()) + 1 if seq.size else 0
    last = np.full(k, -np.inf)
    np.maximum.at(last, seq, end)
    prev = np.concatenate([[np.nanmin(start)], last[:-1]])
    return np.maximum(last - prev, 0.0)
