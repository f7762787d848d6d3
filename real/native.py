"""The native collectives (torch.distributed's own), on the same buffers a program uses.

| collective     | call                                   | this rank's result            |
|----------------|----------------------------------------|-------------------------------|
| all-reduce     | ``dist.all_reduce``                    | the whole buffer              |
| reduce-scatter | ``dist.reduce_scatter_single`` (2.13; older: ``reduce_scatter_tensor``) | shard r |
| all-gather     | ``dist.all_gather_single`` (older: ``all_gather_into_tensor``), shard r in | the whole buffer |
| broadcast      | ``dist.broadcast`` from the root       | the whole buffer              |

Shapes are checked in Python first: a shape that differs between ranks aborts the process inside
torch instead of raising (seen with torch 2.13 on gloo; only ``TORCH_DISTRIBUTED_DEBUG=DETAIL``
turns it into a RuntimeError). gloo runs a reduce-scatter as a whole all-reduce plus a copy, so
it costs an all-reduce there.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from rankscope.simulator.errors import UsageError
from rankscope.simulator.program import Buffer, CollKind, Init, OpKind, Program

COLLECTIVES = ("all-reduce", "reduce-scatter", "all-gather", "broadcast")
_KIND = {"all-reduce": CollKind.ALL_REDUCE, "reduce-scatter": CollKind.REDUCE_SCATTER,
         "all-gather": CollKind.ALL_GATHER}


def _reduce_scatter(out: torch.Tensor, inp: torch.Tensor) -> None:
    fn = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
    fn(out, inp)


def _all_gather(out: torch.Tensor, inp: torch.Tensor) -> None:
    fn = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    fn(out, inp)


class Native:
    """One native collective on flat buffers of ``numel`` items; :meth:`run` runs it once on the
    prepared input, :attr:`result` and :attr:`span` give this rank's result and where it lies in
    the program's buffer (items ``[lo, hi)``)."""

    def __init__(self, collective: str, numel: int, rank: int, world: int, root: int, *,
                 dtype: torch.dtype, device: torch.device):
        if collective not in COLLECTIVES:
            raise UsageError(f"no native collective for {collective!r}; choose from {', '.join(COLLECTIVES)}")
        if collective in ("reduce-scatter", "all-gather") and numel % world:
            raise UsageError(f"{collective} needs a buffer that splits evenly over {world} ranks, "
                             f"got {numel} items")
        self.collective, self.rank, self.world, self.root = collective, rank, world, root
        shard = numel // world
        self.span = (rank * shard, (rank + 1) * shard) if collective == "reduce-scatter" else (0, numel)
        self.input = torch.zeros(shard if collective == "all-gather" else numel, dtype=dtype, device=device)
        self.result = self.input if collective in ("all-reduce", "broadcast") else \
            torch.zeros(numel if collective == "all-gather" else shard, dtype=dtype, device=device)

    def load(self, initial: torch.Tensor) -> None:
        """Copy this rank's initial program buffer in (all-gather takes shard r of it)."""
        if self.collective == "all-gather":
            n = self.input.numel()
            self.input.copy_(initial[self.rank * n:(self.rank + 1) * n])
        else:
            self.input.copy_(initial)

    def run(self) -> None:
        c = self.collective
        if c == "all-reduce":
            dist.all_reduce(self.input)
        elif c == "broadcast":
            dist.broadcast(self.input, src=self.root)
        elif c == "reduce-scatter":
            _reduce_scatter(self.result, self.input)
        else:
            _all_gather(self.result, self.input)


def native_program(collective: str, nranks: int, nbytes: int) -> Program | None:
    """A program of one COLLECTIVE macro op per rank, to trace a native run; None for broadcast,
    which the Program IR has no collective kind for."""
    kind = _KIND.get(collective)
    if kind is None:
        return None
    n = nranks
    empty_i, empty_f = np.zeros(0, np.int32), np.zeros(0, np.int64)
    return Program(n, np.full(n, OpKind.COLLECTIVE), np.arange(n), np.full(n, -1), np.zeros(n),
                   np.zeros(n), np.zeros(n + 1, np.int64), np.zeros(0, np.int64),
                   (Buffer("buf", nbytes, Init.SHARD if kind == CollKind.ALL_GATHER else Init.OWN),),
                   empty_i, empty_f, empty_f, coll_kind=np.array([kind]), coll_bytes=np.array([nbytes]),
                   coll_buf=np.array([0]),
                   meta={"collective": collective, "algo": "native", "nranks": n, "nbytes": nbytes}).validate()
