"""``rankscope real sweep``: native collectives and rankscope's P2P programs, timed side by side.

[Note: how the real sweep times]
For each collective and size, every implementation (``native``: torch.distributed's own call;
``ring``, ``hd``, ...: rankscope's program run by :mod:`real.executor`) gets ``warmup`` untimed
runs, then ``iters`` timed rounds *interleaved*: round i runs each implementation once, in an
order rotated by i, so drift, noise (2 cores shared by N ranks here) and order effects (who runs
first after the barrier, who follows the one that warmed the caches) hit all of them alike. One timed run is: refill the
input (untimed), barrier, stamp, run, (CUDA: synchronize), stamp. A round's time is the slowest
rank's (``all_reduce`` MAX); the table shows the median round, the JSON also mean and min.
algbw = S / t and busbw = algbw x factor as nccl-tests defines them (simulator.costs), S the whole
buffer, GB/s = 1e9 B/s. Buffers are float32 (values meaningless, bytes on the wire = program
bytes). The last round of each implementation is traced: per-op times for P2P programs, one
COLLECTIVE op per rank for native ones (none for native broadcast: the Program IR has no
broadcast macro op), written to ``out_dir`` as ``{collective}_{impl}_{bytes}.trace``.
An implementation with ``timestamps=False`` reads no clock inside the run: the tracing-overhead
baseline (benchmarks/real_vs_native.py).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from rankscope.simulator.costs import algbw, busbw
from rankscope.simulator.program import Buffer, Init
from rankscope.simulator.progress import Progress
from rankscope.simulator.trace import write_trace

from .clock import ClockSync, estimate_offsets
from .encoding import Encoding, aligned_program, aligned_size, alignment_unit
from .executor import Executor
from .launch import RankContext, launch
from .native import Native, native_program
from .runner import RankFailed, clock_name, compose_trace

DEFAULT_ALGOS = {"all-reduce": ("ring", "hd", "ps"), "reduce-scatter": ("ring",),
                 "all-gather": ("ring",), "broadcast": ("ring", "tree")}
_INIT = {"all-reduce": Init.OWN, "reduce-scatter": Init.OWN, "all-gather": Init.SHARD,
         "broadcast": Init.ROOT}


@dataclass(frozen=True)
class Impl:
    name: str                  # "native" or a builder algorithm
    timestamps: bool = True

    @property
    def label(self) -> str:
        return self.name if self.timestamps else f"{self.name}-nostamps"


@dataclass(frozen=True)
class Group:
    collective: str
    nbytes: int                # requested; every implementation runs the same aligned size
    impls: tuple[Impl, ...]


class _Runner:
    """One implementation of a group on this rank: reset, run, records for its trace."""

    def __init__(self, ctx: RankContext, g: Group, impl: Impl, size: int, job: "SweepJob"):
        enc = Encoding(ctx.world, provenance=False)
        self.impl, self.ctx, self.ex, self.nat = impl, ctx, None, None
        if impl.name == "native":
            self.prog = native_program(g.collective, ctx.world, size)
            buf = Buffer("buf", size, _INIT[g.collective], root=job.root)
            self.initial = torch.from_numpy(enc.initial(buf, ctx.rank)).to(ctx.device)
            self.nat = Native(g.collective, self.initial.numel(), ctx.rank, ctx.world, job.root,
                              dtype=torch.float32, device=ctx.device)
            self.t = (0, 0)
        else:
            self.prog = aligned_program(g.collective, impl.name, ctx.world, size, enc.elem_bytes,
                                        pieces=job.pieces, root=job.root, nodes=job.nodes)
            self.ex = Executor(ctx, self.prog, enc, timestamps=impl.timestamps)

    def reset(self) -> None:
        if self.ex is not None:
            self.ex.reset()
        else:
            self.nat.load(self.initial)

    def run(self) -> None:
        if self.ex is not None:
            self.ex.run()
        else:
            self.nat.run()

    def records(self) -> np.ndarray:
        if self.ex is not None:
            return self.ex.records()
        out = np.full((2, self.ctx.world), np.nan)
        out[:, self.ctx.rank] = self.t
        return out


@dataclass(frozen=True)
class SweepJob:
    """The job every rank runs; rank 0 returns one row (dict) per (group, implementation)."""

    groups: tuple[Group, ...]
    iters: int = 5
    warmup: int = 1
    out_dir: str | None = None
    pieces: int = 4
    root: int = 0
    nodes: int | None = None
    progress: bool | None = None

    def __call__(self, ctx: RankContext) -> list[dict[str, Any]] | None:
        sync = estimate_offsets(ctx.rank, ctx.world)
        rows: list[dict[str, Any]] = []
        with Progress(len(self.groups) * self.iters, "real sweep", force=bool(self.progress)) as bar:
            bar.enabled = bar.enabled and ctx.rank == 0 and self.progress is not False
            for g in self.groups:
                rows += self._group(ctx, g, sync, bar)
        return rows if ctx.rank == 0 else None

    def _group(self, ctx: RankContext, g: Group, sync: ClockSync, bar: Progress) -> list[dict[str, Any]]:
        unit = math.lcm(*(alignment_unit(g.collective, i.name, ctx.world, pieces=self.pieces)
                          for i in g.impls if i.name != "native"), ctx.world)
        size = aligned_size(g.nbytes, 4, unit)
        runners = [_Runner(ctx, g, impl, size, self) for impl in g.impls]
        cuda = ctx.device.type == "cuda"
        for r in runners:
            for _ in range(self.warmup):
                r.reset()
                r.run()
        times = np.zeros((len(runners), self.iters))
        for it in range(self.iters):
            # the order rotates round by round (the same on every rank): no implementation always
            # runs first, after the barrier, or right after the one that warms the caches
            for k in np.roll(np.arange(len(runners)), -it):
                r = runners[k]
                r.reset()
                dist.barrier()
                t0 = time.monotonic_ns()
                r.run()
                if cuda:
                    torch.cuda.synchronize(ctx.device)
                t1 = time.monotonic_ns()
                times[k, it], r.t = (t1 - t0) / 1e9, (t0, t1)
            bar.step(f"{g.collective} {g.nbytes} B")
        slowest = torch.from_numpy(times)
        dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
        out = []
        for k, r in enumerate(runners):
            path = self._trace(ctx, g, r, size, sync)
            if ctx.rank == 0:
                t = slowest[k].numpy()
                med = float(np.median(t))
                out.append({"collective": g.collective, "impl": r.impl.label, "nbytes": size,
                            "requested_nbytes": g.nbytes, "nranks": ctx.world, "backend": ctx.backend,
                            "seconds": med, "mean_seconds": float(t.mean()), "min_seconds": float(t.min()),
                            "round_seconds": [float(x) for x in t],
                            "algbw": algbw(size, med), "busbw": busbw(g.collective, ctx.world, size, med),
                            "iters": self.iters, "trace": path})
        return out

    def _trace(self, ctx: RankContext, g: Group, r: _Runner, size: int, sync: ClockSync) -> str | None:
        if not self.out_dir or r.prog is None or not r.impl.timestamps:
            return None
        rec = torch.from_numpy(r.records())
        rows = [torch.empty_like(rec) for _ in range(ctx.world)] if ctx.rank == 0 else None
        dist.gather(rec, rows, dst=0)
        if ctx.rank != 0:
            return None
        path = os.path.join(self.out_dir, f"{g.collective}_{r.impl.label}_{size}.trace")
        meta = {"executor": ctx.backend, "clock": clock_name(ctx.backend), "clock_offsets_ns": sync.offsets,
                "clock_offsets_measured_ns": sync.measured, "clock_rtt_ns": sync.rtt,
                "real": {"sweep": True, "iters": self.iters, "round": self.iters - 1,
                         "requested_nbytes": g.nbytes, "encoding": "float32"}}
        write_trace(path, compose_trace(r.prog, torch.stack(rows).numpy(), sync.offsets, meta))
        return path


def run_sweep(groups: list[Group], *, nranks: int | None, backend: str | None = None,
              timeout: float = 60.0, iters: int = 5, warmup: int = 1, out_dir: str | None = None,
              pieces: int = 4, root: int = 0, nodes: int | None = None,
              progress: bool | None = None) -> list[dict[str, Any]]:
    """Time every group in one launch; rank 0's rows ([] on other torchrun ranks)."""
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    job = SweepJob(tuple(groups), iters, warmup, out_dir, pieces, root, nodes, progress)
    launched = launch(job, nranks=nranks, backend=backend, timeout=timeout)
    if not launched.ok:
        raise RankFailed(launched.failure_message(), launched, None)
    return (launched.results.get(0) or []) if launched.rank in (None, 0) else []


def format_table(rows: list[dict[str, Any]]) -> str:
    """nccl-tests-style text: one block per collective, one column group per implementation."""
    out = []
    for coll in dict.fromkeys(r["collective"] for r in rows):
        sub = [r for r in rows if r["collective"] == coll]
        impls = list(dict.fromkeys(r["impl"] for r in sub))
        sizes = list(dict.fromkeys(r["nbytes"] for r in sub))
        first = sub[0]
        out.append(f"# rankscope real sweep: {coll} on {first['nranks']} ranks, {first['backend']}, "
                   f"median of {first['iters']} rounds (slowest rank); GB/s = 1e9 B/s as nccl-tests")
        out.append("#" + " " * 13 + "".join(f"{i:^27}" for i in impls))
        out.append(f"#{'size (B)':>12}" + "".join(f"{'time (us)':>11}{'algbw':>8}{'busbw':>8}" for _ in impls))
        by = {(r["nbytes"], r["impl"]): r for r in sub}
        for s in sizes:
            cells = "".join(f"{by[s, i]['seconds'] * 1e6:>11.1f}{by[s, i]['algbw'] / 1e9:>8.3f}"
                            f"{by[s, i]['busbw'] / 1e9:>8.3f}" if (s, i) in by else " " * 27 for i in impls)
            out.append(f" {s:>12}{cells}")
    return "\n".join(out)
