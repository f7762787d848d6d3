"""Data parallelism is exact: N gloo ranks with b/N samples of every batch end a training run with
the weights one process gets with the whole batches.

Each rank builds the same MLP from the same seed, takes its slice of every batch, computes the mean
loss over its slice, and all-reduces (sums) the gradients, then divides by N: the mean over N equal
slices of per-slice means is the mean over the batch, so the SGD step is the one-device step. The
weights differ only by float32 rounding: the gradient sums run in another order (the ring's
reduce-scatter adds chunks rank by rank), which changes the last bits; :data:`TOLERANCE` bounds it
for the default run (5 steps of a 3-layer width-64 MLP: 1.5e-8 measured on this machine).
With ``all_reduce=False`` each rank trains on its slices alone: the weights then differ, which is
what the summed gradients prevent. The result is
handed to the TUI's data-parallel lesson by the CLI as a plain dict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.distributed as dist

from rankscope.simulator.errors import UsageError

from .launch import RankContext, launch

TOLERANCE = 1e-5
"""Largest |w_N - w_1| accepted, in float32 weights of order 0.1 (about 100 float32 ulps)."""


@dataclass(frozen=True)
class DPConfig:
    nranks: int = 4
    batch: int = 32          # samples per step on one device; each rank takes batch / nranks
    width: int = 64
    layers: int = 3
    steps: int = 5
    lr: float = 0.1
    seed: int = 0
    all_reduce: bool = True  # False: no gradient sum (each rank on its own slices)

    def __post_init__(self) -> None:
        if self.nranks < 1 or self.batch % self.nranks:
            raise UsageError(f"the batch ({self.batch}) must split evenly over {self.nranks} ranks")


def _model(cfg: DPConfig) -> torch.nn.Module:
    torch.manual_seed(cfg.seed)
    mods: list[torch.nn.Module] = []
    for _ in range(cfg.layers - 1):
        mods += [torch.nn.Linear(cfg.width, cfg.width), torch.nn.Tanh()]
    mods.append(torch.nn.Linear(cfg.width, 1))
    return torch.nn.Sequential(*mods)


def _data(cfg: DPConfig) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(cfg.seed + 1)
    x = torch.randn(cfg.steps, cfg.batch, cfg.width, generator=g)
    y = torch.randn(cfg.steps, cfg.batch, 1, generator=g)
    return x, y


def _train(cfg: DPConfig, rank: int, world: int) -> torch.Tensor:
    """The weights after ``cfg.steps`` SGD steps on ``rank``'s slices (world 1: the whole batches)."""
    model, (x, y) = _model(cfg), _data(cfg)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    per = cfg.batch // world
    for s in range(cfg.steps):
        sl = slice(rank * per, (rank + 1) * per)
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x[s, sl]), y[s, sl]).backward()
        if world > 1 and cfg.all_reduce:
            for p in model.parameters():
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad /= world
        opt.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@dataclass(frozen=True)
class DPJob:
    """What every rank runs (picklable, for spawned ranks)."""

    cfg: DPConfig

    def __call__(self, ctx: RankContext) -> list[float]:
        return _train(self.cfg, ctx.rank, ctx.world).tolist()


def run(cfg: DPConfig = DPConfig(), timeout: float = 120.0) -> dict[str, Any]:
    """Train on ``cfg.nranks`` gloo ranks and in this process alone; compare the weights."""
    launched = launch(DPJob(cfg), nranks=cfg.nranks, backend="gloo", timeout=timeout)
    if not launched.ok:
        raise UsageError(f"the data-parallel run failed: {launched.failure_message()}")
    one = _train(cfg, 0, 1)
    start = torch.cat([p.detach().flatten() for p in _model(cfg).parameters()])
    ranks = [torch.tensor(launched.results[r]) for r in range(cfg.nranks)]
    diff = max(float((w - one).abs().max()) for w in ranks)
    spread = max(float((w - ranks[0]).abs().max()) for w in ranks)
    return {**asdict(cfg), "per_rank_batch": cfg.batch // cfg.nranks, "parameters": int(one.numel()),
            "max_abs_diff": diff, "ranks_agree": spread == 0.0, "tolerance": TOLERANCE,
            "max_update": float((one - start).abs().max()), "equal": diff <= TOLERANCE}
