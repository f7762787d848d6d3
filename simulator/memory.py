"""Per-rank memory timelines and exposed communication, from a program and its op times.

Memory follows from ALLOC and FREE ops alone (state is derived, not stored twice): a buffer counts
from its ALLOC's start to its FREE's end; buffers alive before the first op count from time 0.
Events at one instant are applied in op-id order, the order a rank issued them.
*Exposed* communication is time a rank spends in communication ops while its compute lane is
idle: the part of the step that overlap did not hide.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .program import OpKind, Program


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
    cats = tuple(dict.fromkeys(b.category for b in prog.buffers))
    cat_of = np.array([cats.index(b.category) for b in prog.buffers] or [0], dtype=np.int64)
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
