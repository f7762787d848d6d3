"""Recursive halving-doubling all-reduce (Rabenseifner's algorithm), in MPICH's order or far-first.

For p = 2^L ranks the buffer is cut into p cells. The reduce-scatter runs L steps of recursive
halving: at each step every rank v swaps half of its current range of cells with rank v XOR m and
reduces the half it keeps (the lower half when bit m of v is clear). The all-gather runs the same
partners in the mirror order, recursive doubling: each rank copies its whole range to v XOR m.

``order="near"`` (``--algo hd``) is MPICH's: the reduce-scatter starts with the nearest partner
(m = 1, half the buffer) and doubles m while the count halves; the all-gather runs m = p/2 .. 1, the
count doubling. MPICH, src/mpi/coll/allreduce/allreduce_intra_reduce_scatter_allgather.c
(``mask = 0x1`` first, ``send_idx``/``recv_idx``/``last_idx`` over ``cnts``, the cells of
``count/pof2`` with the remainder on the leading cells, as :func:`~simulator.program.split`); rank v
ends the reduce-scatter with the cell whose index is v's bits reversed. ``order="far"``
(``--algo hd-far``) runs the reduce-scatter from m = p/2 down to 1, so the largest messages go to
the farthest partner, and the all-gather from m = 1 up. On a non-blocking switch both cost
2 log2(p) α + 2n(p-1)/p β + n(p-1)/p γ (Thakur, Rabenseifner & Gropp 2005); on ``ring:p`` the
partner at distance m is m hops away and m flows share each hop: see
:func:`simulator.costs.halving_doubling_all_reduce_on_ring`.

N not a power of two (MPICH's handling, the same file): let p = the largest power of two <= N and
r = N - p. First *fold in*: for i < r, rank 2i sends its whole buffer to rank 2i+1, which reduces it;
algorithm rank v is rank 2v+1 for v < r and v + r otherwise, and those p ranks run the algorithm
above; last, *fold out*: rank 2i+1 copies the result back to rank 2i. That costs two extra steps that
move the whole buffer, so for N = 2^L + 1 the schedule is 2L + 2 steps and the folded ranks' links
carry S each way.

[Note: dependencies written directly]
The ops are laid out by step and their dependencies written directly, the read-after-write and
write-after-read sets that :class:`~simulator.builder.ProgramBuilder` derives (a test checks they are
equal, for N in 1..64 and both orders): with F(v) the fold-in into algorithm rank v (v < r),
T_k(v) rank v's reduce-scatter send at step k (mask m_k) and G_j(v) its all-gather send at step j,
  T_k(v)  waits for F(v) and every reduction into v so far, T_i(v XOR m_i) for i < k;
  G_j(v)  waits for every reduction into v, the copies into v so far, G_i(v XOR m_i') for i < j, and,
          at the receiver u = v XOR m_j' (m_j' = m_k, k = L-1-j), for the send T_k(u) that last read
          those cells and the reductions F(u), T_i(u XOR m_i) (i < k) that wrote them;
  fold-out of v waits for every reduction and copy into v, and for F(v) (which read rank 2v).
On top of the data flow, each exchange waits for what MPICH's blocking ``MPIC_Sendrecv`` imposes:
both ranks have finished their previous exchange (its send and its receive), and a fold partner
has received the fold-in before its first one. No data needs this order; without it a rank that is
ahead sends into one still receiving, and the two messages share the receiver's link (on
``switch:5`` the fold-in and a core message would meet on rank 1's down link).
No per-cell bookkeeping runs: 64 MiB on 1024 ranks builds in well under a second.
"""

from __future__ import annotations

import numpy as np

from ..errors import UsageError
from ..program import Buffer, Init, OpKind, Phase, Program, csr_from_lists, split

ORDERS = {"near": "hd", "far": "hd-far"}


def halving_doubling_all_reduce(nranks: int, nbytes: int, order: str = "near") -> Program:
    """Rabenseifner's all-reduce on ``nranks`` ranks; ``order`` "near" (MPICH's) or "far"."""
    if order not in ORDERS:
        raise UsageError(f"unknown halving-doubling order {order!r}; choose from {', '.join(ORDERS)}")
    n = nranks
    p = 1 << (n.bit_length() - 1)
    rem = n - p
    nlev = p.bit_length() - 1
    masks = [1 << k for k in range(nlev)]  # 1, 2, .., p/2: MPICH's reduce-scatter order
    if order == "far":
        masks.reverse()
    real = [2 * v + 1 if v < rem else v + rem for v in range(p)]  # algorithm rank v -> rank (MPICH)
    fold = 1 if rem else 0
    rs0 = rem  # op id of T_0(0); T_k(v) = rs0 + k*p + v, G_j(v) = ag0 + j*p + v
    ag0 = rs0 + nlev * p
    out0 = ag0 + nlev * p
    kind, rank, peer, cell0, cell1, step, deps = [], [], [], [], [], [], []

    def add(k: OpKind, src: int, dst: int, c: tuple[int, int], s: int, d: list[int]) -> None:
        kind.append(k)
        rank.append(src)
        peer.append(dst)
        cell0.append(c[0])
        cell1.append(c[1])
        step.append(s)
        deps.append(sorted(set(d)))

    core = masks + masks[::-1]  # the mask of each exchange, reduce-scatter then all-gather

    def lockstep(c: int, v: int, w: int) -> list[int]:
        """What MPICH's blocking MPIC_Sendrecv adds to the data flow: exchange c between v and w
        starts once both have finished exchange c-1 (their send and their receive), or, for c = 0,
        once a fold partner has received the fold-in."""
        if c == 0:
            return [w] if w < rem else []
        prev = rs0 + (c - 1) * p
        mc = core[c - 1]
        return [prev + v, prev + (v ^ mc), prev + w, prev + (w ^ mc)]

    for i in range(rem):
        add(OpKind.REDUCE, 2 * i, 2 * i + 1, (0, p), 0, [])
    into = [[i] if i < rem else [] for i in range(p)]  # reductions into v so far (ids)
    sent_at = [[0] * nlev for _ in range(p)]  # op id of T_k(v)
    into_before = [[None] * nlev for _ in range(p)]  # reductions into v before step k
    lo, hi = [0] * p, [p] * p
    for k, m in enumerate(masks):
        for v in range(p):
            mid = (lo[v] + hi[v]) // 2
            send = (mid, hi[v]) if v & m == 0 else (lo[v], mid)
            into_before[v][k] = list(into[v])
            sent_at[v][k] = rs0 + k * p + v
            add(OpKind.REDUCE, real[v], real[v ^ m], send, fold + k, into[v] + lockstep(k, v, v ^ m))
        for v in range(p):
            mid = (lo[v] + hi[v]) // 2
            lo[v], hi[v] = (lo[v], mid) if v & m == 0 else (mid, hi[v])
            into[v].append(rs0 + k * p + (v ^ m))
    copies = [[] for _ in range(p)]  # copies into v so far
    for j, m in enumerate(reversed(masks)):
        k = nlev - 1 - j
        for v in range(p):
            u = v ^ m
            add(OpKind.COPY, real[v], real[u], (lo[v], hi[v]), fold + nlev + j,
                into[v] + copies[v] + [sent_at[u][k]] + into_before[u][k] + lockstep(nlev + j, v, u))
        for v in range(p):
            w = v ^ m
            lo[v], hi[v] = min(lo[v], lo[w]), max(hi[v], hi[w])
        for v in range(p):
            copies[v].append(ag0 + j * p + (v ^ m))
    for i in range(rem):
        add(OpKind.COPY, 2 * i + 1, 2 * i, (0, p), fold + 2 * nlev, into[i] + copies[i] + [i])
    assert len(kind) == out0 + rem
    bounds = split(nbytes, p)
    pairs = sorted(set(zip(cell0, cell1)))
    chunk_of = {c: i for i, c in enumerate(pairs)}
    arg = [chunk_of[c] for c in zip(cell0, cell1)]
    c0 = np.array([c[0] for c in pairs], dtype=np.int64).reshape(-1)
    c1 = np.array([c[1] for c in pairs], dtype=np.int64).reshape(-1)
    ptr, idx = csr_from_lists(deps)
    phases = []
    if rem:
        phases.append(Phase("fold in", 0, 1))
    if nlev:
        phases.append(Phase("reduce-scatter (halving)", fold, nlev))
        phases.append(Phase("all-gather (doubling)", fold + nlev, nlev))
    if rem:
        phases.append(Phase("fold out", fold + 2 * nlev, 1))
    return Program(n, np.array(kind, dtype=np.uint8), np.array(rank, dtype=np.int32),
                   np.array(peer, dtype=np.int32), np.array(arg, dtype=np.int32),
                   np.array(step, dtype=np.int32), ptr, idx, (Buffer("buf", nbytes, Init.OWN),),
                   np.zeros(len(pairs), dtype=np.int32), bounds[c0], bounds[c1] - bounds[c0],
                   phases=tuple(phases),
                   meta={"collective": "all-reduce", "algo": ORDERS[order], "nranks": n, "nbytes": nbytes})


def halving_doubling_far_all_reduce(nranks: int, nbytes: int) -> Program:
    """The far-first order: reduce-scatter from the partner v XOR p/2 with half the buffer."""
    return halving_doubling_all_reduce(nranks, nbytes, order="far")
