"""Recursive halving-doubling all-reduce (Rabenseifner's algorithm).

For p = 2^L ranks the buffer is cut into p cells. Reduce-scatter by recursive halving: at distance
d = p/2, p/4, ..., 1 each rank swaps half of its current range with rank XOR d and reduces the half
it keeps (the lower half when its bit d is clear), ending with cell v complete. All-gather by
recursive doubling: at d = 1, 2, ..., p/2 each rank copies its range to rank XOR d. α-β time:
2 log2(p) α + 2n(p-1)/p β + n(p-1)/p γ (Thakur, Rabenseifner & Gropp 2005).

N not a power of two (the MPICH approach): let p = the largest power of two <= N and r = N - p.
First *fold in*: for i < r, rank 2i sends its whole buffer to rank 2i+1, which reduces it; the odd
ranks of the first 2r and all ranks >= 2r then run the algorithm above as p ranks; last, *fold
out*: rank 2i+1 copies the result back to rank 2i. That costs two extra steps that move the whole
buffer, so for N = 2^L + 1 the schedule is 2L + 2 steps and the folded ranks' links carry S each way.
"""

from __future__ import annotations

from ..builder import ProgramBuilder
from ..program import Buffer, Init, OpKind, Phase, Program, split


def halving_doubling_all_reduce(nranks: int, nbytes: int) -> Program:
    n = nranks
    p = 1 << (n.bit_length() - 1)
    rem = n - p
    b = ProgramBuilder(n, [Buffer("buf", nbytes, Init.OWN)],
                       meta={"collective": "all-reduce", "algo": "hd", "nranks": n, "nbytes": nbytes})
    b.grid(0, split(nbytes, p))
    whole = b.chunk(0, 0, p)
    step = 0
    if rem:
        for i in range(rem):
            b.transfer(2 * i, 2 * i + 1, whole, OpKind.REDUCE, step)
        b.phases.append(Phase("fold in", step, 1))
        step += 1
    real = [2 * i + 1 for i in range(rem)] + list(range(2 * rem, n))  # algorithm rank v -> rank
    lo, hi = [0] * p, [p] * p
    first, d = step, p // 2
    while d >= 1:
        for v in range(p):
            mid = (lo[v] + hi[v]) // 2
            send = (mid, hi[v]) if v & d == 0 else (lo[v], mid)
            b.transfer(real[v], real[v ^ d], b.chunk(0, *send), OpKind.REDUCE, step)
        for v in range(p):
            mid = (lo[v] + hi[v]) // 2
            lo[v], hi[v] = (lo[v], mid) if v & d == 0 else (mid, hi[v])
        step, d = step + 1, d // 2
    if step > first:
        b.phases.append(Phase("reduce-scatter (halving)", first, step - first))
    first, d = step, 1
    while d < p:
        for v in range(p):
            b.transfer(real[v], real[v ^ d], b.chunk(0, lo[v], hi[v]), OpKind.COPY, step)
        for v in range(p):
            w = v ^ d
            lo[v], hi[v] = min(lo[v], lo[w]), max(hi[v], hi[w])
        step, d = step + 1, d * 2
    if step > first:
        b.phases.append(Phase("all-gather (doubling)", first, step - first))
    if rem:
        for i in range(rem):
            b.transfer(2 * i + 1, 2 * i, whole, OpKind.COPY, step)
        b.phases.append(Phase("fold out", step, 1))
    return b.build()
