"""Per-rank memory timelines and exposed communication, from a program and its op times; the one
vocabulary of memory categories.

[Note: categories]
Every buffer has a ``category`` saying what it holds; the simulator, the importers and the TUI use
the names of :data:`CATEGORIES` and nothing else (:func:`category` maps any other name in, for
traces written before the vocabulary was one):
  param           persistent parameters (full for DDP/ZeRO-1/2, the rank's shard for ZeRO-3)
  grad            persistent gradients (full for DDP/ZeRO-1, the shard for ZeRO-2/3)
  optim           optimizer states (fp32 master weights, Adam's two moments)
  param_unsharded a unit's all-gathered parameters (ZeRO-3/FSDP), from its all-gather to its reshard
  grad_unsharded  transient full-size gradients (ZeRO-2's buckets, FSDP's unit gradients)
  activation      what a forward keeps for its backward
  comm            a collective's own staging copies (gloo's, NCCL's), not any of the above
  other           what nothing says more about
The order is the stacking order of memory charts: the persistent model state (the ZeRO paper's
(2 + 2 + K)Psi, Rajbhandari et al., SC'20, section 3) at the bottom, transients above it.
A profiler does not know what a buffer holds, only which phase allocated it: measured traces map
the phase in (:data:`PHASE_CATEGORY`: set-up allocations are parameters and their state, forward's
activations, backward's gradients, the optimizer's its state), so that a simulated and a measured
step stack the same names.

[Note: timeline]
Memory follows from ALLOC and FREE ops alone (state is derived, not stored twice): a buffer counts
from its ALLOC's start to its FREE's end; buffers alive before the first op count from time 0.
Events at one instant are applied in op-id order, the order a rank issued them.
:func:`memory_timeline` is that timeline per rank; :func:`live_memory` is the same timeline on one
clock for all ranks (what a chart of every rank draws), built from it.
*Exposed* communication is time a rank spends in communication ops while its compute lane is
idle: the part of the step that overlap did not hide.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .program import OpKind, Program

CATEGORIES = ("param", "grad", "optim", "param_unsharded", "grad_unsharded", "activation", "comm", "other")
"""The memory categories, in stacking order (see [Note: categories])."""
MODEL_STATE = ("param", "grad", "optim")
DESCRIPTIONS = {
    "param": "persistent parameters (the rank's shard under ZeRO-3/FSDP)",
    "grad": "persistent gradients (the rank's shard under ZeRO-2/3)",
    "optim": "optimizer state: fp32 master weights, Adam's two moments",
    "param_unsharded": "a unit's all-gathered parameters, from its all-gather to its reshard",
    "grad_unsharded": "full-size gradients before their reduce-scatter",
    "activation": "what a forward keeps for its backward",
    "comm": "a collective's own staging copies",
    "other": "anything else",
}
PHASE_CATEGORY = {"before-profiling": "param", "setup": "param", "forward": "activation",
                  "backward": "grad", "optimizer": "optim", "comm": "comm", "step": "other",
                  "other": "other"}
"""What a measured allocation most likely holds, from the phase that made it (see [Note:
categories])."""
_ALIASES = {**PHASE_CATEGORY, "param_shard": "param", "gradients": "grad", "data": "other"}


def category(name: str) -> str:
    """``name`` in the vocabulary: itself if it is one of :data:`CATEGORIES`, else what an older
    name or a measured phase stands for, else ``other``."""
    return name if name in CATEGORIES else _ALIASES.get(name, "other")


def categories_of(names) -> tuple[str, ...]:
    """The vocabulary categories that ``names`` map to, in stacking order."""
    got = {category(n) for n in names}
    return tuple(c for c in CATEGORIES if c in got)


@dataclass(frozen=True)
class MemoryTimeline:
    """``times[r]``/``total[r]``: bytes alive on rank r after each event (op ``ops[r][i]``);
    ``by_category[r][c]`` the same per category (``categories``)."""

    categories: tuple[str, ...]
    times: list[np.ndarray]
    ops: list[np.ndarray]
    total: list[np.ndarray]
    by_category: list[np.ndarray]   # (events, n_categories) per rank

    def peak(self, rank: int) -> tuple[int, int, float]:
        """(peak bytes, op at which it is reached (-1 = before any op), time)."""
        tot = self.total[rank]
        if tot.size == 0:
            return 0, -1, 0.0
        i = int(np.argmax(tot))
        return int(tot[i]), int(self.ops[rank][i]), float(self.times[rank][i])

    def peak_by_category(self, rank: int) -> dict[str, int]:
        """Each category's own maximum over the step (not at one instant)."""
        cat = self.by_category[rank]
        return {c: int(cat[:, k].max()) if cat.size else 0 for k, c in enumerate(self.categories)}

    def at_peak(self, rank: int) -> dict[str, int]:
        """Bytes per category at the rank's peak."""
        tot = self.total[rank]
        if tot.size == 0:
            return {c: 0 for c in self.categories}
        row = self.by_category[rank][int(np.argmax(tot))]
        return {c: int(v) for c, v in zip(self.categories, row)}


def memory_timeline(prog: Program, start: np.ndarray, end: np.ndarray) -> MemoryTimeline:
    """Bytes alive per rank and category after each ALLOC or FREE (see [Note: timeline])."""
    cats = categories_of(b.category for b in prog.buffers)
    cat_of = np.array([cats.index(category(b.category)) for b in prog.buffers] or [0], dtype=np.int64)
    size = np.array([b.nbytes for b in prog.buffers] or [0], dtype=np.int64)
    alive0 = np.array([b.alive for b in prog.buffers] or [False])
    mem = np.flatnonzero((prog.kind == OpKind.ALLOC) | (prog.kind == OpKind.FREE))
    ran = mem[~np.isnan(end[mem])]
    when = np.where(prog.kind[ran] == OpKind.ALLOC, start[ran], end[ran])
    delta = np.where(prog.kind[ran] == OpKind.ALLOC, 1, -1) * size[prog.arg[ran]]
    order = np.lexsort((ran, when, prog.rank[ran]))
    ran, when, delta = ran[order], when[order], delta[order]
    rank = prog.rank[ran]
    cuts = np.searchsorted(rank, np.arange(prog.nranks + 1))
    base = np.zeros(len(cats), dtype=np.int64)
    np.add.at(base, cat_of[alive0.nonzero()[0]], size[alive0])
    times, ops, total, by_cat = [], [], [], []
    for r in range(prog.nranks):
        sl = slice(cuts[r], cuts[r + 1])
        k = sl.stop - sl.start
        d = np.zeros((k + 1, len(cats)), dtype=np.int64)
        d[0] = base
        d[np.arange(1, k + 1), cat_of[prog.arg[ran[sl]]]] = delta[sl]
        c = np.cumsum(d, axis=0)
        times.append(np.concatenate([[0.0], when[sl]]))
        ops.append(np.concatenate([[-1], ran[sl]]))
        by_cat.append(c)
        total.append(c.sum(axis=1))
    return MemoryTimeline(cats, times, ops, total, by_cat)


@dataclass(frozen=True)
class LiveMemory:
    """:class:`MemoryTimeline` on one clock: from ``times[i]`` until ``times[i+1]`` rank r holds
    ``bytes[i, r, c]`` bytes of category ``categories[c]``; ``times[0]`` is the trace's start,
    when the buffers alive before any op count. Several events of a rank at one instant are one
    state here (the last): a chart draws instants."""

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


def live_memory(prog: Program, start: np.ndarray, end: np.ndarray, t0: float = 0.0) -> LiveMemory:
    """:func:`memory_timeline` for all ranks on one clock starting at ``t0`` (see [Note: timeline])."""
    mt = memory_timeline(prog, start, end)
    times = np.unique(np.concatenate([[t0], *(t[1:] for t in mt.times)]))
    out = np.zeros((times.size, prog.nranks, len(mt.categories)), np.int64)
    for r in range(prog.nranks):
        applied = np.searchsorted(mt.times[r][1:], times, side="right")  # events done by each time
        out[:, r, :] = mt.by_category[r][applied]
    return LiveMemory(mt.categories, times, out)


def exposed_comm(prog: Program, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Seconds per rank during which a transfer or collective of that rank runs and its compute
    lane is idle."""
    comm = np.flatnonzero(prog.is_transfer | (prog.kind == OpKind.COLLECTIVE))
    comp = np.flatnonzero(prog.kind == OpKind.COMPUTE)
    comm = comm[np.argsort(prog.rank[comm], kind="stable")]
    comp = comp[np.argsort(prog.rank[comp], kind="stable")]
    cut_m = np.searchsorted(prog.rank[comm], np.arange(prog.nranks + 1))
    cut_c = np.searchsorted(prog.rank[comp], np.arange(prog.nranks + 1))
    out = np.zeros(prog.nranks)
    for r in range(prog.nranks):
        m, c = comm[cut_m[r]:cut_m[r + 1]], comp[cut_c[r]:cut_c[r + 1]]
        a, b = merge_intervals(start[m], end[m])
        if a.size == 0:
            continue
        cs, ce = merge_intervals(start[c], end[c])
        out[r] = float((b - a).sum() - (_busy_before(cs, ce, b) - _busy_before(cs, ce, a)).sum())
    return out


def merge_intervals(s: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted disjoint union of the intervals [s, e) (empty and NaN intervals dropped)."""
    s, e = np.asarray(s, float), np.asarray(e, float)
    ok = ~np.isnan(s) & ~np.isnan(e) & (e > s)
    s, e = s[ok], e[ok]
    if s.size == 0:
        return s, e
    o = np.argsort(s, kind="stable")
    s, e = s[o], np.maximum.accumulate(e[o])
    new = np.concatenate([[True], s[1:] > e[:-1]])
    idx = np.flatnonzero(new)
    return s[idx], e[np.concatenate([idx[1:] - 1, [s.size - 1]])]


def _busy_before(cs: np.ndarray, ce: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Time covered by the disjoint sorted intervals [cs, ce) before each instant ``t``."""
    if cs.size == 0:
        return np.zeros_like(t)
    cum = np.concatenate([[0.0], np.cumsum(ce - cs)])
    i = np.searchsorted(cs, t, side="right") - 1
    inside = np.clip(t - cs[np.maximum(i, 0)], 0.0, (ce - cs)[np.maximum(i, 0)])
    return np.where(i >= 0, cum[np.maximum(i, 0)] + inside, 0.0)
