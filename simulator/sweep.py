"""``rankscope sweep``: an nccl-tests-style table of simulated time, algbw and busbw over sizes.

algbw = S / t and busbw = algbw x factor (all-reduce 2(p-1)/p, reduce-scatter and all-gather
(p-1)/p, broadcast 1), as nccl-tests defines them (NVIDIA/nccl-tests doc/PERFORMANCE.md); GB/s
are 1e9 bytes per second, as nccl-tests reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .collectives import build
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


def default_sizes(lo: int = 8, hi: int = 1 << 30) -> list[int]:
    sizes, s = [], lo
    while s <= hi:
        sizes.append(s)
        s *= 2
    return sizes


def run_sweep(collective: str, algos: Sequence[str], nranks: int, sizes: Sequence[int], topo, *,
              gamma: float = 0.0, pieces: int = 4, nodes: int | None = None,
              progress: bool | None = None) -> list[SweepRow]:
    rows = []
    with Progress(len(sizes) * len(algos), "sweep", force=bool(progress)) as bar:
        if progress is False:
            bar.enabled = False
        for size in sizes:
            for algo in algos:
                prog = build(collective, algo, nranks, size, pieces=pieces, nodes=nodes)
                res = simulate(prog, topo, gamma=gamma, max_link_rows=0)
                t = res.makespan
                rows.append(SweepRow(size, algo, t, algbw(size, t), busbw(collective, nranks, size, t),
                                     res.info["method"]))
                bar.step(f"{size} B {algo}")
    return rows
