"""``rankscope calibrate``: per-pair latency and bandwidth by ping-pong, as a topology file.

[Note: calibration]
For every pair i < j in turn (the other ranks wait at a barrier, so no traffic competes), rank i
sends n bytes to j and j sends them straight back; half the round trip is one one-way time. Per
size: one untimed exchange, then ``rounds`` timed ones, of which the *minimum* counts. Scheduling
delays only ever add time, and on a shared machine they are not rare: on the 2-core test machine
a woken rank often waits for the next 4 ms scheduler tick, in over half of the 1 KiB round trips
when three ranks share the cores, which drowns a 150 us latency in any mean or median. The fastest
round trip is the one closest to what the link itself costs, which is what α and bw describe.
Then a least-squares fit of the α-β model over the sizes,

    t(n) = α + n / bw      (Hockney's model; α-β in Thakur, Rabenseifner & Gropp 2005),

with residuals reported per size. α < 0 (noise at small sizes) refits through the origin (α = 0);
a slope <= 0 means the sizes are too small to see bandwidth, which is an error.

Both directions of a pair get the pair's figures (ping-pong measures their mean). The topology is
a full mesh, one link per ordered pair, in simulator/topology.py's TOML format (name, ranks, ring,
``[[link]]`` src/dst/bw/lat), written atomically and read back with ``parse_topology`` before the
command succeeds. The simulator routes by least latency, so a pair whose α exceeds a two-hop
detour's would be routed around its own link: such pairs are reported.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist

from rankscope.simulator.errors import RankscopeError, UsageError
from rankscope.simulator.topology import Topology, parse_topology
from rankscope.simulator.trace import write_text_atomic

from .launch import RankContext, launch
from .runner import RankFailed

DEFAULT_SIZES = (4096, 65536, 1 << 20, 4 << 20)
_TAG = (1 << 30) + 1


@dataclass(frozen=True)
class CalibrateJob:
    sizes: tuple[int, ...]
    rounds: int = 10

    def __call__(self, ctx: RankContext) -> dict[str, Any] | None:
        mine: dict[str, list[float]] = {}
        for i in range(ctx.world):
            for j in range(i + 1, ctx.world):
                dist.barrier()
                if ctx.rank in (i, j):
                    mine[f"{i},{j}"] = [self._pingpong(ctx, i, j, n) for n in self.sizes]
        ctx.publish("pairs", mine)
        dist.barrier()
        if ctx.rank != 0:
            return None
        pairs: dict[str, list[float]] = {}
        for r in range(ctx.world):
            pairs.update({k: v for k, v in (ctx.fetch("pairs", r, wait=ctx.timeout) or {}).items()
                          if int(k.split(",")[0]) == r})  # the pinging side's clock measured it
        return {"sizes": list(self.sizes), "pairs": pairs, "backend": ctx.backend}

    def _pingpong(self, ctx: RankContext, i: int, j: int, n: int) -> float:
        buf = torch.zeros(n, dtype=torch.uint8, device=ctx.device)
        cuda = ctx.device.type == "cuda"
        times = []
        for k in range(self.rounds + 1):
            if ctx.rank == i:
                t0 = time.monotonic_ns()
                dist.send(buf, dst=j, tag=_TAG)
                dist.recv(buf, src=j, tag=_TAG)
                if cuda:
                    torch.cuda.synchronize(ctx.device)
                if k:
                    times.append((time.monotonic_ns() - t0) / 2e9)
            else:
                dist.recv(buf, src=i, tag=_TAG)
                dist.send(buf, dst=i, tag=_TAG)
        return min(times) if times else float("nan")


@dataclass(frozen=True)
class PairFit:
    src: int
    dst: int
    alpha: float              # seconds
    bw: float                 # bytes/s
    residuals: tuple[float, ...]  # seconds, measured - model, per size

    @property
    def rms(self) -> float:
        return float(np.sqrt(np.mean(np.square(self.residuals))))


def fit(sizes: Sequence[int], times: Sequence[float]) -> tuple[float, float, np.ndarray]:
    """Least-squares α (s), bw (B/s) and residuals (s) of t = α + n / bw; see [Note: calibration]."""
    n, t = np.asarray(sizes, dtype=np.float64), np.asarray(times, dtype=np.float64)
    if n.size < 2 or np.unique(n).size < 2:
        raise UsageError("calibration needs at least two different sizes to fit latency and bandwidth")
    beta, alpha = np.polyfit(n, t, 1)
    if alpha < 0:
        alpha, beta = 0.0, float(n @ t / (n @ n))
    if not beta > 0:
        raise RankscopeError(f"time does not grow with size over {list(sizes)} bytes (slope {beta:.3g} s/B); "
                             f"add larger --sizes")
    return float(alpha), 1.0 / float(beta), t - (alpha + beta * n)


def calibrate(nranks: int | None, sizes: Sequence[int] = DEFAULT_SIZES, *, rounds: int = 10,
              backend: str | None = None, timeout: float = 60.0) -> tuple[list[PairFit], dict[str, Any]] | None:
    """Measure every pair; (fits, raw) on the coordinator, None on other torchrun ranks."""
    if nranks is not None and nranks < 2:
        raise UsageError(f"calibrate needs >= 2 ranks (pairs to measure), got --ranks {nranks}")
    if any(s < 1 for s in sizes):
        raise UsageError(f"calibration sizes must be >= 1 byte, got {list(sizes)}")
    launched = launch(CalibrateJob(tuple(sizes), rounds), nranks=nranks, backend=backend, timeout=timeout)
    if not launched.ok:
        raise RankFailed(launched.failure_message(), launched, None)
    raw = launched.results.get(0)
    if raw is None:
        return None
    fits = []
    for key, times in sorted(raw["pairs"].items(), key=lambda kv: tuple(map(int, kv[0].split(",")))):
        i, j = map(int, key.split(","))
        alpha, bw, res = fit(raw["sizes"], times)
        fits.append(PairFit(i, j, alpha, bw, tuple(float(x) for x in res)))
    raw["nranks"] = launched.nranks
    return fits, raw


def topology(fits: list[PairFit], nranks: int, name: str, meta: dict[str, Any]) -> Topology:
    links = [[a, b, f.bw, f.alpha] for f in fits for a, b in ((f.src, f.dst), (f.dst, f.src))]
    return Topology.from_dict({"name": name, "nranks": nranks, "ring": list(range(nranks)),
                               "links": links, "meta": meta})


def write_topology(path: str, topo: Topology) -> Topology:
    """Write ``topo`` as TOML atomically, then load it back with ``parse_topology`` (the check
    that the simulator takes the file) and return what was loaded."""
    write_text_atomic(path, lambda f: f.write(topo.to_toml()))
    return parse_topology(path, topo.nranks)


def detours(topo: Topology) -> list[tuple[int, int]]:
    """Pairs the simulator would not route over their own link (see [Note: calibration])."""
    return [(i, j) for i in range(topo.nranks) for j in range(topo.nranks)
            if i != j and len(topo.route(i, j)) != 1]
