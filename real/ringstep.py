"""The measurements of ``rankscope validate`` that run on ranks: the ring-step job (bandwidth and
reduction cost under load), the executor's per-step overhead, and the matmul rate of one thread.

See [Note: the model and its calibration] in real/validate.py for what each one measures and why.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist

from rankscope.simulator.errors import RankscopeError

from .encoding import Encoding, aligned_program
from .launch import launch
from .rank import RankContext
from .runner import RankFailed, run_programs
from .validate_fit import RingStepFit, relative_fit

CALIBRATION_SIZES = (1 << 20, 4 << 20, 16 << 20)   # ring-step: bandwidth and reduction
OVERHEAD_SIZE = 8 << 10                               # executor run: per-step overhead (α)
_TAG = (1 << 30) + 2


@dataclass(frozen=True)
class RingStepJob:
    """The ring-step calibration of [Note: the model and its calibration], on every rank."""

    sizes: tuple[int, ...]
    rounds: int = 20
    elem_bytes: int = 8

    def __call__(self, ctx: RankContext) -> list[dict[str, Any]] | None:
        nxt, prv = (ctx.rank + 1) % ctx.world, (ctx.rank - 1) % ctx.world
        mine = {}
        for n in self.sizes:
            k = max(n // self.elem_bytes, 1)
            buf = torch.ones(k, dtype=torch.int64, device=ctx.device)
            out, land = torch.ones_like(buf), torch.zeros_like(buf)  # sent, received; added into buf
            self._round(out, buf, land, nxt, prv, ctx)  # warm-up: connections, pages
            dist.barrier()
            rounds, adds = [], []
            t0 = time.monotonic_ns()
            for i in range(self.rounds):  # as an all-reduce: reduce-scatter rounds, then all-gather's
                add = self._round(out, buf, land, nxt, prv, ctx, reduce=i < self.rounds // 2)
                t1 = time.monotonic_ns()
                rounds.append((t1 - t0 - add) / 1e9)
                if i < self.rounds // 2:
                    adds.append(add / 1e9)
                t0 = t1
            mine[str(n)] = [float(np.mean(rounds)), float(np.mean(adds))]
        ctx.publish("ringstep", mine)
        dist.barrier()
        if ctx.rank != 0:
            return None
        return [ctx.fetch("ringstep", r, wait=ctx.timeout) for r in range(ctx.world)]

    @staticmethod
    def _round(out: torch.Tensor, buf: torch.Tensor, land: torch.Tensor, nxt: int, prv: int,
               ctx: RankContext, reduce: bool = True) -> int:
        """One round (sending ``out``, which nothing writes); the nanoseconds its add took."""
        r = dist.irecv(land, src=prv, tag=_TAG)
        s = dist.isend(out, dst=nxt, tag=_TAG)
        r.wait(ctx.wait_timeout)
        t = time.monotonic_ns()
        if reduce:
            buf.add_(land)
            if ctx.device.type == "cuda":
                torch.cuda.synchronize(ctx.device)
        t = time.monotonic_ns() - t
        s.wait(ctx.wait_timeout)
        return t


def ring_step_calibration(nranks: int, sizes: Sequence[int] = CALIBRATION_SIZES, *, rounds: int = 20,
                          backend: str | None = None, timeout: float = 60.0) -> RingStepFit:
    launched = launch(RingStepJob(tuple(sizes), rounds), nranks=nranks, backend=backend, timeout=timeout)
    if not launched.ok:
        raise RankFailed(launched.failure_message(), launched, None)
    per_rank = launched.results.get(0)
    if per_rank is None:
        raise RankscopeError("validate runs on local ranks; start it without torchrun")
    step = [float(np.median([r[str(n)][0] for r in per_rank])) for n in sizes]
    add = [float(np.median([r[str(n)][1] for r in per_rank])) for n in sizes]
    alpha, bw, res = relative_fit(sizes, step)
    gamma = float(np.polyfit(np.asarray(sizes, float), np.asarray(add), 1)[0])
    return RingStepFit(nranks, alpha, bw, max(gamma, 0.0), tuple(sizes), tuple(step), tuple(res.tolist()))


def step_overhead(nranks: int, *, runs: int = 11, timeout: float = 60.0) -> tuple[float, list[float]]:
    """α of [Note: the model and its calibration]: the median seconds per step of ``runs`` executor
    runs of an OVERHEAD_SIZE ring all-reduce, after a warm-up; and the runs' seconds."""
    prog = aligned_program("all-reduce", "ring", nranks, OVERHEAD_SIZE, Encoding(nranks).elem_bytes)
    got = run_programs([prog] * (runs + 1), nranks=nranks, native=False, timeout=timeout)[1:]
    secs = [g["seconds"] for g in got]
    return float(np.median(secs)) / prog.n_steps, secs


def matmul_flops_per_s(width: int = 1024, batch: int = 32, reps: int = 20) -> float:
    """FLOP/s of the MLP's matmuls (forward and both backward shapes) on one thread, as each
    rank runs them (real/train.py sets one thread per rank)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x, w, g = torch.randn(batch, width), torch.randn(width, width), torch.randn(batch, width)
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            for _ in range(reps):
                x @ w.T
                g @ w
                g.T @ x
            best = min(best, time.perf_counter() - t)
        return 3 * 2 * batch * width * width * reps / best
    finally:
        torch.set_num_threads(threads)
