"""Concurrent collectives: which comm lane each COLLECTIVE runs on, and how overlapping ones share links.

[Note: streams, communicators and lanes]
A training program may put its collectives on several *streams* (``meta["streams"]`` names them,
``meta["coll_stream"]`` gives each collective's index) and *communicators* (``meta["coll_comm"]``,
one NCCL communicator per process group). Two rules order them:
- ops on one CUDA stream run in issue order;
- NCCL runs the collectives of one communicator one at a time, whatever stream they are launched
  on: "NCCL collective operations on a given communicator are always serialized; NCCL adds CUDA
  events to enforce that" (NVIDIA's maintainer, NVIDIA/nccl#574; NCCL's enqueue.cc joins every
  launch to the communicator's ``deviceStream``).
So collectives that share a stream or a communicator share a *lane*: the lanes are the connected
parts of the graph whose edges join each collective's stream to its communicator. Collectives on
one lane run one at a time per rank, in the order they become ready (ties: issue order), as the
engine always ran its one comm lane (NCCL's is the launch order; where they differ, this model
lets a ready collective pass an earlier-issued one that is not ready yet).
A program without these keys has one lane, as before. Collectives on different lanes may run at
once.

[Note: sharing links between concurrent collectives]
A collective alone takes ``lat + work`` seconds: a latency term (per-step α, the reduction's γ,
NCCL's launch latency) and a bandwidth term ``work`` (its bytes over its bus bandwidth). Two
collectives over the same ranks use the same links (the same NICs, NVLink ports and rings), so
when several are in their bandwidth phase at once they divide the bandwidth: processor sharing.
With k collectives in flight on intersecting rank groups, each moves at 1/k of its alone rate, so
``d(remaining work)/dt = -1/k(t)``; the latency term is per-message delay, not link occupancy,
and is not shared. A collective first pays its latency term, then its work drains at 1/k(t). Two
equal collectives that start together therefore each take ``lat + 2·work``; one that starts when
the other has half its work left ends ``work/2`` after it (tests/test_train_streams.py). This is
the max-min share of one bottleneck between k equal flows (Bertsekas & Gallager 1992, 6.5.2)
applied to whole collectives: it assumes the collectives have the same bottleneck (the same
algorithm's links); collectives on disjoint rank groups never share. ``k`` counts, for each
collective, the collectives in flight whose rank groups intersect its own (itself included).
"""

from __future__ import annotations

import numpy as np

from .errors import UsageError
from .program import OpKind, Program

_DONE = 1e-12  # a collective with at most this fraction of its work left is done


def collective_lanes(prog: Program) -> np.ndarray:
    """Lane of each collective (see [Note: streams, communicators and lanes]); all 0 without streams."""
    c = prog.coll_kind.size
    stream = prog.meta.get("coll_stream")
    comm = prog.meta.get("coll_comm")
    if stream is None and comm is None:
        return np.zeros(c, dtype=np.int64)
    stream = np.zeros(c, dtype=np.int64) if stream is None else np.asarray(stream, dtype=np.int64)
    comm = np.zeros(c, dtype=np.int64) if comm is None else np.asarray(comm, dtype=np.int64)
    if stream.shape != (c,) or comm.shape != (c,) or (c and (stream.min() < 0 or comm.min() < 0)):
        raise UsageError(f"meta coll_stream / coll_comm need one index >= 0 per collective ({c})")
    ns = int(stream.max()) + 1 if c else 1
    parent = list(range(ns + (int(comm.max()) + 1 if c else 1)))  # union-find: streams, then comms

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for s, g in set(zip(stream.tolist(), comm.tolist())):
        parent[root(s)] = root(ns + g)
    roots = np.array([root(s) for s in stream.tolist()], dtype=np.int64)
    return np.unique(roots, return_inverse=True)[1].astype(np.int64) if c else roots


def collective_groups(prog: Program) -> tuple[np.ndarray, np.ndarray]:
    """(group id per collective, G x G matrix: do groups i and j share a rank?)."""
    is_coll = np.flatnonzero(prog.kind == OpKind.COLLECTIVE)
    c = prog.coll_kind.size
    mask = np.zeros((c, prog.nranks), dtype=bool)
    mask[prog.arg[is_coll], prog.rank[is_coll]] = True
    uniq, gid = np.unique(mask, axis=0, return_inverse=True)
    u = uniq.astype(np.int64)
    return gid.reshape(-1).astype(np.int64), (u @ u.T) > 0


class Sharing:
    """Collectives in their bandwidth phase and their remaining work (seconds at the alone rate).

    ``add``/``pop_done`` advance every active collective to the given time at its current rate
    (1/k, see [Note: sharing links between concurrent collectives]) before changing the set."""

    def __init__(self, group: np.ndarray, meets: np.ndarray) -> None:
        self.group, self.meets = group, meets
        self.active: list[int] = []
        self.rem: dict[int, float] = {}
        self.work: dict[int, float] = {}
        self.rate: dict[int, float] = {}
        self.t = 0.0

    def advance(self, t: float) -> None:
        dt = t - self.t
        if dt > 0:
            for c in self.active:
                self.rem[c] -= dt * self.rate[c]
        self.t = max(self.t, t)

    def _rerate(self) -> None:
        g = self.group
        for c in self.active:
            k = sum(1 for d in self.active if self.meets[g[c], g[d]])
            self.rate[c] = 1.0 / k

    def add(self, c: int, work: float, t: float) -> None:
        self.advance(t)
        self.active.append(c)
        self.rem[c] = self.work[c] = work
        self._rerate()

    def next_end(self) -> tuple[float, int]:
        """(when, which): the first active collective to drain at today's rates ((inf, -1): none)."""
        if not self.active:
            return np.inf, -1
        c = min(self.active, key=lambda c: self.rem[c] / self.rate[c])
        return self.t + self.rem[c] / self.rate[c], c

    def pop_done(self, t: float, first: int = -1) -> list[int]:
        """Advance to ``t`` and remove (and return, in start order) the collectives whose work is
        done by then; ``first`` (the one :meth:`next_end` named) is done whatever rounding left."""
        self.advance(t)
        done = [c for c in self.active if c == first or self.rem[c] <= _DONE * self.work[c]]
        if done:
            self.active = [c for c in self.active if c not in done]
            for c in done:
                del self.rem[c], self.work[c], self.rate[c]
            self._rerate()
        return done

