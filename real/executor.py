"""Run one program on one rank: point-to-point transfers, reductions with torch, timestamps.

[Note: what an op's start and end are]
A transfer happens on two ranks. Its ``start`` is the *sender's* timestamp just before it issues
the send (``isend``); its ``end`` is the *receiver's* timestamp once the data has landed and, for a
REDUCE, been added into the buffer (the ``add_`` done). So ``end - start`` spans the whole transfer
as the schedule sees it, including the time the message waited for the receiver to post, and the
two stamps come from two clocks, aligned by :mod:`real.clock`'s offsets. On NCCL a wave's
transfers are posted as one ``batch_isend_irecv`` group (NCCL needs the group to pair sends and
receives between two ranks without deadlock), so its sends share one start stamp and its receives
complete together; gloo posts and completes each one on its own. See [Note: waves] (real/plan.py)
for the order of posting and waiting.

[Note: waiting on CUDA]
On gloo a wait takes what is left of the rank's wait budget (real/rank.py, [Note: wait budgets]).
On CUDA it takes no timeout: ``Work.wait()`` then makes the current stream wait for the NCCL
stream and returns, while ``Work.wait(timeout)`` blocks the CPU thread until the work has
completed (torch's ``Work.wait`` docstring), polling it in millisecond sleeps
(``kSynchronizeBusyWaitMillis`` in torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp), which would
put a sleep into each of a ring's 2(N-1) waves at any size. The CUDA-event stamps are recorded on the stream, after the
wait, so they still mark when the data had landed; the process group's timeout (NCCL's watchdog)
is the limit for a rank that hangs.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.distributed as dist

from rankscope.simulator.program import Program

from .clock import HostClock, make_clock
from .encoding import Encoding
from .faults import Fault
from .plan import Transfer, Wave, rank_waves
from .rank import RankContext


class Executor:
    """Buffers, scratch and the wave plan of one rank for one program; :meth:`run` runs it once.

    ``timestamps=False`` skips every clock read (the tracing-overhead baseline). ``fault`` is an
    injected failure (:mod:`real.faults`). ``batched`` posts each wave as one
    ``batch_isend_irecv`` (default: on CUDA devices, as NCCL needs; gloo takes it too).
    """

    def __init__(self, ctx: RankContext, prog: Program, enc: Encoding, *, timestamps: bool = True,
                 fault: Fault | None = None, batched: bool | None = None):
        self.ctx, self.prog, self.enc = ctx, prog, enc
        self.batched = ctx.device.type == "cuda" if batched is None else batched
        self.timestamps, self.fault = timestamps, fault
        self.clock = make_clock(ctx.device) if timestamps else HostClock()
        dtype = getattr(torch, enc.dtype)
        self.waves, scratch = rank_waves(prog, ctx.rank, enc.itemsize)
        self.initial = [torch.from_numpy(enc.initial(b, ctx.rank)).to(ctx.device) for b in prog.buffers]
        self.buffers = [t.clone() for t in self.initial]
        # zeros, not empty: the pages are touched here, so no page fault lands inside a timed receive
        self.scratch = torch.zeros(scratch, dtype=dtype, device=ctx.device)
        self._plan = [(w, [(x, self._view(x)) for x in w.sends],
                       [(x, self._view(x), self._landing(x)) for x in w.recvs]) for w in self.waves]
        self.start_tok: dict[int, object] = {}
        self.end_tok: dict[int, object] = {}
        self.fired = False
        self.wait = waiter(ctx)

    def _view(self, x: Transfer) -> torch.Tensor:
        return self.buffers[x.buffer][x.lo:x.hi]

    def _landing(self, x: Transfer) -> torch.Tensor:
        if x.scratch < 0:
            return self._view(x)
        return self.scratch[x.scratch:x.scratch + x.hi - x.lo]

    def reset(self) -> None:
        """Refill the buffers with the program's initial values and forget the timestamps."""
        for buf, init in zip(self.buffers, self.initial):
            buf.copy_(init)
        self.start_tok.clear()
        self.end_tok.clear()

    def run(self, after_step: Callable[[int], None] | None = None) -> None:
        """Run every wave of this rank; ``after_step(s)`` after the last wave of each step s in
        which this rank took part (the per-step provenance check)."""
        stamp = self.clock.stamp if self.timestamps else None
        self.ctx.fresh_budget()
        self.clock.begin()
        prev_step = None
        for wave, sends, recvs in self._plan:
            if after_step is not None and prev_step is not None and wave.step != prev_step:
                after_step(prev_step)
            prev_step = wave.step
            if self.fault is not None and not self.fired and self.fault.due(self.ctx.rank, wave.step):
                self.fired = True
                self.fault.fire()
            if self.batched:
                self._wave_batched(wave, sends, recvs, stamp)
            else:
                self._wave(wave, sends, recvs, stamp)
        if after_step is not None and prev_step is not None:
            after_step(prev_step)
        if self.fault is not None and not self.fired and self.fault.rank == self.ctx.rank:
            self.fired = True
            self.fault.fire()

    def _wave(self, wave: Wave, sends: list, recvs: list, stamp) -> None:
        rworks = [dist.irecv(land, src=x.peer, tag=x.op) if x.hi > x.lo else None for x, _, land in recvs]
        sworks = []
        for x, view in sends:
            if stamp is not None:
                self.start_tok[x.op] = stamp()
            sworks.append(dist.isend(view, dst=x.peer, tag=x.op) if x.hi > x.lo else None)
        if wave.guard:
            self._wait_all(sworks)
        for (x, view, land), w in zip(recvs, rworks):
            if w is not None:
                self.wait(w)
            _land(x, view, land)
            if stamp is not None:
                self.end_tok[x.op] = stamp()
        if not wave.guard:
            self._wait_all(sworks)

    def _wave_batched(self, wave: Wave, sends: list, recvs: list, stamp) -> None:
        ops = [dist.P2POp(dist.irecv, land, x.peer, tag=x.op) for x, _, land in recvs if x.hi > x.lo]
        ops += [dist.P2POp(dist.isend, view, x.peer, tag=x.op) for x, view in sends if x.hi > x.lo]
        if stamp is not None and sends:
            tok = stamp()
            for x, _ in sends:
                self.start_tok[x.op] = tok
        self._wait_all(dist.batch_isend_irecv(ops) if ops else [])
        for x, view, land in recvs:
            _land(x, view, land)
            if stamp is not None:
                self.end_tok[x.op] = stamp()

    def _wait_all(self, works: list) -> None:
        for w in works:
            if w is not None:
                self.wait(w)

    def records(self, after_error: bool = False) -> np.ndarray:
        """(2, n_ops) float64: row 0 the start (host ns, this rank's clock) of the ops this rank
        sent, row 1 the end of those it received; NaN elsewhere. ``after_error``: the run failed,
        so nothing may wait for the device (a stuck NCCL kernel would never let a synchronize
        return): stamps not yet reached stay NaN (see real/clock.py)."""
        out = np.full((2, self.prog.n_ops), np.nan)
        for row, toks in ((0, self.start_tok), (1, self.end_tok)):
            if toks:
                ids = np.fromiter(toks.keys(), dtype=np.int64, count=len(toks))
                out[row, ids] = self.clock.resolve(list(toks.values()), sync=not after_error)
        return out

    def host_buffers(self) -> list[np.ndarray]:
        return [b.cpu().numpy() for b in self.buffers]


def _land(x: Transfer, view: torch.Tensor, land: torch.Tensor) -> None:
    if x.reduce:
        view.add_(land)
    elif x.scratch >= 0:
        view.copy_(land)


def waiter(ctx: RankContext) -> Callable[[object], None]:
    """How this rank waits for a posted send or receive (see [Note: waiting on CUDA])."""
    if ctx.device.type == "cuda":
        return lambda w: w.wait()

    def wait(w) -> None:
        w.wait(ctx.wait_budget())
        ctx.progressed()
    return wait
