"""The discrete-event engine: when every op of a program runs on a topology.

[Note: the timing model]
- A transfer is a *message* on the connection (src, dst). Messages on one connection go one at a
  time, in the order they become ready (ties by op id): a connection is a FIFO stream, as a TCP
  socket or an NCCL channel is. Messages on different connections run concurrently.
- A message first pays its route's latency α (the sum of its links' latencies), then moves its
  bytes as a *flow* along the route. Flows that share a link share its bandwidth with max-min
  fairness (progressive filling, as SimGrid's flow model); a flow alone gets the smallest
  bandwidth on its route. The connection is free again when the last byte arrives.
- A REDUCE then costs the receiver ``gamma`` seconds per byte before the op ends (γ in Thakur et
  al. 2005); a COPY ends on arrival.
- COMPUTE ops run one at a time on their rank's compute lane, for ``compute_seconds`` plus
  ``compute_flops / flops_per_s``; they overlap with communication, as CUDA streams do.
- ALLOC and FREE take no time.
- COLLECTIVE ops (macro ops of training programs) run one at a time on their rank's comm lane,
  in the order they become ready, as NCCL kernels on one stream do. A collective starts when every
  rank's op has reached the head of its lane and takes the ring's closed form
  (:mod:`simulator.costs`) with α the slowest ring hop's route latency and β its smallest
  bandwidth on the topology, or the seconds a cost model put in ``meta["coll_seconds"]`` (one per
  collective id: NCCL's tuner, :func:`simulator.training.nccl_collective_seconds`). Macro ops model
  no contention with other traffic.
So one uncontended ring step costs α + c·β (+ c·γ), exactly the closed forms' terms.

[Note: two paths, one answer]
Most schedules never put two flows on one link at the same time (a ring on a ring or a switch, a
hierarchical ring on ``nodes:MxG``). For them every op's times follow from a longest-path sweep,
one numpy pass per step (:func:`_sweep`), and a per-link check proves that no two flows
overlapped. When the check fails (or the program's steps are not clean levels), the event loop
(:func:`_event_loop`) runs instead: a heap of timed events, all events at one instant handled as a
batch, and max-min rates recomputed once per batch. Both give the same times where both apply (a
test forces the event loop and compares). Deterministic: no randomness, ties broken by op id.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from . import costs
from .errors import UsageError
from .program import CollKind, OpKind, Program

LANES = ("compute", "comm", "memory")
LANE_COMPUTE, LANE_COMM, LANE_MEMORY = 0, 1, 2
DEFAULT_MAX_LINK_ROWS = 16_000_000


@dataclass(frozen=True)
class SimResult:
    """Times per op (seconds from 0) and link usage intervals: link ``link_id[i]`` carried
    ``link_bytes[i]`` over ``[link_t0[i], link_t1[i])`` (one row per flow, hop and rate period)."""

    start: np.ndarray
    end: np.ndarray
    lane: np.ndarray
    link_id: np.ndarray
    link_t0: np.ndarray
    link_t1: np.ndarray
    link_bytes: np.ndarray
    info: dict = field(default_factory=dict)

    @property
    def makespan(self) -> float:
        return float(self.end.max() - self.start.min()) if self.end.size else 0.0

    def to_trace(self, prog: Program, topo, meta: dict | None = None):
        """This result as a :class:`~simulator.trace.Trace` (executor "sim", clock "simulated")."""
        from .trace import Trace

        info = {"executor": "sim", "clock": "simulated", "lanes": list(LANES),
                "topology": topo.to_dict(), "engine": self.info, **(meta or {})}
        return Trace(prog, self.start, self.end, self.lane, self.link_id, self.link_t0, self.link_t1,
                     self.link_bytes, info)


def simulate(prog: Program, topo, *, gamma: float = 0.0, flops_per_s: float | None = None,
             method: str = "auto", max_link_rows: int = DEFAULT_MAX_LINK_ROWS) -> SimResult:
    """Simulate ``prog`` on ``topo`` (a :class:`simulator.topology.Topology`).

    ``method``: "auto" (the sweep when it is exact, else the event loop), "sweep" (raise if it is
    not exact) or "events". Link rows beyond ``max_link_rows`` are dropped (info["link_rows"]
    says so): the op times stay exact.
    """
    if topo.nranks != prog.nranks:
        raise UsageError(f"topology {topo.name!r} has {topo.nranks} ranks, the program {prog.nranks}")
    if not (gamma >= 0 and math.isfinite(gamma)):
        raise UsageError(f"gamma must be a finite number >= 0 (seconds per byte), got {gamma}")
    if method not in ("auto", "sweep", "events"):
        raise UsageError(f"unknown method {method!r}")
    duration = _compute_durations(prog, flops_per_s)
    ctx = _Ctx(prog, _RouteTable(prog, topo), gamma, duration, _collective_durations(prog, topo, gamma))
    res = None
    if method in ("auto", "sweep"):
        res = _sweep(ctx, max_link_rows)
        if res is None and method == "sweep":
            raise UsageError("the sweep is not exact for this program and topology (links are shared)")
    if res is None:
        res = _event_loop(ctx, topo.link_bw)
    start, end, seg_flow, seg_t0, seg_t1, seg_bytes, how = res
    lane = np.full(prog.n_ops, LANE_MEMORY, dtype=np.int32)
    lane[prog.kind == OpKind.COMPUTE] = LANE_COMPUTE
    lane[prog.is_transfer | (prog.kind == OpKind.COLLECTIVE)] = LANE_COMM
    link_id, t0, t1, lb, note = _link_rows(ctx, seg_flow, seg_t0, seg_t1, seg_bytes, max_link_rows)
    info = {"method": how, "gamma": gamma, "link_rows": note, "n_links": int(topo.link_bw.size)}
    return SimResult(start, end, lane, link_id, t0, t1, lb, info)


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
    given = prog.meta.get("coll_seconds")  # a cost model chose them (training.nccl_collective_seconds)
    if given is not None:
        return np.asarray(given, dtype=np.float64)
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


# -- the sweep: uncontended schedules, one numpy pass per step ---------------------------------
def _all_unique(x: np.ndarray, stamp: np.ndarray) -> bool:
    """True if the ids in ``x`` are distinct (``stamp`` is scratch space as large as the id range)."""
    k = np.arange(x.size)
    stamp[x] = k
    return bool((stamp[x] == k).all())


def _sweep(ctx: _Ctx, max_link_rows: int):
    prog, routes = ctx.prog, ctx.routes
    m = prog.n_ops
    if m == 0:
        return _empty()
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
    conn_free = np.zeros(routes.keys.size)  # when each connection's last message arrived
    conn_stamp = np.zeros(routes.keys.size, dtype=np.int64)
    lane_free_c = np.zeros(prog.nranks)
    nlinks = int(routes.hops.max()) + 1 if routes.hops.size else 1
    link_busy = np.full(max(nlinks, 1), -np.inf)
    link_stamp = np.zeros(max(nlinks, 1), dtype=np.int64)
    record = int(is_tr.sum()) * routes.hops.shape[1] <= max_link_rows
    bw_start = np.zeros(m) if record else None
    arrival = np.zeros(m) if record else None
    start = np.zeros(m)
    end = np.zeros(m)
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
            if not _all_unique(slots, conn_stamp):
                return None  # two messages on one connection in one step: not a clean level
            st = np.maximum(ready[sel], conn_free[slots])
            b0 = st + routes.lat[slots]
            nb = prog.chunk_len[prog.arg[tops]].astype(np.float64)
            arr = b0 + nb / routes.bw[slots]
            # exact only if no two flows share a link at once: each link used once in this step,
            # and free (its previous flow drained) before this flow starts moving bytes
            moving = nb > 0
            h = routes.hops[slots if moving.all() else slots[moving]]
            b0m, arrm = (b0, arr) if moving.all() else (b0[moving], arr[moving])
            if h.size:
                if routes.full:
                    used = h.ravel()
                    busy = link_busy[h].max(axis=1)
                else:
                    used = h[h >= 0]
                    busy = np.where(h >= 0, link_busy[np.maximum(h, 0)], -np.inf).max(axis=1)
                if not _all_unique(used, link_stamp):
                    return None
                if np.any(b0m < busy - 1e-12 * np.maximum(1.0, np.abs(busy))):
                    return None
                rows = np.repeat(arrm, h.shape[1])
                link_busy[used] = rows if routes.full else rows[(h >= 0).ravel()]
            conn_free[slots] = arr
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
    if not record:
        return start, end, None, None, None, None, "sweep"
    seg = np.flatnonzero(is_tr & (prog.op_bytes > 0))
    return start, end, seg, bw_start[seg], arrival[seg], prog.op_bytes[seg].astype(np.float64), "sweep"


def _empty():
    z = np.zeros(0)
    return z, z, np.zeros(0, dtype=np.int64), z, z, z, "sweep"


def _link_rows(ctx: _Ctx, seg_op, t0, t1, nbytes, limit):
    """Expand rate periods of flows (one per op and period) into one row per link of the route."""
    z = np.zeros(0)
    if seg_op is None:
        return np.zeros(0, dtype=np.int32), z, z, z, f"omitted (more than {limit} rows)"
    if seg_op.size == 0:
        return np.zeros(0, dtype=np.int32), z, z, z, "0 rows"
    p = ctx.prog
    h = ctx.routes.hops[ctx.routes.slots(p.rank[seg_op], p.peer[seg_op])]
    valid = h >= 0
    total = int(valid.sum())
    if total > limit:
        return np.zeros(0, dtype=np.int32), z, z, z, f"omitted ({total} rows > {limit})"
    per = valid.sum(axis=1)
    return (h[valid].astype(np.int32), np.repeat(t0, per), np.repeat(t1, per), np.repeat(nbytes, per),
            f"{total} rows")


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
