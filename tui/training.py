"""What a training step did on each rank: compute and comm lanes over time, and live memory.

For traces whose program has COMPUTE, ALLOC or FREE ops (ZeRO, FSDP, DDP steps). Pure: no
widgets, no Textual.

[Note: lanes]
A rank's *compute* lane holds its COMPUTE ops and its *comm* lane the transfers it sends. Lanes
come from op kinds rather than the trace's ``lane`` column, because executors name their lanes
differently (the engine: compute/comm/memory; a recorder: send/recv/...). ALLOC and FREE take no
time and show in the memory chart instead.

[Note: memory]
Live bytes per rank and buffer category at time t are the sizes of the buffers alive on that
rank: alive at the start as ``simulator.provenance.layout(program, 0).alive`` says (the one
memory function), then each ALLOC or FREE that has ended by t switches its buffer on or off on its
rank, as ``Layout`` applies it. They change only when an ALLOC or FREE ends, so the timeline holds
one state per such moment, computed in one pass (a cumulative sum over the moments): a measured
training run of a thousand allocations opens at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rankscope.simulator.program import CollKind, OpKind, Program
from rankscope.simulator.provenance import layout
from rankscope.simulator.trace import Trace

CATEGORIES = ("param_shard", "param_unsharded", "grad", "optim", "activation")
LANES = ("compute", "comm")


def is_training(p: Program) -> bool:
    """True when the program does more than move chunks: it computes, allocates or frees."""
    return bool((p.kind >= OpKind.COMPUTE).any())


@dataclass(frozen=True)
class Lanes:
    """Ops that ran, as bars: op ``op[i]`` of ``rank[i]`` on lane ``lane[i]`` (an index into
    :data:`LANES`) over ``[start[i], end[i])``, sorted by (rank, lane, start)."""

    op: np.ndarray
    rank: np.ndarray
    lane: np.ndarray
    start: np.ndarray
    end: np.ndarray

    def of(self, rank: int, lane: int) -> slice:
        """Where the bars of (``rank``, ``lane``) lie in the arrays."""
        key = self.rank * len(LANES) + self.lane
        k = rank * len(LANES) + lane
        return slice(int(np.searchsorted(key, k)), int(np.searchsorted(key, k, side="right")))


def lanes(trace: Trace) -> Lanes:
    """Every compute op and every transfer or collective that ran, on its rank's lane (see [Note:
    lanes])."""
    p = trace.program
    lane = np.where(p.kind == OpKind.COMPUTE, 0, np.where(is_comm(p), 1, -1))
    ops = np.flatnonzero((lane >= 0) & trace.ran)
    order = np.lexsort((trace.start[ops], lane[ops], p.rank[ops]))
    ops = ops[order]
    return Lanes(ops, p.rank[ops].astype(np.int64), lane[ops], trace.start[ops], trace.end[ops])


def is_comm(p: Program) -> np.ndarray:
    """Ops on the communication lane: transfers, and the COLLECTIVE ops of training programs."""
    return p.is_transfer | (p.kind == OpKind.COLLECTIVE)


def coll_label(p: Program, op: int) -> str:
    """``all-gather`` and the like, for a COLLECTIVE op."""
    return CollKind(int(p.coll_kind[p.arg[op]])).label


def label(p: Program, op: int) -> str:
    """A short name for a bar: the compute label, ``>3 c5`` for a send of chunk 5 to rank 3, or
    the collective's kind."""
    if p.kind[op] == OpKind.COMPUTE:
        arg = int(p.arg[op])
        return p.compute_label[arg] if arg < len(p.compute_label) and p.compute_label[arg] \
            else f"op {op}"
    if p.kind[op] == OpKind.COLLECTIVE:
        return coll_label(p, op)
    return f">{int(p.peer[op])} c{int(p.arg[op])}"


@dataclass(frozen=True)
class Memory:
    """Live bytes over time (see [Note: memory]): from ``times[i]`` until ``times[i+1]`` rank r
    holds ``bytes[i, r, c]`` bytes of category ``categories[c]``. ``times[0]`` is the trace's
    start, when the buffers alive before any op count."""

    categories: tuple[str, ...]
    times: np.ndarray   # (E,)
    bytes: np.ndarray   # (E, N, C) int64

    @property
    def total(self) -> np.ndarray:
        """(E, N) live bytes of all categories."""
        return self.bytes.sum(axis=2)

    def index_at(self, t: float) -> int:
        """The state holding at time ``t``."""
        return max(0, int(np.searchsorted(self.times, t, side="right")) - 1)

    def at(self, t: float) -> np.ndarray:
        """(N, C) live bytes at time ``t``."""
        return self.bytes[self.index_at(t)]

    def peak(self) -> tuple[np.ndarray, np.ndarray]:
        """Per rank, the most bytes ever live and the first time they were."""
        tot = self.total
        i = np.argmax(tot, axis=0)
        return tot[i, np.arange(tot.shape[1])], self.times[i]


def memory(trace: Trace) -> Memory:
    """The live-memory timeline of ``trace`` (see [Note: memory])."""
    p = trace.program
    cats = tuple(c for c in CATEGORIES if any(b.category == c for b in p.buffers)) + tuple(
        dict.fromkeys(b.category for b in p.buffers if b.category not in CATEGORIES))
    sizes = np.array([b.nbytes for b in p.buffers], np.int64)
    cat_of = np.array([cats.index(b.category) for b in p.buffers], np.int64)
    onehot = np.zeros((len(p.buffers), len(cats)), np.int64)
    onehot[np.arange(len(p.buffers)), cat_of] = sizes
    ran = trace.ran
    t0 = float(np.min(trace.start[ran])) if ran.any() else 0.0
    mem = np.flatnonzero(((p.kind == OpKind.ALLOC) | (p.kind == OpKind.FREE)) & ran)
    when = trace.end[mem]
    times = np.unique(np.concatenate([[t0], when]))
    out = np.zeros((times.size, p.nranks, len(cats)), np.int64)
    out[0] = layout(p, 0).alive.astype(np.int64) @ onehot
    if mem.size:
        buf = p.arg[mem]
        sign = np.where(p.kind[mem] == OpKind.ALLOC, 1, -1)
        np.add.at(out, (np.searchsorted(times, when), p.rank[mem], cat_of[buf]), sign * sizes[buf])
    return Memory(cats, times, np.cumsum(out, axis=0))
