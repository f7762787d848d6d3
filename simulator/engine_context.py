"""What the engine's two paths share: routes per connection, op durations, and their result types.

A *connection* is (src, dst, buffer): messages of one buffer between two ranks go one at a time, in
order, as on one TCP socket or one NCCL channel (each NCCL channel has its own connection and its own
staging buffers, NVIDIA/nccl src/include/comm.h ``ncclChannel``); a program that runs k channels gives
each its own buffer, and their messages then share the links instead of queueing. Every builder of
a single collective uses one buffer, so there a connection is the pair (src, dst).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from . import costs, routing
from .errors import UsageError
from .program import CollKind, OpKind, Program


class Timing(NamedTuple):
    """What a path computes: op times, and rate periods of flows (op ``seg_op[i]`` moved
    ``seg_bytes[i]`` over ``[seg_t0[i], seg_t1[i])``; None when they are not recorded)."""

    start: np.ndarray
    end: np.ndarray
    seg_op: np.ndarray | None
    seg_t0: np.ndarray | None
    seg_t1: np.ndarray | None
    seg_bytes: np.ndarray | None
    method: str


class LinkRows(NamedTuple):
    """One row per link of a route and rate period; ``note`` says how many, or why none."""

    link_id: np.ndarray
    t0: np.ndarray
    t1: np.ndarray
    nbytes: np.ndarray
    note: str


def empty_timing(method: str) -> Timing:
    z = np.zeros(0)
    return Timing(z, z, np.zeros(0, dtype=np.int64), z, z, z, method)


class RouteTable:
    """Routes of the distinct (src, dst) pairs the program uses; slot ``k`` is one pair.

    A ring on 4096 ranks has 33.5M transfers but 4096 pairs: per-transfer route arrays would
    cost GBs, so transfers look their pair up (a dense N x N map while N <= 8192). ``hop_ptr`` /
    ``hop_idx`` hold the same routes as CSR without the padding (the event loop's flow sets).
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
            self.hops, self.lat = routing.routes(topo, (keys // n).astype(np.int64), (keys % n).astype(np.int64))
            self.hops = np.asarray(self.hops, dtype=np.int32)
            valid = self.hops >= 0
            lb = np.append(np.asarray(topo.link_bw, dtype=np.float64), np.inf)  # -1 pads read +inf
            self.bw = lb[self.hops].min(axis=1)
        else:
            self.hops, self.lat, self.bw = np.zeros((0, 1), np.int32), np.zeros(0), np.zeros(0)
            valid = self.hops >= 0
        self.full = bool(valid.all())
        self.hop_len = valid.sum(axis=1).astype(np.int64)
        self.hop_ptr = np.zeros(keys.size + 1, dtype=np.int64)
        np.cumsum(self.hop_len, out=self.hop_ptr[1:])
        self.hop_idx = self.hops[valid].astype(np.int64)  # row-major: each route's hops in order

    def fold(self, link_orbit: np.ndarray) -> None:
        """Every route's links as their orbits' (``link_orbit[l]``: the link standing for l's orbit
        under a symmetry of the topology; :mod:`simulator.nccl.rotation`); ValueError where a route
        would cross one orbit twice (its flow would count once where it loads two links)."""
        valid = self.hops >= 0
        self.hops = np.where(valid, link_orbit[np.where(valid, self.hops, 0)], -1).astype(np.int32)
        srt = np.sort(np.where(valid, self.hops, -1 - np.arange(self.hops.shape[1])[None, :]), axis=1)
        if self.hops.shape[1] > 1 and np.any(srt[:, 1:] == srt[:, :-1]):
            raise ValueError("a route crosses one link orbit twice: the folded routes would not carry its load")
        self.hop_idx = self.hops[valid].astype(np.int64)

    def slots(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        key = src.astype(np.int64) * self.n + dst
        return self.slot_map[key] if self.dense else np.searchsorted(self.keys, key)


@dataclass
class Context:
    """A program on a topology, ready for either path."""

    prog: Program
    routes: RouteTable
    gamma: float
    duration: np.ndarray  # (M,) compute durations (0 for other ops)
    coll_dur: np.ndarray  # (C,) duration of each collective
    shared_steps: int = 0  # steps the sweep found links shared uniformly in
    coll_lane: np.ndarray | None = None  # (C,) lane of each collective (engine_share); None: one lane
    coll_lat: np.ndarray | None = None  # (C,) latency part of coll_dur (not shared); with coll_lane

    @property
    def n_lanes(self) -> int:
        return 1 if self.coll_lane is None or self.coll_lane.size == 0 else int(self.coll_lane.max()) + 1

    @property
    def nbuf(self) -> int:
        return max(1, len(self.prog.buffers))

    def connections(self, ops: np.ndarray, slots: np.ndarray | None = None) -> np.ndarray:
        """Connection id of transfers ``ops``: (route slot, buffer), as one integer."""
        p = self.prog
        s = self.routes.slots(p.rank[ops], p.peer[ops]) if slots is None else slots
        if self.nbuf == 1:
            return s.astype(np.int64)
        return s.astype(np.int64) * self.nbuf + p.chunk_buf[p.arg[ops]]

    @property
    def n_connections(self) -> int:
        return int(self.routes.keys.size) * self.nbuf


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


def collective_durations(prog: Program, topo, gamma: float) -> np.ndarray:
    """Each COLLECTIVE's time: ``meta["coll_seconds"]`` where a cost model gave it, else the ring's
    closed form with the topology's slowest ring hop."""
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


def collective_latency(prog: Program, topo, gamma: float, dur: np.ndarray) -> np.ndarray:
    """The part of each collective's time that concurrent collectives do not share (see
    simulator/engine_share.py): ``meta["coll_latency"]`` where the cost model gave it (NCCL's
    latency term), 0 where it gave only seconds, else the ring closed form less its bandwidth
    term (the form with α = γ = 0): the α steps and the reduction's γ."""
    if prog.coll_kind.size == 0:
        return np.zeros(0)
    given = prog.meta.get("coll_latency")
    if given is not None:
        lat = np.asarray(given, dtype=np.float64)
        if lat.shape != dur.shape or np.any(lat < 0) or np.any(lat > dur * (1 + 1e-12)):
            raise UsageError("meta coll_latency needs one latency per collective, 0 <= latency <= its seconds")
        return np.minimum(lat, dur)
    if prog.meta.get("coll_seconds") is not None:
        return np.zeros_like(dur)
    _, beta = ring_alpha_beta(topo)
    n = prog.nranks
    forms = {CollKind.ALL_REDUCE: costs.ring_all_reduce, CollKind.REDUCE_SCATTER: costs.ring_reduce_scatter,
             CollKind.ALL_GATHER: lambda p, s, a, b, g: costs.ring_all_gather(p, s, a, b)}
    cache: dict[tuple[int, int], float] = {}
    out = np.empty(prog.coll_kind.size)
    for i, key in enumerate(zip(prog.coll_kind.tolist(), prog.coll_bytes.tolist())):
        if key not in cache:
            cache[key] = forms[CollKind(key[0])](n, key[1], 0.0, beta, 0.0)
        out[i] = max(0.0, dur[i] - cache[key])
    return out


def compute_durations(prog: Program, flops_per_s: float | None) -> np.ndarray:
    dur = np.zeros(prog.n_ops, dtype=np.float64)
    comp = np.flatnonzero(prog.kind == OpKind.COMPUTE)
    if comp.size:
        a = prog.arg[comp]
        flops = prog.compute_flops[a]
        if flops.any() and not flops_per_s:
            raise UsageError("compute ops are sized in FLOPs: give a device rate (flops_per_s)")
        dur[comp] = prog.compute_seconds[a] + (flops / flops_per_s if flops_per_s else 0.0)
    return dur


def link_rows(ctx: Context, timing: Timing, limit: int) -> LinkRows:
    """Expand rate periods of flows (one per op and period) into one row per link of the route."""
    z = np.zeros(0)
    seg_op, t0, t1, nbytes = timing.seg_op, timing.seg_t0, timing.seg_t1, timing.seg_bytes
    if seg_op is None:
        return LinkRows(np.zeros(0, dtype=np.int32), z, z, z, f"omitted (more than {limit} rows)")
    if seg_op.size == 0:
        return LinkRows(np.zeros(0, dtype=np.int32), z, z, z, "0 rows")
    p = ctx.prog
    slot = ctx.routes.slots(p.rank[seg_op], p.peer[seg_op])
    per = ctx.routes.hop_len[slot]
    total = int(per.sum())
    if total > limit:
        return LinkRows(np.zeros(0, dtype=np.int32), z, z, z, f"omitted ({total} rows > {limit})")
    starts = ctx.routes.hop_ptr[slot]
    first = np.zeros(per.size, dtype=np.int64)
    np.cumsum(per[:-1], out=first[1:])
    pos = np.repeat(starts - first, per) + np.arange(total, dtype=np.int64)
    return LinkRows(ctx.routes.hop_idx[pos].astype(np.int32), np.repeat(t0, per), np.repeat(t1, per),
                    np.repeat(nbytes, per), f"{total} rows")
