"""NCCL's multi-channel ring as a program: k channels, each a ring over all ranks carrying 1/k of the buffer.

[Note: channels as rings]
NCCL cuts a collective across nChannels channels; channel c moves sub-slice c of every rank's
shard (the shard of rank r is ``split(S, N)[r]``, cut again into k sub-slices), around its own
ring, with its own connections (src/device/all_reduce.h ``runRing``; src/enqueue.cc splits the
count over channels). Ring orders follow NCCL's layout on a rail-optimised cluster: inside a
node channel c enters at local GPU ``c mod G`` and walks the node with a stride coprime to G;
it leaves the node from the last GPU of that walk, so the inter-node hops of different
channels leave and enter through different GPUs and hence different NICs (rails)
(src/graph/search.cc builds NET -> GPU ... GPU -> NET channels, one NIC pair per channel).

NCCL gives every channel its own connection; the engine's connection is (src, dst, buffer), so
with ``own_buffers`` (what :mod:`simulator.nccl` builds) each distinct ring order is a buffer of its
own (``ring<j>``: that ring's sub-slices of every shard, laid end to end), and rings that share a
GPU pair do not queue on one connection. The registry's ``nccl-ring`` (the real executor's) keeps
one buffer, as its point-to-point messages on gloo have one connection per pair. Channels
whose ring orders are identical become one ring carrying their joint bytes: two equal flows on one
route end when one flow of twice the bytes does, so the time is unchanged; ``meta["rings"]``
lists each distinct ring and how many channels it carries.

Ops are built as whole numpy columns, as :mod:`simulator.collectives.ring`: op (t, j, i) is step
t of distinct ring j at position i, id ``(t * R + j) * N + i``; it waits for (t-1, j, i-1).
"""

from __future__ import annotations

import math

import numpy as np

from ..program import Buffer, Init, OpKind, Phase, Program, split

RS, AG, AR = "reduce-scatter", "all-gather", "all-reduce"


def _strides(g: int) -> list[int]:
    return [s for s in range(1, g) if math.gcd(s, g) == 1] or [1]


def ring_orders(nodes: int, gpus: int, nchannels: int) -> list[tuple[int, ...]]:
    """Channel c's ring: every node walked from local ``c mod G`` (0 on one node, where the entry
    does not matter) by stride ``strides[c mod len]``, the strides coprime to G."""
    strides = _strides(gpus)
    out = []
    for c in range(nchannels):
        e, s = (c % gpus if nodes > 1 else 0), strides[c % len(strides)]
        local = [(e + i * s) % gpus for i in range(gpus)]
        out.append(tuple(k * gpus + g for k in range(nodes) for g in local))
    return out


def ring_deps(nsteps: int, nrings: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(dep_ptr, dep_idx) of ``nrings`` rings of ``n`` positions over ``nsteps`` steps, ops laid out
    (step, ring, position): from step 1 on, each op waits for the op one position back on its ring
    in the step before (what it forwards arrived there); step 0 waits for nothing."""
    m, first = nsteps * nrings * n, nrings * n
    dep_ptr = np.zeros(m + 1, np.int64)
    if m > first:
        dep_ptr[first + 1:] = np.arange(1, m - first + 1)
    tt, rest = np.divmod(np.arange(first, m, dtype=np.int64), first)
    j, i = np.divmod(rest, n)
    return dep_ptr, ((tt - 1) * nrings + j) * n + (i - 1) % n


def multi_ring(collective: str, nranks: int, nbytes: int, orders: list[tuple[int, ...]],
               meta: dict | None = None, own_buffers: bool = False) -> Program:
    """The ``collective`` (all-reduce, reduce-scatter, all-gather) over the channel rings ``orders``."""
    n, k = nranks, len(orders)
    distinct: dict[tuple[int, ...], list[int]] = {}
    for c, o in enumerate(orders):
        distinct.setdefault(tuple(o), []).append(c)
    rings = list(distinct)
    nr = len(rings)
    weight = np.array([len(distinct[o]) for o in rings])
    # cells: shard r cut into k sub-slices; distinct ring j owns the sub-slices of its channels, kept
    # contiguous by giving ring j the sub-slices cum[j]..cum[j+1]
    cum = np.concatenate([[0], np.cumsum(weight)])
    shard = split(nbytes, n)
    ln = np.empty((n, nr), np.int64)
    for r in range(n):
        sub = shard[r] + split(shard[r + 1] - shard[r], k)
        ln[r] = sub[cum[1:]] - sub[cum[:-1]]
    if own_buffers:  # buffer j holds ring j's sub-slice of every shard, shard r after the earlier ones
        off = np.cumsum(ln, axis=0) - ln
        buffers = tuple(Buffer(f"ring{j}", int(ln[:, j].sum()), Init.SHARD if collective == AG else Init.OWN)
                        for j in range(nr))
        chunk_buf = np.tile(np.arange(nr, dtype=np.int32), n)
        bounds = np.concatenate([np.zeros((1, nr), np.int64), np.cumsum(ln, axis=0)])
        meta = {**(meta or {}), "shard_bounds": [bounds[:, j].tolist() for j in range(nr)]}
    else:  # one buffer: ring j's sub-slice of shard r where the split put it
        off = (shard[:-1, None] + np.concatenate([np.zeros((n, 1), np.int64), np.cumsum(ln, axis=1)[:, :-1]], axis=1))
        buffers = (Buffer("buf", nbytes, Init.SHARD if collective == AG else Init.OWN),)
        chunk_buf = np.zeros(n * nr, np.int32)
    t0, t1 = {RS: (0, n - 1), AG: (n - 1, 2 * n - 2), AR: (0, 2 * n - 2)}[collective]
    nsteps = t1 - t0
    order = np.array(rings, dtype=np.int64).reshape(nr, n)  # (R, N) rank at position
    pos = np.arange(n)
    t = np.arange(t0, t1)
    # (T, R, N) columns
    src = np.broadcast_to(order[None], (nsteps, nr, n))
    dst = np.broadcast_to(order[:, (pos + 1) % n][None], (nsteps, nr, n))
    owner_pos = (pos[None, :] - 1 - t[:, None]) % n  # (T, N)
    owner = order[np.arange(nr)[None, :, None], owner_pos[:, None, :]]  # (T, R, N) rank whose shard moves
    chunk = owner * nr + np.arange(nr)[None, :, None]
    kind = np.full((nsteps, nr, n), OpKind.COPY, np.uint8)
    kind[t < n - 1] = OpKind.REDUCE
    step = np.broadcast_to((t - t0)[:, None, None], (nsteps, nr, n))
    dep_ptr, dep_idx = ring_deps(nsteps, nr, n)
    phases = []
    if t0 < n - 1:
        phases.append(Phase(RS, 0, n - 1))
    if t1 > n - 1:
        phases.append(Phase(AG, max(0, n - 1 - t0), n - 1))
    info = {"collective": collective, "algo": "nccl-ring", "nranks": n, "nbytes": nbytes, "nchannels": k,
            "rings": [{"order": list(o), "channels": distinct[o]} for o in rings], **(meta or {})}
    return Program(n, kind.ravel(), src.ravel().astype(np.int32), dst.ravel().astype(np.int32),
                   chunk.ravel().astype(np.int32), step.ravel().astype(np.int32), dep_ptr, dep_idx,
                   buffers, chunk_buf, off.ravel(), ln.ravel(),
                   phases=tuple(phases), meta=info)


def nccl_ring(collective: str, nodes: int, gpus: int, nbytes: int, nchannels: int, meta: dict | None = None,
              own_buffers: bool = False) -> Program:
    """NCCL's ring with ``nchannels`` channels on ``nodes`` x ``gpus`` ranks (``own_buffers``: one
    buffer, so one connection, per distinct ring)."""
    return multi_ring(collective, nodes * gpus, nbytes, ring_orders(nodes, gpus, nchannels), meta, own_buffers)
