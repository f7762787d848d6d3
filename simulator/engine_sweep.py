"""The sweep: every op's times by a longest-path pass, one numpy pass per step, where that is exact.

Most schedules never let a flow's rate change while it moves: a ring on a ring or a switch, a
hierarchical ring on ``nodes:MxG``, and k channels of one ring over the same ranks (k equal flows on
each link, each 1/k of it). For them every transfer's times follow from when its dependencies ended
and its connection was free, one numpy pass per step. The pass proves, per step, that the
answer is what max-min sharing gives:
- every connection carries at most one message in the step;
- every link the step uses is free (its previous flows drained) before this step's flows on it
  start moving bytes;
- the flows that share a link in the step (*uniform sharing*) start moving bytes at the same instant,
  carry the same bytes and get the same rate, the smallest over their route of a link's bandwidth
  divided by the step's flows on it. Then nothing on the link changes until they all drain together,
  and each flow's smallest share is a saturated link on which no flow gets more: the max-min
  condition (Bertsekas & Gallager 1992, section 6.5.2).
Where a check fails (or the steps are not clean levels) :func:`sweep` returns None and the event
loop runs instead. A test compares both on programs where both apply.
"""

from __future__ import annotations

import numpy as np

from .engine_context import Context, Timing, empty_timing
from .program import OpKind

_EPS = 1e-12  # relative slack for "the link was free": float rounding of equal times


def _all_unique(x: np.ndarray, stamp: np.ndarray) -> bool:
    """True if the ids in ``x`` are distinct (``stamp`` is scratch space as large as the id range)."""
    k = np.arange(x.size)
    stamp[x] = k
    return bool((stamp[x] == k).all())


def _rates(h: np.ndarray, full: bool, link_bw: np.ndarray, b0: np.ndarray, nb: np.ndarray,
           stamp: np.ndarray) -> np.ndarray | None:
    """Rates of one step's moving flows (routes ``h``, -1 padded) when links are shared uniformly, or None."""
    valid = None if full else (h >= 0)
    used = h.ravel() if full else h[valid]
    count = np.bincount(used, minlength=link_bw.size)
    share = np.append(link_bw / np.maximum(count, 1), np.inf)  # index -1 (padding) reads +inf
    rate = share[h].min(axis=1)
    flow = np.repeat(np.arange(h.shape[0]), h.shape[1])
    if not full:
        flow = flow[valid.ravel()]
    stamp[used] = flow  # one flow per link stands for all of them
    ref = stamp[used]
    if np.array_equal(b0[flow], b0[ref]) and np.array_equal(nb[flow], nb[ref]) and np.array_equal(rate[flow], rate[ref]):
        return rate
    return None


def sweep(ctx: Context, max_link_rows: int, link_bw: np.ndarray) -> Timing | None:
    prog, routes = ctx.prog, ctx.routes
    m = prog.n_ops
    if m == 0:
        return empty_timing("sweep")
    if np.any(np.diff(prog.step) < 0):
        return None
    bounds = prog.step_bounds()
    starts = bounds[:-1][np.diff(bounds) > 0]
    ndeps = np.diff(prog.dep_ptr)
    one_dep = (np.minimum.reduceat(ndeps, starts) == 1) & (np.maximum.reduceat(ndeps, starts) == 1)
    is_tr = prog.is_transfer
    all_tr = np.minimum.reduceat(is_tr.astype(np.int8), starts) == 1
    is_comp = prog.kind == OpKind.COMPUTE
    is_coll = prog.kind == OpKind.COLLECTIVE
    coll_total = np.bincount(prog.arg[is_coll], minlength=prog.coll_kind.size)
    comm_free = np.zeros(prog.nranks)  # collectives' lane per rank
    nconn = max(ctx.n_connections, 1)
    conn_free = np.zeros(nconn)  # when each connection's last message arrived
    conn_stamp = np.zeros(nconn, dtype=np.int64)
    lane_free_c = np.zeros(prog.nranks)
    nlinks = max(int(routes.hops.max()) + 1 if routes.hops.size else 1, link_bw.size, 1)
    link_busy = np.full(nlinks, -np.inf)
    link_stamp = np.zeros(nlinks, dtype=np.int64)
    bw = np.zeros(nlinks)
    bw[:link_bw.size] = link_bw
    record = int(is_tr.sum()) * routes.hops.shape[1] <= max_link_rows
    bw_start = np.zeros(m) if record else None
    arrival = np.zeros(m) if record else None
    start = np.zeros(m)
    end = np.zeros(m)
    shared_steps = 0
    dep_ptr, dep_idx = prog.dep_ptr, prog.dep_idx
    for si, lo in enumerate(starts):
        lo = int(lo)
        hi = int(bounds[prog.step[lo] + 1])
        # ready = the latest end among deps, which must all lie in earlier steps
        d0, d1 = int(dep_ptr[lo]), int(dep_ptr[hi])
        if d1 == d0:
            ready = np.zeros(hi - lo)
        else:
            deps = dep_idx[d0:d1]
            if deps.max() >= lo:
                return None
            if one_dep[si]:
                ready = end[deps]
            else:
                ready = np.zeros(hi - lo)
                has = ndeps[lo:hi] > 0
                ready[has] = np.maximum.reduceat(end[deps], (dep_ptr[lo:hi] - d0)[has])
        if all_tr[si]:
            sel, tops = slice(None), slice(lo, hi)
        else:
            sel = is_tr[lo:hi]
            tops = np.arange(lo, hi)[sel]
        slots = routes.slots(prog.rank[tops], prog.peer[tops])
        if slots.size:
            conns = ctx.connections(np.arange(lo, hi)[sel] if all_tr[si] else tops, slots)
            if not _all_unique(conns, conn_stamp):
                return None  # two messages on one connection in one step: not a clean level
            st = np.maximum(ready[sel], conn_free[conns])
            b0 = st + routes.lat[slots]
            nb = prog.chunk_len[prog.arg[tops]].astype(np.float64)
            arr = b0 + nb / routes.bw[slots]
            moving = nb > 0
            allm = bool(moving.all())
            h = routes.hops[slots if allm else slots[moving]]
            b0m = b0 if allm else b0[moving]
            if h.size:
                used = h.ravel() if routes.full else h[h >= 0]
                if not _all_unique(used, link_stamp):  # links shared in this step: uniformly?
                    rate = _rates(h, routes.full, bw, b0m, nb if allm else nb[moving], link_stamp)
                    if rate is None:
                        return None
                    if allm:
                        arr = b0 + nb / rate
                    else:
                        arr[moving] = b0m + nb[moving] / rate
                    shared_steps += 1
                arrm = arr if allm else arr[moving]
                if routes.full:
                    busy = link_busy[h].max(axis=1)
                else:
                    busy = np.where(h >= 0, link_busy[np.maximum(h, 0)], -np.inf).max(axis=1)
                if np.any(b0m < busy - _EPS * np.maximum(1.0, np.abs(busy))):
                    return None
                rows = np.repeat(arrm, h.shape[1])
                link_busy[used] = rows if routes.full else rows[(h >= 0).ravel()]
            conn_free[conns] = arr
            start[tops] = st
            red = prog.kind[tops] == OpKind.REDUCE
            end[tops] = arr + np.where(red, nb * ctx.gamma, 0.0) if ctx.gamma else arr
            if record:
                bw_start[tops] = b0
                arrival[tops] = arr
        if not all_tr[si]:
            rest = np.arange(lo, hi)[~sel]
            rr = ready[~sel]
            k = is_coll[rest]
            if k.any():
                cops, ranks, inst = rest[k], prog.rank[rest[k]], prog.arg[rest[k]]
                if np.unique(ranks).size != ranks.size:
                    return None
                ids, inv, cnt = np.unique(inst, return_inverse=True, return_counts=True)
                if np.any(cnt != coll_total[ids]):
                    return None  # a collective whose ranks are spread over steps
                go = np.full(ids.size, -np.inf)
                np.maximum.at(go, inv, np.maximum(rr[k], comm_free[ranks]))
                start[cops] = go[inv]
                end[cops] = go[inv] + ctx.coll_dur[inst]
                comm_free[ranks] = end[cops]
                rest, rr = rest[~k], rr[~k]
            c = is_comp[rest]
            if c.any():
                ranks = prog.rank[rest[c]]
                if np.unique(ranks).size != ranks.size:
                    return None
                st = np.maximum(rr[c], lane_free_c[ranks])
                start[rest[c]] = st
                end[rest[c]] = st + ctx.duration[rest[c]]
                lane_free_c[ranks] = end[rest[c]]
            start[rest[~c]] = rr[~c]
            end[rest[~c]] = rr[~c]
    ctx.shared_steps = shared_steps
    if not record:
        return Timing(start, end, None, None, None, None, "sweep")
    seg = np.flatnonzero(is_tr & (prog.op_bytes > 0))
    return Timing(start, end, seg, bw_start[seg], arrival[seg], prog.op_bytes[seg].astype(np.float64), "sweep")
