"""What a training step did on each rank: compute and comm lanes over time, and live memory.

For traces whose program has COMPUTE, ALLOC or FREE ops (ZeRO, FSDP, DDP steps). Pure: no
widgets, no Textual.

[Note: lanes]
A rank's *compute* lane holds its COMPUTE ops and its *comm* lane the transfers it sends. Lanes
come from op kinds rather than the trace's ``lane`` column, because executors name their lanes
differently (the engine: compute/comm/memory; a recorder: send/recv/...). ALLOC and FREE take no
time and show in the memory chart instead. When the program records two or more collective
streams (``meta["streams"]``, ``meta["coll_stream"]``; simulator/engine_share.py [Note: streams,
communicators and lanes]), each stream is a lane of its own, named after it (``compute``,
``all_gather``, ``reduce_scatter``), so two collectives that ran at once on two streams are two
bars on two rows, never one drawn over the other; a stream's collectives run in issue order, so
its row has no overlaps. Transfers, if such a program has any, go on the first stream's row.
A collective's bar also names its stream (``all-gather @all_gather``).

[Note: memory]
Live bytes per rank and buffer category are ``simulator.memory.live_memory``: the simulator's one
timeline (a buffer counts from its ALLOC's start to its FREE's end) in the one vocabulary of
categories (``simulator.memory.CATEGORIES``, in stacking order: persistent state at the bottom),
on the trace's clock from its first op.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rankscope.simulator.memory import LiveMemory, live_memory
from rankscope.simulator.program import CollKind, OpKind, Program
from rankscope.simulator.trace import Trace

LANES = ("compute", "comm")


def is_training(p: Program) -> bool:
    """True when the program does more than move chunks: it computes, allocates or frees."""
    return bool((p.kind >= OpKind.COMPUTE).any())


@dataclass(frozen=True)
class Lanes:
    """Ops that ran, as bars: op ``op[i]`` of ``rank[i]`` on lane ``lane[i]`` (an index into
    ``names``) over ``[start[i], end[i])``, sorted by (rank, lane, start)."""

    op: np.ndarray
    rank: np.ndarray
    lane: np.ndarray
    start: np.ndarray
    end: np.ndarray
    names: tuple[str, ...] = LANES

    def of(self, rank: int, lane: int) -> slice:
        """Where the bars of (``rank``, ``lane``) lie in the arrays."""
        key = self.rank * len(self.names) + self.lane
        k = rank * len(self.names) + lane
        return slice(int(np.searchsorted(key, k)), int(np.searchsorted(key, k, side="right")))


def lane_names(p: Program) -> tuple[str, ...]:
    """``compute`` then ``comm``, or ``compute`` then one lane per collective stream where the
    program records two or more (see [Note: lanes])."""
    names = p.meta.get("streams")
    if names and len(names) > 1 and p.meta.get("coll_stream") is not None:
        return ("compute", *(str(n) for n in names))
    return LANES


def lanes(trace: Trace) -> Lanes:
    """Every compute op and every transfer or collective that ran, on its rank's lane (see [Note:
    lanes])."""
    p = trace.program
    names = lane_names(p)
    comm = np.ones(p.n_ops, dtype=np.int64)
    if len(names) > len(LANES):
        coll = np.flatnonzero(p.kind == OpKind.COLLECTIVE)
        comm[coll] = 1 + np.asarray(p.meta["coll_stream"], dtype=np.int64)[p.arg[coll]]
    lane = np.where(p.kind == OpKind.COMPUTE, 0, np.where(is_comm(p), comm, -1))
    ops = np.flatnonzero((lane >= 0) & trace.ran)
    order = np.lexsort((trace.start[ops], lane[ops], p.rank[ops]))
    ops = ops[order]
    return Lanes(ops, p.rank[ops].astype(np.int64), lane[ops], trace.start[ops], trace.end[ops], names)


def is_comm(p: Program) -> np.ndarray:
    """Ops on the communication lane: transfers, and the COLLECTIVE ops of training programs."""
    return p.is_transfer | (p.kind == OpKind.COLLECTIVE)


def coll_label(p: Program, op: int) -> str:
    """``all-gather`` and the like, for a COLLECTIVE op."""
    return CollKind(int(p.coll_kind[p.arg[op]])).label


def stream(p: Program, op: int) -> str | None:
    """The stream a COLLECTIVE op ran on (``meta["streams"]``), None where the program records none."""
    names, cs = p.meta.get("streams"), p.meta.get("coll_stream")
    if not names or cs is None:
        return None
    return str(names[int(cs[int(p.arg[op])])])


def label(p: Program, op: int) -> str:
    """A short name for a bar: the compute label, ``>3 c5`` for a send of chunk 5 to rank 3, or
    the collective's kind and, if recorded, its stream (``all-gather @all_gather``)."""
    if p.kind[op] == OpKind.COMPUTE:
        arg = int(p.arg[op])
        return p.compute_label[arg] if arg < len(p.compute_label) and p.compute_label[arg] \
            else f"op {op}"
    if p.kind[op] == OpKind.COLLECTIVE:
        s = stream(p, op)
        return coll_label(p, op) + (f" @{s}" if s else "")
    return f">{int(p.peer[op])} c{int(p.arg[op])}"


Memory = LiveMemory
"""Live bytes over time, on the trace's clock: the simulator's one memory timeline."""


def memory(trace: Trace) -> Memory:
    """The live-memory timeline of ``trace`` (see [Note: memory])."""
    ran = trace.ran
    t0 = float(np.min(trace.start[ran])) if ran.any() else 0.0
    return live_memory(trace.program, trace.start, trace.end, t0)
