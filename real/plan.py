"""A program cut into per-rank *waves*: the sends and receives one rank posts together.

[Note: waves]
Every rank runs its own ops, as sender and as receiver, in step order. A *wave* is one step of
the program, or a part of it when an op waits for another op of the same step (the builders never
do that, but a hand-made program may): the wave of an op is (its step, its depth among the ops of
that step it transitively waits for). Within a wave a rank posts all its receives, then all its
sends, waits for the receives (reducing or copying each as it lands), then for the sends; it
starts the next wave only after that. So a rank receives a chunk before it sends anything that
depends on it (a dependency is always in an earlier wave), and there is no deadlock: every rank
walks the same global sequence of waves, and both ends of a transfer post it in the same wave.

Receives of a REDUCE land in a scratch tensor, then ``add_`` into the buffer; a COPY lands in the
buffer directly unless the same wave also sends an overlapping range from this rank (then it lands
in scratch and is copied after the sends finished: ``guard``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rankscope.simulator.errors import UsageError
from rankscope.simulator.program import OpKind, Program


@dataclass(frozen=True)
class Transfer:
    """One side of a transfer: op id, the other rank, and the range ``[lo, hi)`` of the flat buffer
    ``buffer`` in tensor items (words), with ``scratch`` the offset of its landing zone in the
    rank's scratch tensor (-1: lands in place)."""

    op: int
    peer: int
    buffer: int
    lo: int
    hi: int
    reduce: bool
    scratch: int = -1


@dataclass(frozen=True)
class Wave:
    index: int           # global wave number
    step: int            # the program step it belongs to
    sends: tuple[Transfer, ...]
    recvs: tuple[Transfer, ...]
    guard: bool          # a send overlaps a receive: finish sends before writing the buffer


def check_transfers_only(prog: Program) -> None:
    """The real executor runs transfer programs (what the collective builders make)."""
    bad = np.flatnonzero(prog.kind > OpKind.COPY)
    if bad.size:
        op = int(bad[0])
        raise UsageError(f"op {op} is a {OpKind(int(prog.kind[op])).name} op; the real executor runs "
                         f"transfer programs (the collective builders') only")


def wave_of(prog: Program) -> np.ndarray:
    """The global wave of every op (see [Note: waves]): a dense number ordered by (step, depth)."""
    m = prog.n_ops
    step = np.maximum(prog.step.astype(np.int64), 0)
    if m == 0:
        return np.zeros(0, dtype=np.int64)
    owner = np.repeat(np.arange(m), np.diff(prog.dep_ptr))
    same = step[prog.dep_idx] == step[owner]
    depth = np.zeros(m, dtype=np.int64)
    if same.any():
        done = np.zeros(m, dtype=bool)
        left = m
        while left:  # Kahn-style passes: an op's depth is known once its same-step deps are
            progressed = False
            for op in np.flatnonzero(~done):
                ds = prog.deps(int(op))
                ds = ds[step[ds] == step[op]]
                if done[ds].all():
                    depth[op] = depth[ds].max() + 1 if ds.size else 0
                    done[op] = True
                    left -= 1
                    progressed = True
            if not progressed:
                raise UsageError("the program's dependencies form a cycle")
    key = step * (int(depth.max()) + 1) + depth
    return np.unique(key, return_inverse=True)[1].astype(np.int64)


def rank_waves(prog: Program, rank: int, itemsize: int) -> tuple[list[Wave], int]:
    """The waves in which ``rank`` sends or receives, and the scratch items it needs."""
    check_transfers_only(prog)
    waves = wave_of(prog)
    mine = np.flatnonzero((prog.rank == rank) | (prog.peer == rank))
    out: list[Wave] = []
    scratch_max = 0
    order = mine[np.lexsort((mine, waves[mine]))]
    for w in np.unique(waves[order]):
        ops = order[waves[order] == w]
        sends, recvs = [], []
        for op in ops:
            c = int(prog.arg[op])
            lo, n = int(prog.chunk_off[c]) // itemsize, int(prog.chunk_len[c]) // itemsize
            x = Transfer(int(op), int(prog.peer[op] if prog.rank[op] == rank else prog.rank[op]),
                         int(prog.chunk_buf[c]), lo, lo + n, prog.kind[op] == OpKind.REDUCE)
            (sends if prog.rank[op] == rank else recvs).append(x)
        guard = any(s.buffer == r.buffer and s.lo < r.hi and r.lo < s.hi for s in sends for r in recvs)
        used, placed = 0, []
        for r in recvs:
            if r.reduce or guard:
                placed.append(Transfer(r.op, r.peer, r.buffer, r.lo, r.hi, r.reduce, used))
                used += r.hi - r.lo
            else:
                placed.append(r)
        scratch_max = max(scratch_max, used)
        out.append(Wave(int(w), int(prog.step[ops[0]]), tuple(sends), tuple(placed), guard))
    return out, scratch_max
