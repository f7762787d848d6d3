"""The engine's event loop as it stood before the event-loop object (commit 009b578), kept verbatim
as the reference that tests compare the new loop with on contended programs. Not used by the package."""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass

import numpy as np

from rankscope.simulator import costs
from rankscope.simulator.errors import UsageError
from rankscope.simulator.program import CollKind, OpKind, Program


def reference_simulate(prog: Program, topo, gamma: float = 0.0, flops_per_s=None):
    """(start, end, seg_op, seg_t0, seg_t1, seg_bytes) of the old event loop."""
    ctx = _Ctx(prog, _RouteTable(prog, topo), gamma, _compute_durations(prog, flops_per_s),
               _collective_durations(prog, topo, gamma))
    return _event_loop(ctx, topo.link_bw)[:6]


# -- shared context ----------------------------------------------------------------------------
class _RouteTable:
    """Routes of the distinct (src, dst) pairs the program uses; slot ``k`` is one pair.

    A ring on 4096 ranks has 33.5M transfers but 4096 pairs: per-transfer route arrays would
    cost GBs, so transfers look their pair up (a dense N x N map while N <= 8192).
    """

    DENSE_MAX = 8192

    def __init__(self, prog: Program, topo) -> None:
        n = prog.nranks
        self.n = n
        t = prog.is_transfer
        self.dense = n <= self.DENSE_MAX
        if self.dense:
            mark = np.zeros(n * n, dtype=bool)
            for lo in range(0, prog.n_ops, 1 << 22):  # in blocks: no 33.5M-wide int64 temporaries
                sl = slice(lo, lo + (1 << 22))
                tt = t[sl]
                mark[prog.rank[sl][tt].astype(np.int64) * n + prog.peer[sl][tt]] = True
            keys = np.flatnonzero(mark)
            self.slot_map = np.full(n * n, -1, dtype=np.int32)
            self.slot_map[keys] = np.arange(keys.size, dtype=np.int32)
        else:
            keys = np.unique(prog.rank[t].astype(np.int64) * n + prog.peer[t])
        self.keys = keys
        if keys.size:
            self.hops, self.lat = topo.routes((keys // n).astype(np.int64), (keys % n).astype(np.int64))
            self.hops = np.asarray(self.hops, dtype=np.int64)
            valid = self.hops >= 0
            self.bw = np.where(valid, topo.link_bw[np.where(valid, self.hops, 0)], np.inf).min(axis=1)
        else:
            self.hops, self.lat, self.bw = np.zeros((0, 1), np.int64), np.zeros(0), np.zeros(0)
        self.full = bool((self.hops >= 0).all())

    def slots(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        key = src.astype(np.int64) * self.n + dst
        return self.slot_map[key] if self.dense else np.searchsorted(self.keys, key)


@dataclass
class _Ctx:
    prog: Program
    routes: _RouteTable
    gamma: float
    duration: np.ndarray  # (M,) compute durations (0 for other ops)
    coll_dur: np.ndarray  # (C,) duration of each collective


def ring_alpha_beta(topo) -> tuple[float, float]:
    """(α, β) of a ring over ``topo.ring``: the largest route latency and the smallest bottleneck
    bandwidth among its hops, since every ring step waits for its slowest hop."""
    ring = np.asarray(topo.ring, dtype=np.int64)
    if ring.size < 2:
        return 0.0, 0.0
    hops, lat = topo.routes(ring, np.roll(ring, -1))
    hops = np.asarray(hops)
    valid = hops >= 0
    bw = np.where(valid, topo.link_bw[np.where(valid, hops, 0)], np.inf).min(axis=1)
    return float(np.max(lat)), float(1.0 / bw.min())


def _collective_durations(prog: Program, topo, gamma: float) -> np.ndarray:
    if prog.coll_kind.size == 0:
        return np.zeros(0)
    alpha, beta = ring_alpha_beta(topo)
    n = prog.nranks
    forms = {CollKind.ALL_REDUCE: lambda s: costs.ring_all_reduce(n, s, alpha, beta, gamma),
             CollKind.REDUCE_SCATTER: lambda s: costs.ring_reduce_scatter(n, s, alpha, beta, gamma),
             CollKind.ALL_GATHER: lambda s: costs.ring_all_gather(n, s, alpha, beta)}
    cache: dict[tuple[int, int], float] = {}
    out = np.empty(prog.coll_kind.size)
    for i, (k, s) in enumerate(zip(prog.coll_kind.tolist(), prog.coll_bytes.tolist())):
        key = (k, s)
        if key not in cache:
            cache[key] = forms[CollKind(k)](s)
        out[i] = cache[key]
    return out


def _compute_durations(prog: Program, flops_per_s: float | None) -> np.ndarray:
    dur = np.zeros(prog.n_ops, dtype=np.float64)
    comp = np.flatnonzero(prog.kind == OpKind.COMPUTE)
    if comp.size:
        a = prog.arg[comp]
        flops = prog.compute_flops[a]
        if flops.any() and not flops_per_s:
            raise UsageError("compute ops are sized in FLOPs: give a device rate (flops_per_s)")
        dur[comp] = prog.compute_seconds[a] + (flops / flops_per_s if flops_per_s else 0.0)
    return dur



def _empty():
    z = np.zeros(0)
    return z, z, np.zeros(0, dtype=np.int64), z, z, z, "sweep"


# -- the event loop: any schedule, max-min sharing ---------------------------------------------
def max_min_rates(hops: np.ndarray, link_bw: np.ndarray) -> np.ndarray:
    """Max-min fair rates of flows with routes ``hops`` (F, H; -1 padded) by progressive filling."""
    nf = hops.shape[0]
    rate = np.zeros(nf)
    if nf == 0:
        return rate
    cap = link_bw.astype(np.float64).copy()
    valid = hops >= 0
    safe = np.where(valid, hops, 0)
    active = np.ones(nf, dtype=bool)
    while active.any():
        links = safe[active][valid[active]]
        count = np.bincount(links, minlength=cap.size)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(count > 0, cap / np.maximum(count, 1), np.inf)
        fshare = np.where(valid, share[safe], np.inf).min(axis=1)
        level = fshare[active].min()
        bottleneck = share <= level * (1 + 1e-12)
        hit = active & (valid & bottleneck[safe]).any(axis=1)
        rate[hit] = level
        np.subtract.at(cap, safe[hit][valid[hit]], level)
        np.maximum(cap, 0.0, out=cap)
        active &= ~hit
    return rate


def _event_loop(ctx: _Ctx, link_bw: np.ndarray):
    """Any program, any sharing. A *flow* is identified by its transfer's op id."""
    prog, routes = ctx.prog, ctx.routes
    m, n = prog.n_ops, prog.nranks
    if m == 0:
        return _empty()
    start = np.full(m, np.nan)
    end = np.full(m, np.nan)
    tr = np.flatnonzero(prog.is_transfer)
    slot = np.full(m, -1, dtype=np.int64)
    slot[tr] = routes.slots(prog.rank[tr], prog.peer[tr])
    nbytes = prog.op_bytes.astype(np.float64)
    remaining = nbytes.copy()
    # reverse dependencies: who waits for op j
    owner = np.repeat(np.arange(m, dtype=np.int64), np.diff(prog.dep_ptr))
    order = np.argsort(prog.dep_idx, kind="stable")
    rev_ptr = np.searchsorted(prog.dep_idx[order], np.arange(m + 1))
    rev_idx = owner[order]
    waiting = np.diff(prog.dep_ptr).astype(np.int64)
    conn_queue: dict[int, deque] = {}
    conn_busy: set[int] = set()
    comp_queue: list[deque] = [deque() for _ in range(n)]
    comp_busy = np.zeros(n, dtype=bool)
    coll_queue: list[deque] = [deque() for _ in range(n)]
    coll_busy = np.zeros(n, dtype=bool)
    is_coll = prog.kind == OpKind.COLLECTIVE
    coll_need = np.bincount(prog.arg[is_coll], minlength=prog.coll_kind.size)
    coll_here: dict[int, list[int]] = {}  # collective id -> its ops at the head of their lanes
    heap: list[tuple[float, int, int, int]] = []  # (time, seq, what, op)
    seq = 0
    LAT_END, OP_END = 0, 2     # event kinds (a flow's arrival is handled where its bandwidth phase ends)
    active: list[int] = []           # flows in their bandwidth phase
    rates = np.zeros(0)
    seg_op, seg_t0, seg_t1, seg_bytes = [], [], [], []
    seg_open: dict[int, tuple[float, float]] = {}  # flow -> (t0, remaining at t0)
    rate_of: dict[int, float] = {}
    now = 0.0

    def push(t: float, what: int, op: int) -> None:
        nonlocal seq
        heapq.heappush(heap, (t, seq, what, op))
        seq += 1

    def close(f: int, rem_now: float) -> None:
        t0, rem0 = seg_open.pop(f)
        if now > t0:
            seg_op.append(f)
            seg_t0.append(t0)
            seg_t1.append(now)
            seg_bytes.append(round(nbytes[f] - rem_now) - round(nbytes[f] - rem0))

    def begin(op: int, t: float) -> None:
        start[op] = t
        push(t + float(routes.lat[slot[op]]), LAT_END, op)

    def arrive(op: int, t: float) -> None:
        """The last byte of ``op`` is in: free its connection, reduce, end."""
        cost = nbytes[op] * ctx.gamma if prog.kind[op] == OpKind.REDUCE else 0.0
        push(t + cost, OP_END, op)
        q = conn_queue.get(int(slot[op]))
        if q:
            begin(q.popleft(), t)
        else:
            conn_busy.discard(int(slot[op]))

    def ready(op: int, t: float) -> None:
        """``op`` has no unmet deps at ``t``: start it, or queue it behind its lane."""
        k = prog.kind[op]
        if k <= OpKind.COPY:
            c = int(slot[op])
            if c in conn_busy:
                conn_queue.setdefault(c, deque()).append(op)
            else:
                conn_busy.add(c)
                begin(op, t)
        elif k == OpKind.COLLECTIVE:
            r = int(prog.rank[op])
            if coll_busy[r]:
                coll_queue[r].append(op)
            else:
                coll_busy[r] = True
                join(op, t)
        elif k == OpKind.COMPUTE:
            r = int(prog.rank[op])
            if comp_busy[r]:
                comp_queue[r].append(op)
            else:
                comp_busy[r] = True
                start[op] = t
                push(t + float(ctx.duration[op]), OP_END, op)
        else:
            start[op] = t
            push(t, OP_END, op)

    def join(op: int, t: float) -> None:
        """``op`` heads its rank's comm lane: the collective starts once all its ops are there."""
        c = int(prog.arg[op])
        here = coll_here.setdefault(c, [])
        here.append(op)
        if len(here) == coll_need[c]:
            for o in here:
                start[o] = t
                push(t + float(ctx.coll_dur[c]), OP_END, o)
            del coll_here[c]

    def finish(op: int, t: float) -> None:
        end[op] = t
        if prog.kind[op] == OpKind.COLLECTIVE:
            r = int(prog.rank[op])
            if coll_queue[r]:
                join(coll_queue[r].popleft(), t)
            else:
                coll_busy[r] = False
        if prog.kind[op] == OpKind.COMPUTE:
            r = int(prog.rank[op])
            if comp_queue[r]:
                nxt = comp_queue[r].popleft()
                start[nxt] = t
                push(t + float(ctx.duration[nxt]), OP_END, nxt)
            else:
                comp_busy[r] = False
        for w in rev_idx[rev_ptr[op]:rev_ptr[op + 1]]:
            waiting[w] -= 1
            if waiting[w] == 0:
                ready(int(w), t)

    for op in np.flatnonzero(waiting == 0):
        ready(int(op), 0.0)

    while heap or active:
        # the next instant: a timed event, or the first flow to drain at the current rates
        t = heap[0][0] if heap else np.inf
        first = -1
        if active:
            act = np.array(active)
            to_drain = remaining[act] / rates
            first = int(np.argmin(to_drain))
            t_flow = now + float(to_drain[first])
            if t_flow <= t:
                t = t_flow
            else:
                first = -1
            remaining[act] -= rates * (t - now)
        now = t
        changed = False
        if active:
            done_mask = remaining[act] <= 1e-9 * nbytes[act]
            if first >= 0:
                done_mask[first] = True
            if done_mask.any():
                changed = True
                active = [f for f, d in zip(active, done_mask) if not d]
                for f in act[done_mask]:
                    f = int(f)
                    remaining[f] = 0.0
                    rate_of.pop(f, None)
                    close(f, 0.0)
                    arrive(f, now)
        # timed events at this instant, as one batch
        while heap and heap[0][0] <= now:
            _, _, what, op = heapq.heappop(heap)
            if what == LAT_END:
                if nbytes[op] > 0:
                    active.append(op)
                    seg_open[op] = (now, float(remaining[op]))
                    changed = True
                else:
                    arrive(op, now)
            else:
                finish(op, now)
        if changed and active:
            new = max_min_rates(routes.hops[slot[active]], link_bw)
            for f, r in zip(active, new):  # a flow whose rate changes starts a new rate period
                old = rate_of.get(f)
                if old is not None and old != r and seg_open[f][0] < now:
                    close(f, float(remaining[f]))
                    seg_open[f] = (now, float(remaining[f]))
                rate_of[f] = r
            rates = new
    if np.isnan(end).any():
        bad = int(np.flatnonzero(np.isnan(end))[0])
        if coll_here:
            c, ops = next(iter(coll_here.items()))
            raise UsageError(f"deadlock: collective {c} has {len(ops)} of {int(coll_need[c])} ranks at the "
                             f"head of their comm lanes (the others wait behind another collective)")
        raise UsageError(f"op {bad} never ran: its dependencies never finished")
    return (start, end, np.array(seg_op, dtype=np.int64), np.array(seg_t0), np.array(seg_t1),
            np.array(seg_bytes), "events")
