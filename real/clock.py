"""Timestamps on a rank, and the offsets that put every rank's timestamps on rank 0's clock.

[Note: clocks]
On CPUs a timestamp is ``time.monotonic_ns()`` (clock ``"monotonic"``; CLOCK_MONOTONIC, shared by
the processes of one host). On GPUs it is a CUDA event recorded on the current stream (clock
``"cuda-events"``): the time the stream reached that point. Events become host nanoseconds at the
end of a run: one reference event recorded on an idle stream, right after a ``synchronize()``,
anchors the GPU timeline to the host clock read just before it, and ``ref.elapsed_time(ev)`` (ms,
~0.5 us resolution) places every other event.

Hosts do not share a clock. At start-up rank 0 plays ping-pong with every other rank k in turn
(NTP's on-wire method): rank 0 stamps t0 and sends; k stamps t1 on receipt and answers with it;
rank 0 stamps t2 on the reply. Then ``offset_k = t1 - (t0 + t2) / 2`` (k's clock minus rank 0's),
exact when both legs take equally long, off by at most half the round trip otherwise; of
``rounds`` samples the one with the smallest round trip is kept (the least queueing). A rank's
timestamp t becomes ``t - offset_k`` on rank 0's clock. Ranks on rank 0's host need no estimate:
CLOCK_MONOTONIC is one clock per kernel, so their offset is exactly 0 (the estimate, recorded
too, shows its own error: on this 2-core test machine up to a few hundred us). The ping-pong uses CPU tensors, so under
``cpu:gloo,cuda:nccl`` it goes over gloo. Offsets and round trips go in the trace's meta.
"""

from __future__ import annotations

import hashlib
import platform
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

PING_TAG = 1 << 30  # above every op id, which tags the program's own messages


class HostClock:
    name = "monotonic"

    def begin(self) -> None:
        pass

    @staticmethod
    def stamp() -> int:
        return time.monotonic_ns()

    def resolve(self, tokens: list, sync: bool = True) -> np.ndarray:
        return np.asarray(tokens, dtype=np.float64)


class CudaEventClock:
    """Stamps are CUDA events on the current stream; :meth:`resolve` turns them into host ns."""

    name = "cuda-events"

    def __init__(self, device: torch.device):
        self.device = device
        self.ref: torch.cuda.Event | None = None
        self.ref_ns = 0

    def begin(self) -> None:
        """The reference: recorded on an idle stream (after a synchronize), so it completes
        within microseconds of the host time read just before it; the host time after the
        second synchronize would add the wake-up of that call, differently on every rank."""
        torch.cuda.synchronize(self.device)
        self.ref = torch.cuda.Event(enable_timing=True)
        t = time.monotonic_ns()
        self.ref.record()
        torch.cuda.synchronize(self.device)
        self.ref_ns = t

    def stamp(self) -> torch.cuda.Event:
        ev = torch.cuda.Event(enable_timing=True)
        ev.record()
        return ev

    def resolve(self, tokens: list, sync: bool = True) -> np.ndarray:
        """Host ns of each event. ``sync=False`` (after an error): no ``synchronize``, which a
        stuck NCCL kernel would never let return; an event the stream has not reached yet
        (``query()`` False) is NaN, as is every event when the reference itself was not reached."""
        if sync:
            torch.cuda.synchronize(self.device)
            return np.array([self.ref_ns + self.ref.elapsed_time(ev) * 1e6 for ev in tokens], dtype=np.float64)
        if self.ref is None or not self.ref.query():
            return np.full(len(tokens), np.nan)
        return np.array([self.ref_ns + self.ref.elapsed_time(ev) * 1e6 if ev.query() else np.nan
                         for ev in tokens], dtype=np.float64)


def make_clock(device: torch.device):
    return CudaEventClock(device) if device.type == "cuda" else HostClock()


def clock_domain() -> int:
    """An id shared by the processes that read one CLOCK_MONOTONIC: the kernel's boot id (the
    same for every container of one host), else a hash of the host name."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return int(f.read().strip().replace("-", "")[:15], 16)
    except (OSError, ValueError):
        return int.from_bytes(hashlib.sha1(platform.node().encode()).digest()[:7], "little")


@dataclass(frozen=True)
class ClockSync:
    """Per rank (ns): the offset applied to its stamps, the ping-pong estimate, and the round trip
    of the sample kept. Ranks on rank 0's kernel (same :func:`clock_domain`) read the same clock:
    their applied offset is 0, and the estimate is kept only as a measure of its own error."""

    offsets: list[float]
    measured: list[float]
    rtt: list[float]


def estimate_offsets(rank: int, world: int, rounds: int = 16) -> ClockSync:
    """See [Note: clocks]. Collective: every rank calls it; all get the same result (broadcast)."""
    out = torch.zeros(3, world, dtype=torch.float64)
    msg = torch.zeros(2, dtype=torch.int64)
    domain = clock_domain()
    for k in range(1, world):
        best = (float("inf"), 0.0, False)
        for _ in range(rounds + 1):  # the first exchange only warms the connection up
            if rank == 0:
                t0 = time.monotonic_ns()
                dist.send(msg, dst=k, tag=PING_TAG)
                dist.recv(msg, src=k, tag=PING_TAG)
                t2 = time.monotonic_ns()
                if _ > 0 and t2 - t0 < best[0]:
                    best = (t2 - t0, int(msg[0]) - (t0 + t2) / 2, int(msg[1]) == domain)
            elif rank == k:
                dist.recv(msg, src=0, tag=PING_TAG)
                msg[0], msg[1] = time.monotonic_ns(), domain
                dist.send(msg, dst=0, tag=PING_TAG)
        if rank == 0:
            out[0, k] = 0.0 if best[2] else best[1]
            out[1, k], out[2, k] = best[1], best[0]
    dist.broadcast(out, src=0)
    return ClockSync(*(row.tolist() for row in out))
