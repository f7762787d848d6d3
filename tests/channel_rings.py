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
    rings = [ring_all_reduce(n, int(s)) for s in sizes]
    one = rings[0]
    m1, steps = one.n_ops, one.n_steps
    m = m1 * k
    if m1 == 0:
        return Program(n, *(np.zeros(0, dt) for dt in (np.uint8, np.int32, np.int32, np.int32, np.int32)),
                       np.zeros(1, np.int64), np.zeros(0, np.int64),
                       tuple(Buffer(f"ch{c}", int(s)) for c, s in enumerate(sizes)),
                       np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.int64),
                       meta={"collective": "all-reduce", "algo": f"ring x{k} channels", "nranks": n,
                             "nbytes": nbytes, "channels": k})
    # new id of channel c's op o (= t·N + r): t·k·N + c·N + r
    t_of = np.repeat(np.arange(steps, dtype=np.int64), n)
    r_of = np.tile(np.arange(n, dtype=np.int64), steps)
    new_id = (t_of * k * n + r_of)[None, :] + (np.arange(k, dtype=np.int64) * n)[:, None]  # (k, m1)
    order = np.empty(m, dtype=np.int64)
    order[new_id.ravel()] = np.arange(m, dtype=np.int64)  # new op -> (channel, old op) flat
    ch, old = order // m1, order % m1

    def col(name):
        return getattr(one, name)[old]

    nchunk = one.chunk_len.size
    ndeps = np.diff(one.dep_ptr)[old]
    ptr = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(ndeps, out=ptr[1:])
    gather = np.repeat(one.dep_ptr[old] - ptr[:-1], ndeps) + np.arange(ptr[-1], dtype=np.int64)
    dep_old = one.dep_idx[gather]
    dep_ch = np.repeat(ch, ndeps)
    dep_idx = new_id[dep_ch, dep_old]
    return Program(n, col("kind"), col("rank"), col("peer"), (one.arg[old] + ch * nchunk).astype(np.int32),
                   col("step"), ptr, dep_idx, tuple(Buffer(f"ch{c}", int(s)) for c, s in enumerate(sizes)),
                   np.repeat(np.arange(k, dtype=np.int32), nchunk),
                   np.concatenate([r.chunk_off for r in rings]), np.concatenate([r.chunk_len for r in rings]),
                   phases=one.phases,
                   meta={"collective": "all-reduce", "algo": f"ring x{k} channels", "nranks": n, "nbytes": nbytes,
                         "channels": k})
