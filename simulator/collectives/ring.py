"""Ring reduce-scatter, all-gather and all-reduce, built as whole numpy columns.

[Note: the ring]
Ranks form the ring 0 -> 1 -> ... -> N-1 -> 0 and the buffer is cut into N chunks with
:func:`~simulator.program.split` (uneven when N does not divide S). One formula drives all three
collectives: at ring step t, rank r sends chunk (r - 1 - t) mod N to rank r + 1, and that send
waits for the one that delivered the same chunk to r at step t - 1 (op (t-1, r-1)).

  reduce-scatter  t = 0 .. N-2, the receiver reduces.  Rank r ends with chunk r complete.
  all-gather      t = N-1 .. 2N-3, the receiver copies. Rank r starts with chunk r.
  all-reduce      t = 0 .. 2N-3: reduce-scatter, then all-gather on the same chunks.

Each rank sends N-1 (RS, AG) or 2(N-1) (AR) chunks: all but chunk r (RS), all but r+1 (AG); so
S(N-1)/N, or 2S(N-1)/N per rank when N divides S (Thakur, Rabenseifner & Gropp 2005). Empty chunks
(S < N) are kept as zero-byte transfers so that every step is still a synchronisation, as in NCCL.
Op id = (t - t0) * N + r, so a step is a contiguous run of ops and no per-op Python runs.
"""

from __future__ import annotations

import numpy as np

from ..program import Buffer, Init, OpKind, Phase, Program, split

RS, AG, AR = "reduce-scatter", "all-gather", "all-reduce"


def _ring(nranks: int, nbytes: int, t0: int, t1: int, init: Init, collective: str) -> Program:
    n, nsteps = nranks, t1 - t0
    m = nsteps * n
    rank = np.tile(np.arange(n, dtype=np.int32), nsteps)
    step = np.repeat(np.arange(nsteps, dtype=np.int32), n)
    chunk = rank - 1 - t0
    chunk -= step
    chunk %= n
    kind = np.full(m, OpKind.COPY, dtype=np.uint8)
    kind[: max(0, n - 1 - t0) * n] = OpKind.REDUCE
    peer = rank + 1
    peer[peer == n] = 0
    # op (t, r) waits for op (t-1, r-1): one dep each, none in the first step
    dep_ptr = np.zeros(m + 1, dtype=np.int64)
    if m > n:
        dep_ptr[n + 1:] = np.arange(1, m - n + 1, dtype=np.int64)
    dep_idx = np.arange(-1, m - n - 1, dtype=np.int64)
    dep_idx[::n] += n  # rank 0's predecessor is rank n-1 of the previous step
    bounds = split(nbytes, n)
    phases = []
    if t0 < n - 1:
        phases.append(Phase(RS, 0, n - 1))
    if t1 > n - 1:
        phases.append(Phase(AG, max(0, n - 1 - t0), n - 1))
    return Program(n, kind, rank, peer, chunk, step, dep_ptr, dep_idx,
                   (Buffer("buf", nbytes, init),), np.zeros(n, dtype=np.int32), bounds[:-1],
                   np.diff(bounds), phases=tuple(phases),
                   meta={"collective": collective, "algo": "ring", "nranks": n, "nbytes": nbytes})


def ring_reduce_scatter(nranks: int, nbytes: int) -> Program:
    """Ring reduce-scatter: rank r ends with chunk r reduced over all ranks."""
    return _ring(nranks, nbytes, 0, nranks - 1, Init.OWN, RS)


def ring_all_gather(nranks: int, nbytes: int) -> Program:
    """Ring all-gather of an ``nbytes`` buffer (rank r contributes chunk r)."""
    return _ring(nranks, nbytes, nranks - 1, 2 * nranks - 2, Init.SHARD, AG)


def ring_all_reduce(nranks: int, nbytes: int) -> Program:
    """Ring all-reduce: reduce-scatter then all-gather, 2(N-1) steps."""
    return _ring(nranks, nbytes, 0, 2 * nranks - 2, Init.OWN, AR)
