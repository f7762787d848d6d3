"""The naive parameter-server all-reduce: the baseline that rings exist to beat.

Every rank sends its whole buffer to rank 0, which reduces the N-1 arrivals (they commute, so they
run concurrently); then rank 0 sends the result back to every rank. Rank 0's link carries (N-1)·S
in each direction, against 2S(N-1)/N for any rank of a ring all-reduce.
"""

from __future__ import annotations

from ..builder import ProgramBuilder
from ..program import Buffer, Init, OpKind, Phase, Program


def parameter_server_all_reduce(nranks: int, nbytes: int) -> Program:
    n = nranks
    b = ProgramBuilder(n, [Buffer("buf", nbytes, Init.OWN)],
                       meta={"collective": "all-reduce", "algo": "ps", "nranks": n, "nbytes": nbytes})
    whole = b.chunk(0, 0)
    for r in range(1, n):
        b.transfer(r, 0, whole, OpKind.REDUCE, 0)
    for r in range(1, n):
        b.transfer(0, r, whole, OpKind.COPY, 1)
    if n > 1:
        b.phases += [Phase("gather + reduce at rank 0", 0, 1), Phase("send back", 1, 1)]
    return b.build()
