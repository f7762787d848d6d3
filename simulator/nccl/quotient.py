"""NCCL's multi-channel ring on M nodes, timed exactly on two: the node-shift quotient.

[Note: the node-shift quotient]
On ``nodes:MxG`` every node is alike and the ring orders are node-periodic
(:func:`simulator.collectives.nccl_ring.ring_orders`: channel c walks every node in the same local
order and hands off from node k to node k+1 on the same rails). Shifting every rank by two nodes
(``r -> r + 2G mod N``) therefore maps the topology onto itself (NVSwitch ports to NVSwitch ports,
NIC k.j to NIC k+2.j, the fabric to itself) and the ring program onto itself: op (t, ring j,
position i) to (t, j, i + 2G), its connection to that op's connection, its dependency
(t-1, j, i-1) to (t-1, j, i+2G-1). When every op of a ring moves the same bytes (the buffer divides
into N x channels equal sub-slices, so the owner of the moving shard does not matter), the two
programs are the same system of messages, and the engine's answer, a deterministic function of
routes, bytes, dependencies and connections in which links are shared by max-min fairness (a
unique allocation), is invariant too: op (t, j, i) and (t, j, i + 2G) start and end at the same
time. So it is enough to simulate one representative per orbit, positions 0..2G-1 of every ring,
with the step count of N ranks: a ring over two nodes (``2G`` positions, the step from position
2G-1 wraps to position 0 across the fabric, as node M-1 hands to node 0), running the 2(N-1)
steps of N ranks (N-1 for reduce-scatter and all-gather), every op carrying its N-rank bytes.
Every link of the two-node topology carries, at every instant, exactly the flows its orbit carries
on M nodes (each NIC sends one ring hop out and takes one in per rail it serves, each NVSwitch
port what it does on M nodes), so the makespan is the M-node makespan, with M/2 times fewer ops.
Exact, not an approximation: the test runs both on ``nodes:4x8`` and ``nodes:6x8`` for every size
and collective and compares to 1e-9. Where it does not apply (odd M, M <= 2, bytes that do not
divide evenly) the caller simulates the whole program. The quotient's data flow is not an
all-reduce (two nodes cannot hold N shards); it is for time only, and only the sweep uses it.
"""

from __future__ import annotations

import numpy as np

from ..cluster import NodeSpec
from ..collectives.nccl_ring import AG, AR, RS, ring_deps, ring_orders
from ..program import Buffer, Init, OpKind, Program
from ..topology import Topology, cluster_topology


def applies(nodes: int, gpus: int, nbytes: int, nchannels: int) -> bool:
    """Whether the quotient is exact: an even node count above 2 and equal sub-slices."""
    n = nodes * gpus
    return nodes > 2 and nodes % 2 == 0 and nbytes > 0 and nbytes % (n * nchannels) == 0


def ring_quotient(collective: str, nodes: int, gpus: int, nbytes: int, nchannels: int,
                  meta: dict | None = None) -> Program:
    """The two-node representative program of NCCL's ring on ``nodes`` x ``gpus`` ranks
    (see [Note: the node-shift quotient]; call only where :func:`applies`)."""
    if not applies(nodes, gpus, nbytes, nchannels):
        raise ValueError("the node-shift quotient needs an even node count > 2 and bytes divisible by N x channels")
    n, p = nodes * gpus, 2 * gpus
    orders = ring_orders(2, gpus, nchannels)  # node-periodic: the first two nodes of ring_orders(nodes, ...)
    distinct: dict[tuple[int, ...], int] = {}
    for o in orders:
        distinct[tuple(o)] = distinct.get(tuple(o), 0) + 1
    rings = list(distinct)
    nr = len(rings)
    per_channel = nbytes // (n * nchannels)
    length = np.array([distinct[o] * per_channel for o in rings], np.int64)  # bytes of each op of ring j
    t0, t1 = {RS: (0, n - 1), AG: (n - 1, 2 * n - 2), AR: (0, 2 * n - 2)}[collective]
    nsteps = t1 - t0
    order = np.array(rings, dtype=np.int64).reshape(nr, p)
    pos = np.arange(p)
    t = np.arange(t0, t1)
    src = np.broadcast_to(order[None], (nsteps, nr, p))
    dst = np.broadcast_to(order[:, (pos + 1) % p][None], (nsteps, nr, p))
    kind = np.full((nsteps, nr, p), OpKind.COPY, np.uint8)
    kind[t < n - 1] = OpKind.REDUCE
    step = np.broadcast_to((t - t0)[:, None, None], (nsteps, nr, p))
    chunk = np.broadcast_to(np.arange(nr, dtype=np.int32)[None, :, None], (nsteps, nr, p))
    dep_ptr, dep_idx = ring_deps(nsteps, nr, p)
    info = {"collective": collective, "algo": "nccl-ring quotient", "nranks": p, "stands_for_nranks": n,
            "nbytes": nbytes, "nchannels": nchannels, **(meta or {})}
    return Program(p, kind.ravel(), src.ravel().astype(np.int32), dst.ravel().astype(np.int32),
                   chunk.ravel().astype(np.int32), step.ravel().astype(np.int32), dep_ptr, dep_idx,
                   tuple(Buffer(f"ring{j}", int(length[j]), Init.OWN) for j in range(nr)),
                   np.arange(nr, dtype=np.int32), np.zeros(nr, np.int64), length, meta=info)


def quotient_topology(spec: NodeSpec) -> Topology:
    """The two-node topology the quotient runs on: ``spec`` with two nodes."""
    two = NodeSpec(**{**spec.to_dict(), "nodes": 2})
    return cluster_topology(two, name=f"nodes:2x{spec.gpus},gpu={spec.gpu} [node-shift quotient of {spec.nodes}]")
