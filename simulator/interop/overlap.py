"""Communication/computation overlap per rank, as HolisticTraceAnalysis defines it.

HTA's ``get_comm_comp_overlap`` (hta/analyzers/communication_analysis.py) takes one rank's GPU
kernels, merges the communication kernels' intervals and the computation kernels' intervals
separately, and reports (time both run) / (time communication runs). Here the same quantity comes
from a trace: communication is the rank's collectives (its COLLECTIVE ops and
``meta["other_collectives"]``) and the transfers it sends or receives, computation its COMPUTE
ops: exactly the kernels :mod:`.kineto_export` writes, so HTA on that export reports these figures.
It is also 1 - exposed / communication time, with :func:`simulator.memory.exposed_comm`'s
"exposed" (for programs whose transfers count on their sender only).
"""

from __future__ import annotations

import numpy as np

from ..memory import merge_intervals as merge
from ..program import OpKind
from ..trace import Trace


def intersection(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """Total length of the intersection of two sorted disjoint interval sets."""
    (as_, ae), (bs, be) = a, b
    i = j = 0
    total = 0.0
    while i < as_.size and j < bs.size:
        lo, hi = max(as_[i], bs[j]), min(ae[i], be[j])
        if hi > lo:
            total += hi - lo
        if ae[i] < be[j]:
            i += 1
        else:
            j += 1
    return total


def rank_intervals(trace: Trace, rank: int) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(communication, computation) intervals of ``rank``, each merged."""
    p = trace.program
    comm = ((p.kind == OpKind.COLLECTIVE) & (p.rank == rank)) | (p.is_transfer & ((p.rank == rank) | (p.peer == rank)))
    comp = (p.kind == OpKind.COMPUTE) & (p.rank == rank)
    others = [c for c in trace.meta.get("other_collectives", []) if int(c["rank"]) == rank]
    cs = np.concatenate([trace.start[comm], [float(c["start"]) for c in others]])
    ce = np.concatenate([trace.end[comm], [float(c["end"]) for c in others]])
    return merge(cs, ce), merge(trace.start[comp], trace.end[comp])


def comm_comp_overlap(trace: Trace) -> np.ndarray:
    """Per rank, the fraction of communication time during which computation also runs (NaN for
    a rank without communication). HTA reports 100 x this, rounded to 2 decimals."""
    out = np.full(trace.program.nranks, np.nan)
    for r in range(trace.program.nranks):
        comm, comp = rank_intervals(trace, r)
        total = float((comm[1] - comm[0]).sum())
        if total > 0:
            out[r] = intersection(comm, comp) / total
    return out
