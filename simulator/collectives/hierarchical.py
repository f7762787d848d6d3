"""Two-level ring all-reduce for M nodes of G ranks (rank = node·G + local).

1. reduce-scatter inside each node (ring over its G ranks): local rank g ends with chunk g of the
   buffer (cut in G) reduced over its node;
2. all-reduce across nodes: for each g, a ring over the M ranks with local rank g (one NIC each,
   "rail-aligned") all-reduces chunk g, cut in M sub-chunks;
3. all-gather inside each node.
Each rank moves 2S(G-1)/G inside its node but only 2(S/G)(M-1)/M across the network, against
2S(N-1)/N for a flat ring whose every step may cross the network: the reason NCCL and Horovod use
it when NICs are the bottleneck.
"""

from __future__ import annotations

import numpy as np

from ..builder import ProgramBuilder
from ..errors import UsageError
from ..program import Buffer, Init, OpKind, Phase, Program, split


def hierarchical_all_reduce(nranks: int, nbytes: int, *, nodes: int) -> Program:
    if nodes < 1 or nranks % nodes:
        raise UsageError(f"hierarchical all-reduce needs --nodes M dividing --ranks {nranks}, got {nodes}")
    m_, g_ = nodes, nranks // nodes
    b = ProgramBuilder(nranks, [Buffer("buf", nbytes, Init.OWN)],
                       meta={"collective": "all-reduce", "algo": "hier", "nranks": nranks,
                             "nbytes": nbytes, "nodes": m_})
    outer = split(nbytes, g_)
    cells = [0] + [int(x) for g in range(g_) for x in (outer[g] + split(outer[g + 1] - outer[g], m_))[1:]]
    b.grid(0, np.array(cells))
    step = 0

    def intra(t0: int, t1: int, kind: OpKind, name: str) -> None:
        nonlocal step
        for t in range(t0, t1):
            for node in range(m_):
                for g in range(g_):
                    c = (g - 1 - t) % g_
                    b.transfer(node * g_ + g, node * g_ + (g + 1) % g_, b.chunk(0, c * m_, (c + 1) * m_),
                               kind, step)
            step += 1
        if t1 > t0:
            b.phases.append(Phase(name, step - (t1 - t0), t1 - t0))

    intra(0, g_ - 1, OpKind.REDUCE, "reduce-scatter in node")
    first = step
    for t in range(2 * (m_ - 1)):
        kind = OpKind.REDUCE if t < m_ - 1 else OpKind.COPY
        for g in range(g_):
            for node in range(m_):
                sub = (node - 1 - t) % m_
                b.transfer(node * g_ + g, ((node + 1) % m_) * g_ + g, b.chunk(0, g * m_ + sub), kind, step)
        step += 1
    if step > first:
        b.phases.append(Phase("all-reduce across nodes", first, step - first))
    intra(g_ - 1, 2 * g_ - 2, OpKind.COPY, "all-gather in node")
    return b.build()
