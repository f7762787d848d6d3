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
_COLUMNS = 8  # routes of at most this many hops are handled column by column


def _latest(link_busy: np.ndarray, h: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """Per flow, when the last earlier flow on any link of its route (``h``, -1 padded) drained."""
    if h.shape[1] <= _COLUMNS:  # a few columns: elementwise maxima beat a reduction over a short axis
        busy = link_busy[h[:, 0]]
        for j in range(1, h.shape[1]):
            col = link_busy[h[:, j]]
            if valid is not None:
                col = np.where(valid[:, j], col, -np.inf)
            np.maximum(busy, col, out=busy)
        return busy
    lb = link_busy[h]
    if valid is not None:
        lb[~valid] = -np.inf
    return lb.max(axis=1)


def _all_unique(x: np.ndarray, stamp: np.ndarray) -> bool:
    """True if the ids in ``x`` are distinct (``stamp`` is scratch space as large as the id range)."""
    k = np.arange(x.size)
    stamp[x] = k
    return bool((stamp[x] == k).all())


def _groups(used: np.ndarray, flow: np.ndarray, nflows: int, nlinks: int) -> np.ndarray:
    """For each flow, the smallest flow id it is connected to through shared links: equal values on
    every shared link is then equal values within each group, one gather per flow to check."""
    label = np.arange(nflows)
    while True:
        lmin = np.full(nlinks, nflows)
        np.minimum.at(lmin, used, label[flow])
        new = label.copy()
        np.minimum.at(new, flow, lmin[used])
        new = new[new]  # jump: a label's own label
        if np.array_equal(new, label):
            return label
        label = new


class _Shape:
    """What one step's transfers fix before any time is known: connections, routes, which links
    are shared and the rates uniform sharing gives. Rings repeat one shape every step, so it is
    built once and checked (ranks, peers, buffers, moving flows) each step."""

    def __init__(self, ctx: Context, tops, slots: np.ndarray, nb: np.ndarray, bw: np.ndarray,
                 conn_stamp: np.ndarray, link_stamp: np.ndarray) -> None:
        prog, routes = ctx.prog, ctx.routes
        self.rank, self.peer = prog.rank[tops].copy(), prog.peer[tops].copy()
        self.buf = prog.chunk_buf[prog.arg[tops]] if ctx.nbuf > 1 else None
        self.slots = slots
        ops = np.arange(tops.start, tops.stop) if isinstance(tops, slice) else tops
        self.conns = ctx.connections(ops, slots)
        self.clean = _all_unique(self.conns, conn_stamp)  # one message per connection in the step
        self.lat = routes.lat[slots]
        self.moving = nb > 0
        self.allm = bool(self.moving.all())
        sm = slots if self.allm else slots[self.moving]
        width = int(routes.hop_len[sm].max()) if sm.size else 1
        self.h = h = routes.hops[sm, :width]  # no wider than this step's longest route
        full = routes.full or bool((h >= 0).all())
        self.full = full
        self.valid = None if full else (h >= 0)
        self.used = h.ravel() if full else h[self.valid]
        self.flow = np.repeat(np.arange(h.shape[0]), h.shape[1])  # the moving flow of each used hop
        if not full:
            self.flow = self.flow[self.valid.ravel()]
        self.shared = self.used.size > 0 and not _all_unique(self.used, link_stamp)
        rate = routes.bw[slots].copy()
        self.rep = None
        if self.shared:  # each flow's smallest share of a link among this step's flows on it
            count = np.bincount(self.used, minlength=bw.size)
            share = np.append(bw / np.maximum(count, 1), np.inf)  # index -1 (padding) reads +inf
            r = share[h].min(axis=1)
            self.rep = _groups(self.used, self.flow, h.shape[0], bw.size)
            self.clean &= bool(np.array_equal(r, r[self.rep]))
            if self.allm:
                rate = r
            else:
                rate[self.moving] = r
        self.rate = rate

    def fits(self, prog, tops, nb: np.ndarray) -> bool:
        return (np.array_equal(prog.rank[tops], self.rank) and np.array_equal(prog.peer[tops], self.peer)
                and (self.buf is None or np.array_equal(prog.chunk_buf[prog.arg[tops]], self.buf))
                and np.array_equal(nb > 0, self.moving))


class _Lanes:
    """Collectives on several comm lanes (simulator/engine_share.py): each collective's end alone,
    (start + latency) + work, as the event loop computes it, and the proof that no two collectives
    on intersecting rank groups were in their bandwidth phases at once (else the sweep gives up)."""

    def __init__(self, ctx: Context) -> None:
        from .engine_share import collective_groups

        self.offset = ctx.coll_lane * ctx.prog.nranks
        self.lat, self.work = ctx.coll_lat, ctx.coll_dur - ctx.coll_lat
        self.group, self.meets = collective_groups(ctx.prog)
        c = ctx.coll_dur.size
        self.b, self.e, self.g = np.zeros(c), np.zeros(c), np.zeros(c, dtype=np.int64)
        self.k = 0

    def ends(self, ids: np.ndarray, go: np.ndarray) -> np.ndarray | None:
        b = go + self.lat[ids]
        e = b + self.work[ids]
        for i in range(ids.size):
            k, g = self.k, self.group[ids[i]]
            if k and np.any(self.meets[g, self.g[:k]] & (self.b[:k] < e[i]) & (b[i] < self.e[:k])):
                return None
            self.b[k], self.e[k], self.g[k] = b[i], e[i], g
            self.k += 1
        return e


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
    comm_free = np.zeros(prog.nranks * ctx.n_lanes)  # collectives' lanes per rank: lane * N + rank
    lanes = _Lanes(ctx) if ctx.n_lanes > 1 else None
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
    shape = None
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
        nb = prog.chunk_len[prog.arg[tops]].astype(np.float64)
        if nb.size:
            if shape is None or not shape.fits(prog, tops, nb):
                shape = _Shape(ctx, tops, routes.slots(prog.rank[tops], prog.peer[tops]), nb, bw,
                               conn_stamp, link_stamp)
            if not shape.clean:
                return None  # two messages on one connection, or links shared unevenly
            conns = shape.conns
            st = np.maximum(ready[sel], conn_free[conns])
            b0 = st + shape.lat
            arr = b0 + nb / shape.rate
            h = shape.h
            if h.size:
                b0m = b0 if shape.allm else b0[shape.moving]
                if shape.shared:  # uniform only if the flows on each shared link start and end together
                    nbm = nb if shape.allm else nb[shape.moving]
                    if not (np.array_equal(b0m, b0m[shape.rep]) and np.array_equal(nbm, nbm[shape.rep])):
                        return None
                    shared_steps += 1
                arrm = arr if shape.allm else arr[shape.moving]
                busy = _latest(link_busy, h, shape.valid)
                if np.any(b0m < busy - _EPS * np.maximum(1.0, np.abs(busy))):
                    return None
                if h.shape[1] <= _COLUMNS and shape.full:
                    for j in range(h.shape[1]):
                        link_busy[h[:, j]] = arrm
                else:
                    link_busy[shape.used] = arrm[shape.flow]
            conn_free[conns] = arr
            start[tops] = st
            if ctx.gamma:
                end[tops] = arr + np.where(prog.kind[tops] == OpKind.REDUCE, nb * ctx.gamma, 0.0)
            else:
                end[tops] = arr
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
                if lanes is not None:
                    ranks = ranks + lanes.offset[inst]
                go = np.full(ids.size, -np.inf)
                np.maximum.at(go, inv, np.maximum(rr[k], comm_free[ranks]))
                start[cops] = go[inv]
                if lanes is None:
                    end[cops] = go[inv] + ctx.coll_dur[inst]
                else:  # exact only while no two collectives on other lanes share links at once
                    fin = lanes.ends(ids, go)
                    if fin is None:
                        return None
                    end[cops] = fin[inv]
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
