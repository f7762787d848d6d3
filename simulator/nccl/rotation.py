"""NCCL's tree and NVLSTree on ``nodes:MxG``, timed on one orbit of a GPU rotation.

[Note: the rail-rotation quotient]
On a cluster preset every node is alike inside: GPU g of node k talks to its node's NVSwitch and
to NIC ``rail(g)``. Rotating the local GPU index of every node, ``(k, g) -> (k, g + s mod G)``,
with the NICs the GPUs hang on and the NVSwitches and the fabric fixed, maps the topology onto
itself (:func:`link_orbits` builds the link map and checks it keeps every link's bandwidth and
latency). It maps the programs onto themselves too, where every lane carries the same bytes:
- the double binary tree on 2G channels (G per tree, the H100 and A100 presets' 16): channel c of
  a tree has head GPU ``c mod G`` and its chain starts there (:func:`simulator.collectives.nccl_tree.
  tree_parents`), the trees over the nodes are the same for every channel of a tree, so ``s = 1``
  takes channel c to channel c + 1 of the same tree;
- NVLSTree: shard g belongs to head g, its pieces alternate the two trees by ``(g + p) mod 2``, so
  ``s = 2`` takes shard g to shard g + 2 (``s = 1`` would swap the trees).
The engine is a deterministic function of routes, bytes, dependencies and connections, and max-min
fairness has one answer, so ops in one orbit start and end at one time. It is then enough to run one
representative per orbit (tree: channel 0 of each tree; NVLSTree: shards 0 and 1) with every route
folded onto its links' orbits (:meth:`simulator.engine_context.RouteTable.fold`): with the rotation
free on links (no link is fixed) and no route crossing an orbit twice (checked), a link carries, of
each orbit of flows, exactly one member, so each folded link carries what each of its orbit's links
carries, at every instant. The routes must commute with the rotation: here every route the programs
use is the one shortest path (:func:`routes_unique`, [Note: the cluster's unique paths]: inside a
node GPU -> NVSwitch -> GPU, across nodes between GPUs of one local index GPU -> NIC -> fabric ->
NIC -> GPU), which the rotation maps to the one shortest path of the image pair. Exact in
exact arithmetic, as the node-shift quotient of the ring ([Note: the node-shift quotient]); in
floats the max-min sums run over other flows in another order, so a time may differ in its last
bits: the test runs both on ``nodes:3x8``..``6x8`` at every size NCCL takes the tree or NVLSTree and
compares to 1e-9. Only the sweep uses it: the representatives are for time, not an all-reduce.
"""

from __future__ import annotations

import math

import numpy as np

from ..cluster import NodeSpec
from ..program import Program
from ..topology import cluster_links


def shift_of(ch, spec: NodeSpec, comm_channels: int | None) -> int:
    """The rotation that maps NCCL's choice ``ch`` onto itself, 0 where none applies."""
    g = spec.gpus
    if spec.nodes < 2 or g < 2 or not spec.nvswitch or ch.collective != "all-reduce":
        return 0
    if ch.algo == "tree" and ch.nchannels == 2 * g and (comm_channels or ch.nchannels) == ch.nchannels \
            and ch.nbytes % ch.nchannels == 0:
        return 1
    if ch.algo == "nvls_tree" and g % 2 == 0 and ch.nbytes % g == 0:
        return 2
    return 0


def representatives(ch, spec: NodeSpec, shift: int, comm_channels: int | None) -> Program:
    """One orbit's lanes of NCCL's schedule for ``ch`` (tree: channels 0 and G; NVLSTree: heads
    0..shift-1), with the bytes, pieces and windows of the whole program."""
    from ..collectives.nccl_tree import nccl_tree
    from .model import pieces_of, window
    from .nvls import nvls

    meta = {"nccl": ch.to_dict(), "proto": ch.proto, "rotation_quotient": shift}
    pieces = pieces_of(ch, spec)
    w = window(ch, spec, pieces)
    if ch.algo == "tree":
        return nccl_tree(spec.nodes, spec.gpus, ch.nbytes, ch.nchannels, pieces, meta,
                         comm_channels=max(comm_channels or ch.nchannels, ch.nchannels), window=w, own_buffers=True,
                         lanes=[0, spec.gpus])
    return nvls(spec.nodes, spec.gpus, ch.nbytes, pieces, meta, window=w, heads=list(range(shift)))


def link_orbits(topo, spec: NodeSpec, shift: int) -> np.ndarray | None:
    """For each link, the smallest link id of its orbit under the rotation by ``shift``; None where
    ``topo`` is not ``spec``'s cluster (link by link) or the rotation is not an automorphism of it."""
    ends = list(topo._ends)
    if [(u, v) for u, v, *_ in cluster_links(spec)] != ends:
        return None
    g = spec.gpus
    rot = lambda r: r - r % g + (r % g + shift) % g  # noqa: E731
    nic_of = {u: v for u, v in ends if isinstance(u, int) and isinstance(v, str) and v.startswith("nic")}
    vmap: dict = {}
    for r, x in nic_of.items():  # a NIC goes where the GPUs on it go
        y = nic_of[rot(r)]
        if vmap.setdefault(x, y) != y:
            return None
    ident = {u: v for u, v in enumerate(ends)}
    index = {e: i for i, e in ident.items()}
    lam = np.empty(len(ends), dtype=np.int64)
    for i, (u, v) in enumerate(ends):
        m = tuple(rot(x) if isinstance(x, int) else vmap.get(x, x) for x in (u, v))
        j = index.get(m)
        if j is None or topo.link_bw[j] != topo.link_bw[i] or topo.link_lat[j] != topo.link_lat[i]:
            return None
        lam[i] = j
    order = g // math.gcd(g, shift)
    cur, rep = np.arange(lam.size), np.arange(lam.size)
    for _ in range(order - 1):
        cur = lam[cur]
        np.minimum(rep, cur, out=rep)
    if np.any(lam == np.arange(lam.size)):  # a fixed link: the rotation is not free on links
        return None
    return rep


def routes_unique(topo, spec: NodeSpec, prog: Program) -> bool:
    """Whether every route ``prog`` uses is the one shortest path on ``topo``: its transfers stay in
    a node or join GPUs of one local index, on a cluster where those paths are unique
    ([Note: the cluster's unique paths])."""
    from ..routing import unique_paths_of

    g = spec.gpus
    t = prog.is_transfer
    src, dst = prog.rank[t].astype(np.int64), prog.peer[t].astype(np.int64)
    if np.any((src // g != dst // g) & (src % g != dst % g)):
        return False
    return unique_paths_of(topo) is not None
