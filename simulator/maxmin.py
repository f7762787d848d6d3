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

    A flow with an empty route gets an infinite rate. Each round works on the unfrozen flows'
    hops only (every hop of an unfrozen flow is unfrozen, so they stay CSR): a link's share at each
    of its hops, each flow's smallest share (a segment minimum), and the locally minimal links as
    those on which no hop's flow has a smaller bottleneck elsewhere (``share <= min fmin x (1 +
    tie)`` is ``share <= fmin x (1 + tie)`` at every hop: rounding is monotone).
    """
    nf = ptr.size - 1
    rate = np.full(nf, np.inf)
    if nf == 0 or idx.size == 0:
        return rate
    lens = np.diff(ptr)
    cap = np.asarray(link_bw, dtype=np.float64).copy()
    count = np.bincount(idx, minlength=cap.size).astype(np.float64)
    flows = np.flatnonzero(lens > 0)  # unfrozen flows, their hops (CSR) and their hops' flow
    fl = lens[flows]
    hops = idx if flows.size == nf else idx[np.repeat(ptr[flows] - np.concatenate([[0], np.cumsum(fl)[:-1]]), fl)
                                            + np.arange(int(fl.sum()))]
    notready = np.zeros(cap.size, dtype=bool)
    while flows.size:
        start = np.zeros(fl.size, dtype=np.int64)
        np.cumsum(fl[:-1], out=start[1:])
        owner = np.repeat(np.arange(fl.size), fl)
        hs = cap[hops] / count[hops]
        fmin = np.minimum.reduceat(hs, start)
        bad = hs > fmin[owner] * (1 + _TIE)
        notready[hops[bad]] = True
        hit = np.logical_or.reduceat(~notready[hops], start)
        notready[hops[bad]] = False
        rate[flows[hit]] = fmin[hit]
        gone = hit[owner]
        np.subtract.at(cap, hops[gone], fmin[owner[gone]])
        np.maximum(cap, 0.0, out=cap)
        count -= np.bincount(hops[gone], minlength=cap.size)
        keep = ~hit
        flows, fl, hops = flows[keep], fl[keep], hops[~gone]
    return rate


def max_min_rows(hops: np.ndarray, link_bw: np.ndarray) -> np.ndarray:
    """:func:`max_min_csr` for flows that all cross ``k`` links, row ``f`` of ``hops`` (F, k): the
    same rounds on a 2-D array (the same floats: minima, and the rates taken off in the same order)."""
    nf, k = hops.shape
    rate = np.full(nf, np.inf)
    if nf == 0 or k == 0:
        return rate
    cap = np.asarray(link_bw, dtype=np.float64).copy()
    count = np.bincount(hops.ravel(), minlength=cap.size).astype(np.float64)
    flows = np.arange(nf)
    notready = np.zeros(cap.size, dtype=bool)
    while flows.size:
        hs = cap[hops] / count[hops]
        fmin = _rows(np.minimum, hs)
        bad = hops[hs > (fmin * (1 + _TIE))[:, None]]
        notready[bad] = True
        hit = _rows(np.logical_or, ~notready[hops])
        notready[bad] = False
        rate[flows[hit]] = fmin[hit]
        gone = hops[hit].ravel()
        np.subtract.at(cap, gone, np.repeat(fmin[hit], k))
        np.maximum(cap, 0.0, out=cap)
        count -= np.bincount(gone, minlength=cap.size)
        keep = ~hit
        flows, hops = flows[keep], hops[keep]
    return rate


def _rows(op, a: np.ndarray) -> np.ndarray:
    """``op`` folded over the few columns of ``a`` (faster than a reduction along a short axis)."""
    out = a[:, 0].copy()
    for j in range(1, a.shape[1]):
        op(out, a[:, j], out=out)
    return out


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
