"""Broadcast from a root: a pipelined ring with k pieces, and a binomial tree.

Pipelined ring: ranks root, root+1, ... form a chain; the buffer is cut into k pieces
(:func:`~simulator.program.split`) and piece j crosses hop h at step j + h, so the chain is full
after N-1 steps and the whole broadcast takes N + k - 2 steps. With even pieces its α-β time is
(N + k - 2)(α + β·S/k): the pipelined form of "scatter + ring all-gather" in Thakur et al. 2005.

Binomial tree: in round t every rank that has the data (relative id < 2^t) sends the whole buffer
to relative id + 2^t; ceil(log2 N) rounds, log2(N)(α + Sβ) (Thakur et al. 2005, table 1). A rank
sends one child at a time (as MPI's binomial broadcast does), so each send also waits for the
same rank's previous send: without that, the root's sends would all start at once and share its
link.
"""

from __future__ import annotations

from ..builder import ProgramBuilder
from ..errors import UsageError
from ..program import Buffer, Init, OpKind, Phase, Program, split


def _check_root(nranks: int, root: int) -> None:
    if not 0 <= root < nranks:
        raise UsageError(f"root {root} out of range 0..{nranks - 1}")


def ring_broadcast(nranks: int, nbytes: int, *, pieces: int = 4, root: int = 0) -> Program:
    """Pipelined ring broadcast of ``nbytes`` from ``root`` in ``pieces`` pieces."""
    _check_root(nranks, root)
    if pieces < 1:
        raise UsageError(f"--pieces must be >= 1, got {pieces}")
    b = ProgramBuilder(nranks, [Buffer("buf", nbytes, Init.ROOT, root=root)],
                       meta={"collective": "broadcast", "algo": "ring", "nranks": nranks,
                             "nbytes": nbytes, "pieces": pieces, "root": root})
    b.grid(0, split(nbytes, pieces))
    for j in range(pieces):
        chunk = b.chunk(0, j)
        for h in range(nranks - 1):
            b.transfer((root + h) % nranks, (root + h + 1) % nranks, chunk, OpKind.COPY, j + h)
    if nranks > 1:
        b.phases.append(Phase("pipeline", 0, nranks + pieces - 2))
    return b.build()


def tree_broadcast(nranks: int, nbytes: int, *, root: int = 0) -> Program:
    """Binomial-tree broadcast of the whole buffer from ``root``."""
    _check_root(nranks, root)
    b = ProgramBuilder(nranks, [Buffer("buf", nbytes, Init.ROOT, root=root)],
                       meta={"collective": "broadcast", "algo": "tree", "nranks": nranks,
                             "nbytes": nbytes, "root": root})
    whole = b.chunk(0, 0)
    last_send: dict[int, int] = {}
    t, span = 0, 1
    while span < nranks:
        for rel in range(min(span, nranks - span)):
            src = (root + rel) % nranks
            prev = [last_send[src]] if src in last_send else []
            last_send[src] = b.transfer(src, (root + rel + span) % nranks, whole, OpKind.COPY, t, after=prev)
        t, span = t + 1, span * 2
    if t:
        b.phases.append(Phase("binomial tree", 0, t))
    return b.build()
