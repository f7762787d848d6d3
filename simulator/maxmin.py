"""Max-min fair rates of flows over capacitated links (progressive filling), on CSR flow sets.

Progressive filling (Bertsekas & Gallager, "Data Networks", 1992, section 6.5.2; SimGrid's
``lmm`` solver, src/kernel/lmm/maxmin.cpp) raises every unfrozen flow's rate together; a link
saturates when its remaining capacity divided by its unfrozen flows (its *share*) is reached, and
freezes its flows there. One round here freezes more than the global minimum: a link whose share
is no larger than the smallest share on any route through it (*locally minimal*) saturates at
exactly that share whatever else happens, because shares never fall while flows are frozen at or
below them. So each round freezes the flows of every locally minimal link (the global minimum is
one), and a network of many independent bottlenecks needs a few rounds, not one per level.
Flows are given as CSR: flow f crosses links ``idx[ptr[f]:ptr[f+1]]`` (each at most once).
"""

from __future__ import annotations

import numpy as np

_TIE = 1e-12  # relative: shares this close are one level (as float rounding leaves them)


def max_min_csr(ptr: np.ndarray, idx: np.ndarray, link_bw: np.ndarray) -> np.ndarray:
    """Max-min fair rates of the flows of CSR routes (``ptr``, ``idx``) on links of ``link_bw``.

    A flow with an empty route gets an infinite rate.
    """
    nf = ptr.size - 1
    rate = np.full(nf, np.inf)
    if nf == 0 or idx.size == 0:
        return rate
    lens = np.diff(ptr)
    owner = np.repeat(np.arange(nf, dtype=np.int64), lens)
    cap = np.asarray(link_bw, dtype=np.float64).copy()
    count = np.bincount(idx, minlength=cap.size).astype(np.float64)
    live = lens > 0  # unfrozen flows
    hop_live = np.ones(idx.size, dtype=bool)
    while live.any():
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(count > 0, cap / np.where(count > 0, count, 1.0), np.inf)
        hs = np.where(hop_live, share[idx], np.inf)
        fmin = np.full(nf, np.inf)
        np.minimum.at(fmin, owner[hop_live], hs[hop_live])
        lmin = np.full(cap.size, np.inf)  # the smallest share on any live route through the link
        np.minimum.at(lmin, idx[hop_live], fmin[owner[hop_live]])
        ready = share <= lmin * (1 + _TIE)
        hit_hop = hop_live & ready[idx]
        hit = np.zeros(nf, dtype=bool)
        hit[owner[hit_hop]] = True
        hit &= live
        rate[hit] = fmin[hit]
        gone = hop_live & hit[owner]
        np.subtract.at(cap, idx[gone], rate[owner[gone]])
        np.maximum(cap, 0.0, out=cap)
        count -= np.bincount(idx[gone], minlength=cap.size)
        hop_live &= ~gone
        live &= ~hit
    return rate


def max_min_rates(hops: np.ndarray, link_bw: np.ndarray) -> np.ndarray:
    """Max-min fair rates of flows with routes ``hops`` (F, H; -1 padded) by progressive filling."""
    hops = np.asarray(hops)
    if hops.shape[0] == 0:
        return np.zeros(0)
    valid = hops >= 0
    ptr = np.zeros(hops.shape[0] + 1, dtype=np.int64)
    np.cumsum(valid.sum(axis=1), out=ptr[1:])
    rate = max_min_csr(ptr, hops[valid].astype(np.int64), link_bw)
    rate[~valid.any(axis=1)] = 0.0  # as before: a flow over no link is not given a rate here
    return rate
