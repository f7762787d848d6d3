"""``sweep --algos nccl`` over many sizes with fewer simulations: size groups, exactly.

[Note: size groups]
Within a *group* of sizes NCCL runs the same schedule (algorithm, protocol, channels, pipeline
pieces, pieces in flight) and every transfer's bytes are the size times a fixed fraction (every
``split`` of the buffer is exact: the size divides by the product of the cuts). Latencies do not
depend on the size. Then one simulation is a function of the size S alone, and it is piecewise
affine: every time the engine computes (a transfer's start, when its bytes start moving, its
end) is a sum of latencies and of bytes over rates, and the rates of max-min sharing depend only
on which flows are active, i.e. on the *order* of these events. Along a fixed order all times are
affine in S, ``t_e(S) = a_e + b_e S``.

Certificate: simulate the two ends S1 < S2 of the group. If all events (start, start + route
latency, end of every transfer) fall in the same order at S1 and at S2, ties included, then for
S between them the affine interpolations of the event times keep that order (the difference of two
affine functions that has one sign, or is zero, at both ends has it in between), so they form a run
of the engine along the same order, with the same rates, which by determinism is the engine's run
at S; its makespan is the interpolation of the ends'. Otherwise the group is cut at its middle size
and each half is checked alike (bisection), down to simulating every size. Exact in exact
arithmetic; in floats, event times within 1e-12 of the makespan count as ties (a tie at one end
only fails the certificate, which then simulates more). The test compares the grouped sweep with
a simulation of every size on ``nodes:4x8`` to 1e-9. The NCCL ring on an even node count is
simulated on its node-shift quotient (:mod:`.quotient`), the tree on 2G channels and NVLSTree on
one orbit of a GPU rotation (:mod:`.rotation`), also exact.
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..routing import routes
from . import quotient as q
from . import rotation
from .model import nccl_collective, pieces_of, simulate_nccl, view_of, window

TIE = 1e-12  # relative to the makespan: event times closer than this count as one instant
PARALLEL_MIN = 1_000_000  # op-units (:func:`_weight`) below which the groups run in this process


def _key(ch, spec) -> tuple:
    """What fixes the schedule but for its bytes, and the divisor that makes every cut exact."""
    n = spec.nranks
    if ch.algo == "ring":
        quot = q.applies(spec.nodes, spec.gpus, ch.nbytes, ch.nchannels)
        return (ch.algo, ch.proto, ch.nchannels, quot), n * ch.nchannels
    pieces = pieces_of(ch, spec)
    lanes = spec.gpus if ch.algo == "nvls_tree" else ch.nchannels
    if ch.algo == "nvls":
        return (ch.algo, ch.proto, ch.nchannels), spec.gpus
    return (ch.algo, ch.proto, ch.nchannels, pieces, window(ch, spec, pieces)), lanes * pieces


class _Run:
    """One simulated size: the simulated seconds and its event times (None: not affine-checkable)."""

    def __init__(self, coll: str, size: int, topo, tune, gamma: float, views: dict) -> None:
        ch = tune.choose(coll, size)
        spec = tune.spec
        self.choice = ch
        kw: dict = {}
        if ch.algo == "ring" and q.applies(spec.nodes, spec.gpus, size, ch.nchannels):
            prog = q.ring_quotient(coll, spec.nodes, spec.gpus, size, ch.nchannels,
                                   {"nccl": ch.to_dict(), "proto": ch.proto})
            if "quotient" not in views:  # kept with the views, so that its id stays unique
                views["quotient"] = q.quotient_topology(spec)
            where, tag = views["quotient"], " quotient"
        else:
            where, tag = topo, ""
            shift = rotation.shift_of(ch, spec, tune.comm_channels)
            if shift:  # one orbit of the GPU rotation, where it is exact ([Note: the rail-rotation quotient])
                prog = rotation.representatives(ch, spec, shift, tune.comm_channels)
                v = view_of(prog, topo, views)
                key = ("orbits", id(v), shift)
                if key not in views:
                    views[key] = rotation.link_orbits(v, spec, shift)
                if views[key] is not None and rotation.routes_unique(v, spec, prog):
                    kw, tag = {"link_orbit": views[key]}, " rotation quotient"
            if not kw:
                prog, ch = nccl_collective(coll, topo, size, tune=tune)
        res, view, self.seconds = simulate_nccl(prog, where, views, gamma=gamma, max_link_rows=0, **kw)
        self.method = res.info["method"] + tag
        self._kept = (prog, res, view)
        self._events = None

    @property
    def events(self) -> np.ndarray:
        """Every event time (start, start + route latency, end of each transfer; start and end of
        the other ops), found when a certificate first asks for them."""
        if self._events is None:
            prog, res, view = self._kept
            t = prog.is_transfer
            src, dst = prog.rank[t].astype(np.int64), prog.peer[t].astype(np.int64)
            key = src * prog.nranks + dst
            pairs, inv = np.unique(key, return_inverse=True)
            lat = routes(view, pairs // prog.nranks, pairs % prog.nranks)[1][inv] if pairs.size else np.zeros(0)
            others = ~t
            self._events = np.concatenate([res.start[t], res.start[t] + lat, res.end[t], res.start[others],
                                           res.end[others]])
            self._kept = None
        return self._events


def _same_order(a: np.ndarray, b: np.ndarray, scale: float) -> bool:
    """Whether events ``a`` and ``b`` (the same events at two sizes) fall in one order, ties alike."""
    if a.size != b.size:
        return False
    order = np.argsort(a, kind="stable")
    da, db = np.diff(a[order]), np.diff(b[order])
    tie_a, tie_b = da <= TIE * scale, np.abs(db) <= TIE * scale
    return bool(np.array_equal(tie_a, tie_b) and np.all(db[~tie_b] > 0))


def nccl_seconds(coll: str, sizes: list[int], topo, tune, gamma: float, views: dict,
                 on_size=None, jobs: int = 1, took: dict | None = None) -> dict[int, tuple[float, str, object]]:
    """size -> (simulated seconds, method, NCCL's choice), simulating as few sizes as the
    certificate of [Note: size groups] allows; ``on_size(size)`` is called as each size is done,
    ``took[size]`` gets the seconds it cost (0 where interpolated). ``jobs`` > 1: the groups run
    in that many forked processes ([Note: groups in parallel])."""
    spec = tune.spec
    groups: list[list[int]] = []
    last = None
    for s in sorted(sizes):
        ch = tune.choose(coll, s)
        key, div = _key(ch, spec)
        whole = s % div == 0
        if groups and whole and last == key:
            groups[-1].append(s)
        else:
            groups.append([s])
        last = key if whole else None
    out: dict[int, tuple[float, str, object]] = {}
    took = {} if took is None else took
    cost = [len(g) * _weight(tune.choose(coll, g[-1]), spec) for g in groups]
    if jobs > 1 and len(groups) > 1 and sum(cost) >= PARALLEL_MIN and _can_fork():
        _parallel(coll, groups, cost, topo, tune, gamma, views, out, took, on_size, jobs)
    else:
        for g in groups:
            _group(coll, g, topo, tune, gamma, views, out, took, on_size)
    assert math.isfinite(sum(v[0] for v in out.values()))
    return out


def _can_fork() -> bool:
    import multiprocessing
    import os

    return hasattr(os, "fork") and "fork" in multiprocessing.get_all_start_methods()


_SHARED: tuple = ()  # what forked workers inherit: (coll, topo, tune, gamma, views)


def _work(g: list[int]) -> tuple[dict, dict]:
    coll, topo, tune, gamma, views = _SHARED
    out, took = {}, {}
    _group(coll, g, topo, tune, gamma, views, out, took, None)
    return out, took


def _parallel(coll: str, groups: list, cost: list, topo, tune, gamma: float, views: dict, out: dict, took: dict,
              on_size, jobs: int) -> None:
    """[Note: groups in parallel]
    The groups are independent simulations: forked workers (they inherit the topology, the tuner,
    the views made so far and the compiled event loop, loaded first so that no worker loads it
    again) take them largest first, as they come free. Each group's answer is the one the serial
    loop gives (the engine is deterministic; a worker's views and route caches are its own, made
    the same way). ``on_size`` is called in the parent as each group's results arrive. Only where
    the groups hold :data:`PARALLEL_MIN` op-units of work or more (about a third of a second here): a
    small sweep is done before the workers would be."""
    global _SHARED
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from ..engine_kernel import warm

    warm()
    order = sorted(range(len(groups)), key=lambda i: -cost[i])
    _SHARED = (coll, topo, tune, gamma, views)
    try:
        with ProcessPoolExecutor(min(jobs, len(groups)), mp_context=multiprocessing.get_context("fork")) as pool:
            for fut in as_completed([pool.submit(_work, groups[i]) for i in order]):
                part, secs = fut.result()
                out.update(part)
                took.update(secs)
                if on_size:
                    for size in sorted(part):
                        on_size(size)
    finally:
        _SHARED = ()


def _weight(ch, spec) -> float:
    """A group's cost per size, roughly: the ops of one simulation (for the order only)."""
    if ch.algo == "ring":
        return 2.0 * spec.nranks * ch.nchannels
    lanes = spec.gpus if ch.algo.startswith("nvls") else ch.nchannels
    return float(lanes * pieces_of(ch, spec) * spec.nranks)


def _group(coll: str, g: list[int], topo, tune, gamma: float, views: dict, out: dict, took: dict, on_size) -> None:
    """One group's sizes into ``out`` (and their seconds into ``took``): its ends simulated, the
    inside interpolated where certified, else cut in two."""
    runs: dict[int, _Run] = {}

    def run(i: int) -> _Run:
        if i not in runs:
            t0 = time.perf_counter()
            runs[i] = _Run(coll, g[i], topo, tune, gamma, views)
            out[g[i]] = (runs[i].seconds, runs[i].method, runs[i].choice)
            took[g[i]] = time.perf_counter() - t0
            if on_size:
                on_size(g[i])
        return runs[i]

    todo = [(0, len(g) - 1)]
    while todo:
        lo, hi = todo.pop()
        a, b = run(lo), run(hi)
        if hi - lo < 2:
            continue
        scale = max(float(np.max(np.abs(b.events), initial=0.0)), 1e-30)
        if _same_order(a.events, b.events, scale):
            s0, s1 = g[lo], g[hi]
            for i in range(lo + 1, hi):
                t = a.seconds + (b.seconds - a.seconds) * (g[i] - s0) / (s1 - s0)
                out[g[i]] = (t, f"{a.method}, interpolated", tune.choose(coll, g[i]))
                took[g[i]] = 0.0
                if on_size:
                    on_size(g[i])
            continue
        mid = (lo + hi) // 2
        todo += [(mid, hi), (lo, mid)]
