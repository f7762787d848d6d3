"""What ``rankscope sim train`` reports per rank: memory by category, peak and where, time, bytes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .memory import exposed_comm, memory_timeline
from .program import OpKind, Program
from .traffic import traffic
from .training import MODEL_STATE


def train_report(prog: Program, sim) -> dict[str, Any]:
    """Per-rank rows and a summary for a simulated training step."""
    mt = memory_timeline(prog, sim.start, sim.end)
    exposed = exposed_comm(prog, sim.start, sim.end)
    tr = traffic(prog)
    rows = []
    for r in range(prog.nranks):
        cat = mt.peak_by_category(r)
        peak, at, when = mt.peak(r)
        rows.append({
            "rank": r, **{c: cat.get(c, 0) for c in ("param", "grad", "optim", "activation",
                                                    "param_unsharded", "grad_unsharded")},
            "model_state": sum(cat.get(c, 0) for c in MODEL_STATE),
            "peak": peak, "peak_op": at, "peak_at": prog.describe_op(at), "peak_time": when,
            "at_peak": mt.at_peak(r),
            "step_time": sim.makespan, "exposed_comm": float(exposed[r]),
            "bytes_sent": int(tr.sent[r]), "bytes_received": int(tr.received[r]),
        })
    n_coll = {k: int(((prog.kind == OpKind.COLLECTIVE) & (prog.rank == 0)).sum()) for k in ("all",)}
    return {"program": prog.meta, "rows": rows, "collectives_per_rank": n_coll["all"],
            "step_time": sim.makespan, "method": sim.info["method"],
            "comm_lanes": int(sim.info.get("comm_lanes", 1)), "streams": stream_summary(prog, sim.start, sim.end)}


def stream_summary(prog: Program, start: np.ndarray, end: np.ndarray, rank: int = 0) -> dict[str, Any]:
    """Rank ``rank``'s collectives per stream (``meta["streams"]``; one "comm" stream in programs
    without): how many, their busy seconds, and the seconds two or more were in flight at once."""
    names = list(prog.meta.get("streams") or ["comm"])
    ops = np.flatnonzero((prog.kind == OpKind.COLLECTIVE) & (prog.rank == rank))
    cs = prog.meta.get("coll_stream")
    stream = np.asarray(cs, dtype=np.int64)[prog.arg[ops]] if cs is not None else np.zeros(ops.size, dtype=np.int64)
    rows = [{"stream": nm, "collectives": int((stream == i).sum()),
             "busy": float((end[ops] - start[ops])[stream == i].sum())} for i, nm in enumerate(names)]
    t = np.concatenate([start[ops], end[ops]])
    d = np.concatenate([np.ones(ops.size), -np.ones(ops.size)])
    order = np.lexsort((d, t))  # ends before starts at equal times: touching is not overlapping
    depth = np.cumsum(d[order])
    ts = t[order]
    concurrent = float(np.sum(np.diff(ts)[(depth[:-1] >= 2)])) if ts.size > 1 else 0.0
    return {"rows": rows, "concurrent": concurrent}


def peak_bytes(prog: Program, sim) -> int:
    """The largest per-rank peak of a simulated step."""
    mt = memory_timeline(prog, sim.start, sim.end)
    return max(mt.peak(r)[0] for r in range(prog.nranks))


MAX_BATCH_CAP = 1 << 20
"""--find-max-batch searches micro-batches up to this many samples."""


def find_max_batch(peak_of: Callable[[int], int], limit: int, cap: int = MAX_BATCH_CAP) -> tuple[int, int | None]:
    """The largest micro-batch b <= ``cap`` with ``peak_of(b) <= limit``, and its peak (0, None if
    even b = 1 does not fit). Doubling from 1, then bisection: 2·log2(b) evaluations of
    ``peak_of`` (compile + simulate), which must not decrease as b grows (activations and
    gradients grow with it, nothing shrinks)."""
    peaks: dict[int, int] = {}

    def fits(b: int) -> bool:
        if b not in peaks:
            peaks[b] = peak_of(b)
        return peaks[b] <= limit

    if not fits(1):
        return 0, None
    lo = 1
    while lo < cap and fits(min(2 * lo, cap)):
        lo = min(2 * lo, cap)
    hi = min(2 * lo, cap + 1)   # does not fit (or is past the cap)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo, peaks[lo]
