"""``rankscope sweep``: an nccl-tests-style table of simulated time, algbw and busbw over sizes.

algbw = S / t and busbw = algbw x factor (all-reduce 2(p-1)/p, reduce-scatter and all-gather
(p-1)/p, broadcast 1), as nccl-tests defines them (NVIDIA/nccl-tests doc/PERFORMANCE.md); GB/s
are 1e9 bytes per second, as nccl-tests reports.

``nccl`` among the algorithms asks NCCL 2.20.3's tuner (:mod:`simulator.nccl`) per size: the row
records its choice (algorithm/protocol/channels), NCCL's own predicted time, and the simulated
time of that schedule on the protocol's view of the topology, side by side. NCCL's ring on an even
number (> 2) of nodes is timed on its two-node quotient, exactly (:mod:`simulator.nccl.quotient`;
the method column then says ``... quotient``), and sizes with the same schedule are timed by size
groups, exactly (:mod:`simulator.nccl.sweep_fast`; ``..., interpolated``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

from .collectives import ALIASES, build
from .costs import algbw, busbw
from .engine import simulate
from .progress import Progress


@dataclass(frozen=True)
class SweepRow:
    size: int
    algo: str
    seconds: float
    algbw: float   # bytes/s
    busbw: float   # bytes/s
    method: str
    choice: str = ""  # nccl: "algorithm/protocol/channels"
    predicted: float | None = None  # nccl: NCCL's own predicted seconds


def default_sizes(lo: int = 8, hi: int = 1 << 30) -> list[int]:
    sizes, s = [], lo
    while s <= hi:
        sizes.append(s)
        s *= 2
    return sizes


def run_sweep(collective: str, algos: Sequence[str], nranks: int, sizes: Sequence[int], topo, *,
              gamma: float = 0.0, pieces: int = 4, nodes: int | None = None,
              progress: bool | None = None, nccl_algo: str | None = None,
              nccl_proto: str | None = None, timings: list | None = None, groups: bool = True,
              jobs: int = 1) -> list[SweepRow]:
    """One row per (size, algorithm); ``timings``, if given, gets each row's wall seconds.
    ``groups``: time ``nccl`` by size groups ([Note: size groups], exact); False simulates every size.
    ``jobs``: processes for the ``nccl`` groups ([Note: groups in parallel]; the rows are the same)."""
    clock = time.perf_counter()
    rows = []
    with Progress(len(sizes) * len(algos), "sweep", force=bool(progress)) as bar:
        if progress is False:
            bar.enabled = False
        nccl, took = {}, {}
        if "nccl" in algos:
            nccl, took = _nccl_rows(collective, nranks, sizes, topo, gamma, nccl_algo, nccl_proto, groups, bar,
                                    jobs)
            clock = time.perf_counter()
        for size in sizes:
            for algo in algos:
                if algo == "nccl":
                    rows.append(nccl[size])
                    if timings is not None:
                        timings.append(took[size])
                    continue
                prog = build(collective, algo, nranks, size, pieces=pieces, nodes=nodes)
                res = simulate(prog, topo, gamma=gamma, max_link_rows=0)
                t = res.makespan
                rows.append(SweepRow(size, algo, t, algbw(size, t), busbw(collective, nranks, size, t),
                                     res.info["method"]))
                bar.step(f"{size} B {algo}")
                clock = _lap(timings, clock)
    return rows


def _lap(timings: list | None, since: float) -> float:
    now = time.perf_counter()
    if timings is not None:
        timings.append(now - since)
    return now


def _nccl_rows(collective: str, nranks: int, sizes, topo, gamma: float, nccl_algo, nccl_proto, groups: bool,
               bar, jobs: int = 1) -> tuple[dict, dict]:
    """size -> the nccl row, and size -> wall seconds spent on it (0 where interpolated)."""
    from .nccl import tuning
    from .nccl.sweep_fast import nccl_seconds

    coll = ALIASES.get(collective, collective)
    tune, views, took = tuning(topo, nccl_algo, nccl_proto), {}, {}

    def done(size: int) -> None:
        bar.step(f"{size} B nccl")

    if groups:
        got = nccl_seconds(coll, sorted(set(sizes)), topo, tune, gamma, views, done, jobs=jobs, took=took)
    else:
        got = {}
        for size in sizes:
            got.update(nccl_seconds(coll, [size], topo, tune, gamma, views, done, took=took))
    rows = {}
    for size, (t, method, ch) in got.items():
        rows[size] = SweepRow(size, "nccl", t, algbw(size, t), busbw(coll, nranks, size, t), method,
                              f"{ch.algo}/{ch.proto}/{ch.nchannels}", ch.predicted)
    return rows, took
