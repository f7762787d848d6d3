"""k channel rings over the same ranks, from the ring builder: a program whose flows share links
uniformly (each link carries one flow per channel, k equal flows, 1/k of it each).

Not NCCL's multi-channel ring (that one lays each channel's inter-node hops on its own NIC): every
channel here runs the same ring order, so all k share every hop. Channel c is
``ring_all_reduce(N, S_c)`` on its own buffer ``ch<c>`` (S_c from ``split(S, k)``), its own
connections therefore (the engine's connection is (src, dst, buffer)); ops are laid out step-major,
op (t, c, r) = t·k·N + c·N + r, so a step is one contiguous run of k·N ops. Used by the engine
tests and benchmarks/sim_speed.py.
"""

from __future__ import annotations

import numpy as np

from rankscope.simulator.collectives.ring import ring_all_reduce
from rankscope.simulator.program import Buffer, Program, split


def channel_rings(nranks: int, nbytes: int, k: int) -> Program:
    """Ring all-reduce of ``nbytes`` on ``nranks`` ranks as ``k`` parallel channels."""
    n = nranks
    sizes = np.diff(split(nbytes, k))
    one = ring_all_reduce(n, int(sizes[0]))  # the ring's columns; every channel has the same
    steps = one.n_steps
    buffers = tuple(Buffer(f"ch{c}", int(s)) for c, s in enumerate(sizes))
    meta = {"collective": "all-reduce", "algo": f"ring x{k} channels", "nranks": n, "nbytes": nbytes, "channels": k}
    if one.n_ops == 0:
        return Program(n, *(np.zeros(0, dt) for dt in (np.uint8, np.int32, np.int32, np.int32, np.int32)),
                       np.zeros(1, np.int64), np.zeros(0, np.int64), buffers, np.zeros(0, np.int32),
                       np.zeros(0, np.int64), np.zeros(0, np.int64), meta=meta)
    per = k * n  # ops per step
    m = steps * per
    # the ring builder's columns (op t·N + r), each step repeated once per channel
    rank = np.tile(np.arange(n, dtype=np.int32), steps * k)
    peer = rank + 1
    peer[peer == n] = 0
    step = np.repeat(np.arange(steps, dtype=np.int32), per)
    kind = np.repeat(one.kind.reshape(steps, n), k, axis=0).ravel()
    chunk = np.repeat(one.arg.reshape(steps, n), k, axis=0)  # (steps*k, n): the chunk within a channel
    chunk += (np.tile(np.arange(k, dtype=np.int32), steps) * n)[:, None]
    # op (t, c, r) waits for (t-1, c, r-1): one dep each, none in the first step
    dep_ptr = np.zeros(m + 1, dtype=np.int64)
    dep_ptr[per + 1:] = np.arange(1, m - per + 1, dtype=np.int64)
    dep_idx = np.arange(-1, m - per - 1, dtype=np.int64)
    dep_idx[::n] += n  # rank 0's predecessor is rank n-1 of the previous step
    offs, lens = [], []
    for s in sizes:
        b = split(int(s), n)
        offs.append(b[:-1])
        lens.append(np.diff(b))
    return Program(n, kind, rank, peer, chunk.ravel(), step, dep_ptr, dep_idx, buffers,
                   np.repeat(np.arange(k, dtype=np.int32), n), np.concatenate(offs), np.concatenate(lens),
                   phases=one.phases, meta=meta)
