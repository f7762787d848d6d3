"""NVLS (NVLink SHARP) all-reduce, and NVLSTree across nodes, as programs.

[Note: NVLS in point-to-point terms]
With NVLS the NVSwitch reduces: GPU r owns shard r (``split(S, G)``) and issues
``multimem.ld_reduce`` on it, so the switch reads shard r from every GPU and returns their sum;
then ``multimem.st`` writes the result once and the switch multicasts it to every GPU
(src/device/all_reduce.h ``runNvls``; src/transport/nvls.cc). The switch is not a rank, so the
program says it in transfers between ranks, keeping what the switch promises:

  reduce at the switch  every rank j != r sends shard r to r, REDUCE, all at once: no transfer
                        waits for another (their provenance: every contribution arrives at once)
  multicast             r sends its reduced shard to every rank j != r, COPY

Each GPU port then carries 2(G-1)/G x S each way in this program, where the switch makes it
(G+1)/G x S (S read or written once, plus the own shard once more). The simulator times NVLS on a
view of the topology whose NVSwitch links are faster by that ratio, 2(G-1)/(G+1), so that each
port's time is the port time of in-switch reduction: a stated transformation, not a fit.

[Note: the NVLS port bandwidth]
NVLS-pattern traffic on a GPU's NVSwitch port (NVLS all-reduce, NVLS reduce-scatter and
all-gather on one node, the in-node stages of NVLSTree) is charged at
min(link bandwidth, nChannels x bwIntra of NCCL's NVLS graph), not at the link's figure
(:func:`port_bandwidth`). The graph is the one ``ncclTopoCompute`` (src/graph/search.cc) finds for
``NCCL_TOPO_PATTERN_NVLS`` (:func:`simulator.nccl.search.search`): ``bwIntra`` is its per-channel
speed, the entry of the speed table (``sm90SpeedArrayIntra``) at which the channels fit, and
``ncclTopoSearchTryNvls`` places each channel by ``ncclTopoFollowPath`` with that speed on every
GPU's NVS->GPU and GPU->NVS path (twice on the channel's head GPU). So nChannels x bwIntra is the
bandwidth NCCL's search grants its NVLS channels on each GPU's NVLink, the channels that issue the
``multimem`` loads and stores, and what ``ncclTopoTuneModel`` (src/graph/tuning.cc) counts as
NVLS's bus bandwidth (``busBw = nChannels * bw``). On 1x8 H100: 8 channels x 40 GB/s = 320 GB/s
against the link's 18 x 20.6 = 370.8 GB/s (the search: (8 + 1) x 40 = 360 <= 370.8 < 9 x 50, the
head's second share included). It is a constant NCCL computes, not a fit; we take it as the
port's usable bandwidth for NVLS, the reading of the graph the project chose (the search's own
reservation, with the head's second share, would be (nChannels + 1) x bwIntra). Ring and tree keep
the link's figure. The switch's reduction throughput is still not modelled.
NVLSTree (``runNvlsTree``): the reduce-at-switch inside each node, then for every shard a double
binary tree over the nodes between the GPUs that own it (one rail each: local GPU g on NIC
``rail(g)``; alternate pipeline pieces take the two complementary trees, so every NIC is an inner
vertex for half the data and a leaf for the other half), then the multicast inside each node;
pieces flow through the three stages, as NCCL's chunks do (src/graph/connect.cc ``connectNvls``:
NVLS channel c takes tree ``c % 2``; each head's NIC carries its shard's trees).

[Note: what NVLSTree can reach]
Per head GPU (one per NIC, shard S/G) the double tree sends, summed over both trees, about 4 x
S/(2G) = 2S/G through its NIC each way (inner vertex of one tree: 1 up + 2 down, leaf of the other:
1 up; receives likewise), from 3 nodes on; on 2 nodes each tree is one edge: S/G each way. Each GPU
port to the NVSwitch carries (G+1)/G x S each way (above) at the NVLS port bandwidth B_nvls
(:func:`port_bandwidth`). So the algorithm bandwidth is at most min(G x B_nic / 2, B_nvls x
G/(G+1)) for M > 2 nodes: on H100 nodes with 8 NICs of 400 Gb/s, min(200, 320 x 8/9 = 284.4)
GB/s, busbw = 2(N-1)/N x 200 = 397-400 GB/s, NIC-bound; on 2 nodes min(400, 284.4), the NVLink
bound, busbw 2 x 15/16 x 284.4 = 533.3. NCCL 2.20.3's model (tuning.cc: ``bwInter/2`` from 3 nodes on, x ``5/6``)
predicts 80% of that NIC bound. The program reaches it only as far as its pipeline does: the
first pieces fill 2 x depth tree hops; so the pieces are NCCL's chunks
(:func:`simulator.nccl.model.pieces_of`), not a fixed few (with 8 the 128-node tree ran at 41% of
the bound). The real executor cannot run either: a
point-to-point message cannot reduce inside the switch.
"""

from __future__ import annotations

import numpy as np

from ..builder import ProgramBuilder
from ..cluster import NodeSpec
from ..collectives.nccl_tree import _depths, _Tree, assemble, dtree_parent, slot_buffers, sorted_pattern
from ..program import Buffer, Init, OpKind, Phase, Program, split
from .search import search


def port_bandwidth(spec: NodeSpec) -> float:
    """Bytes/s a GPU's NVSwitch port gives NVLS-pattern traffic: min(the GPU's NVLink bandwidth,
    nChannels x bwIntra of NCCL's NVLS graph) (see [Note: the NVLS port bandwidth]); the link's
    figure where there is no NVLS graph."""
    link = spec.gpu_nvlink_bw
    graph = search(spec, "nvls")
    return link if graph is None else min(link, graph.nchannels * graph.bw_intra * 1e9)


def port_speedup(gpus: int, collective: str = "all-reduce") -> float:
    """NVSwitch link bandwidth factor of the NVLS view: p2p port bytes / in-switch port bytes, on
    the busier direction of a GPU's port. All-reduce: 2(G-1)/G S against (G+1)/G S. Reduce-scatter
    alone (``multimem.ld_reduce``): the switch reads every GPU's whole buffer, S out of each port,
    where the p2p program sends (G-1)/G S: (G-1)/G. All-gather alone (``multimem.st``): each port
    receives (G-1)/G S either way: 1."""
    if gpus <= 1:
        return 1.0
    return {"all-reduce": 2 * (gpus - 1) / (gpus + 1), "reduce-scatter": (gpus - 1) / gpus}.get(collective, 1.0)


def nvls(nodes: int, gpus: int, nbytes: int, pieces: int = 4, meta: dict | None = None,
         collective: str = "all-reduce", window: int = 1, heads: list[int] | None = None) -> Program:
    """NVLS all-reduce on one node (``nodes`` = 1) or NVLSTree across ``nodes`` nodes of ``gpus``;
    on one node also NVLS reduce-scatter (the reduce at the switch alone: GPU g ends with shard g
    reduced) and all-gather (the multicast alone, from each GPU's own shard). ``heads`` (NVLSTree):
    build only the shards of these head GPUs (for time only: :mod:`simulator.nccl.rotation`)."""
    from ..errors import UsageError

    n = nodes * gpus
    if collective != "all-reduce" and nodes > 1:
        raise UsageError(f"NVLSTree runs all-reduce only, not {collective}")
    if nodes > 1 and gpus < 2:
        raise UsageError("NVLSTree needs an NVSwitch of 2 GPUs or more per node (NCCL 2.20.3 enables NVLS "
                         "only above 2: src/transport/nvls.cc, ncclNvlsInit)")
    algo = "nccl-nvls" if nodes == 1 else "nccl-nvls_tree"
    info = {"collective": collective, "algo": algo, "nranks": n, "nbytes": nbytes, "nodes": nodes,
            "pieces": pieces if nodes > 1 else 1, "nvls_port_speedup": port_speedup(gpus, collective), **(meta or {})}
    q = pieces if nodes > 1 else 1
    shard = split(nbytes, gpus)
    hs = list(range(gpus)) if heads is None or nodes == 1 else list(heads)
    if nodes > 1 and heads is not None:
        info["heads"] = hs
    if nodes > 1:  # a head's pieces on NCCL_STEPS connections, as nccl_tree's channels (slot_buffers)
        info["window"] = window
        b, piece = slot_buffers(n, [np.diff(split(int(shard[g + 1] - shard[g]), q)) for g in hs], info,
                                window=window)
    else:
        b = ProgramBuilder(n, [Buffer("buf", nbytes, Init.SHARD if collective == "all-gather" else Init.OWN)],
                           meta=info)
        b.grid(0, np.array([0] + [int(x) for x in shard[1:]]))
        piece = [[b.chunk(0, g)] for g in range(gpus)]
    if nodes > 1:
        return _nvls_tree(b, nodes, gpus, q, np.array(piece, dtype=np.int64).reshape(len(hs), q), hs)
    # one chunk per shard and pipeline piece: across nodes piece p climbs the tree while p+1 is reduced
    if collective == "all-gather":
        for g in range(gpus):
            for j in range(gpus):
                if j != g:
                    b.transfer(g, j, piece[g][0], OpKind.COPY, 0)
        b.phases.append(Phase("multicast", 0, 1))
        return b.build()
    for k in range(nodes):
        for g in range(gpus):
            for c in piece[g]:
                for j in range(gpus):
                    if j != g:
                        b.transfer(k * gpus + j, k * gpus + g, c, OpKind.REDUCE, 0)
    if collective == "reduce-scatter":
        b.phases.append(Phase("reduce at the switch", 0, 1))
        return b.build()
    step = 1
    if nodes > 1:
        trees = [np.array([dtree_parent(nodes, k, t) for k in range(nodes)]) for t in (0, 1)]
        depths = [_depths(t) for t in trees]
        height = max(int(d.max()) for d in depths)
        for g in range(gpus):  # piece p of shard g on tree (g + p) % 2: both trees share every rail
            for p in range(q):
                parent, depth = trees[(g + p) % 2], depths[(g + p) % 2]
                c = piece[g][p]
                for k in sorted(range(nodes), key=lambda k: -depth[k]):
                    if parent[k] >= 0:
                        b.transfer(k * gpus + g, int(parent[k]) * gpus + g, c, OpKind.REDUCE, 1 + p + height - depth[k])
        for g in range(gpus):
            for p in range(q):
                parent, depth = trees[(g + p) % 2], depths[(g + p) % 2]
                c = piece[g][p]
                for k in sorted(range(nodes), key=lambda k: depth[k]):
                    if parent[k] >= 0:
                        b.transfer(int(parent[k]) * gpus + g, k * gpus + g, c, OpKind.COPY,
                                   q + height + p + int(depth[k]) - 1)
        b.phases.append(Phase("trees across nodes", 1, 2 * (q + height - 1)))
        step = 1 + 2 * (q + height - 1)
    for k in range(nodes):
        for g in range(gpus):
            for c in piece[g]:
                for j in range(gpus):
                    if j != g:
                        b.transfer(k * gpus + g, k * gpus + j, c, OpKind.COPY, step)
    b.phases.insert(0, Phase("reduce at the switch", 0, 1))
    b.phases.append(Phase("multicast", step, 1))
    return b.build()


def _nvls_tree(b: ProgramBuilder, nodes: int, gpus: int, q: int, piece: np.ndarray, heads: list[int]) -> Program:
    """NVLSTree's ops in the order the op-by-op builder adds them, with the dependencies it derives
    (a test compares the two field by field):

      reduce at the switch  (k, g, piece p, j != g): j -> g on node k; waits for nothing
      up the tree           (g, p; k deepest first): (k, g) -> (parent, g) REDUCE, after the switch's
                            reduces into (k, g) and its children's reduces
      down the tree         (g, p; k shallowest first): (parent, g) -> (k, g) COPY, after what the
                            parent holds (the copy into it; at the root every reduce into it), k's
                            own reduce and the reduces into (k, g)
      multicast             (k, g, p, j != g): (k, g) -> (k, j) COPY, after what (k, g) holds and
                            after (k, j)'s own send of that piece to the switch (write after read)

    Piece p of shard g takes tree (g + p) % 2 ([Note: NVLS in point-to-point terms]). Only the shards
    of ``heads`` (row i of ``piece`` is head ``heads[i]``'s); blocks are laid out by that row."""
    m, g_, h = nodes, gpus, gpus - 1
    hs = np.asarray(heads, dtype=np.int64)
    nh = hs.size
    parents = [np.array([dtree_parent(m, k, t) for k in range(m)], dtype=np.int64) for t in (0, 1)]
    trees = [_Tree(par, _depths(par)) for par in parents]
    height = max(int(t.depth.max()) for t in trees)
    e = m - 1
    ns = m * nh * q * h  # switch ops; then up, down (e per (head, p) each) and multicast ops
    nu = nh * q * e
    stride = nh * q * h  # S(k, i, p, jj) = k * stride + (i q + p) h + jj, head g = heads[i]
    big = 1 << max(1, int(ns).bit_length())  # range code * big + local id, below sorted_pattern's 2**40
    jj = np.arange(h)

    def switch_of(k: np.ndarray) -> np.ndarray:  # local S ids (offset (g q + p) h added per block)
        return (k[:, None] * stride + jj[None, :]).ravel()

    pats = []
    for t in trees:  # per tree: the up and down patterns, deps coded as range * big + local id
        i = np.arange(e)
        r = t.up_r
        op_c, dep_c = t.children_up(r, i)
        up = sorted_pattern(np.concatenate([np.repeat(i, h), op_c]),
                            np.concatenate([switch_of(r), big + dep_c]), e)
        r = t.dn_r
        p = t.parent[r]
        root = t.parent[p] < 0
        kids = t.children_up(r, i)
        pk = t.children_up(p[root], i[root])
        op = np.concatenate([i, np.repeat(i, h), kids[0], np.repeat(i[root], h), pk[0], i[~root]])
        dep = np.concatenate([big + t.pos_up[r], switch_of(r), big + kids[1], switch_of(p[root]), big + pk[1],
                              2 * big + t.pos_dn[p[~root]]])
        pats.append((up, sorted_pattern(op, dep, e)))
    cols = {k: [] for k in ("kind", "rank", "peer", "arg", "step")}
    counts, idx = [], []
    kk, gi, pp, jx = (a.ravel() for a in np.meshgrid(np.arange(m), np.arange(nh), np.arange(q), jj, indexing="ij"))
    gg = hs[gi]
    j = jx + (jx >= gg)  # the j != g of each (k, g, p) in increasing order
    cols["kind"].append(np.full(kk.size, int(OpKind.REDUCE)))
    cols["rank"].append(kk * g_ + j)
    cols["peer"].append(kk * g_ + gg)
    cols["arg"].append(piece[gi, pp])
    cols["step"].append(np.zeros(kk.size, dtype=np.int64))
    counts.append(np.zeros(kk.size, dtype=np.int64))
    for stage in (0, 1):  # up blocks, then down blocks: block (g, p) at (g q + p) e
        for i, g in enumerate(hs.tolist()):
            for p in range(q):
                t = trees[(g + p) % 2]
                cnt, dep = pats[(g + p) % 2][stage]
                blk = i * q + p
                code = dep // big
                local = dep % big
                idx.append(np.choose(code, [blk * h, ns + blk * e, ns + nu + blk * e]) + local)
                counts.append(cnt)
                r = t.up_r if stage == 0 else t.dn_r
                par = t.parent[r]
                cols["kind"].append(np.full(e, int(OpKind.REDUCE if stage == 0 else OpKind.COPY)))
                cols["rank"].append((r if stage == 0 else par) * g_ + g)
                cols["peer"].append((par if stage == 0 else r) * g_ + g)
                cols["arg"].append(np.full(e, piece[i, p]))
                cols["step"].append(1 + p + height - t.depth[r] if stage == 0 else q + height + p + t.depth[r] - 1)
    step = 1 + 2 * (q + height - 1)
    # multicast: after what (k, g) holds (the copy down, or at a tree's root every reduce into it) and
    # after (k, j)'s send of the piece to the switch
    x = np.arange(kk.size)
    blk = gi * q + pp
    tsel = (gg + pp) % 2
    roots = np.array([int(np.flatnonzero(t.parent < 0)[0]) for t in trees])
    at_root = kk == roots[tsel]
    pos_dn = np.stack([t.pos_dn for t in trees])
    s_own = kk * stride + blk * h + jx
    nr = ~at_root
    ops = [x[nr], x[nr]]
    deps = [s_own[nr], ns + nu + blk[nr] * e + pos_dn[tsel[nr], kk[nr]]]
    xr = x[at_root]
    ops.append(np.repeat(xr, h))
    deps.append((s_own[at_root] - jx[at_root])[:, None].repeat(h, 1).ravel() + np.tile(jj, xr.size))
    for t_i, t in enumerate(trees):
        sel = at_root & (tsel == t_i)
        kid_pos = t.pos_up[np.flatnonzero(t.parent == roots[t_i])]
        ops.append(np.repeat(x[sel], kid_pos.size))
        deps.append((ns + blk[sel] * e)[:, None].repeat(kid_pos.size, 1).ravel() + np.tile(kid_pos, int(sel.sum())))
    op_all, dep_all = np.concatenate(ops), np.concatenate(deps)
    order = np.lexsort((dep_all, op_all))
    op_all, dep_all = op_all[order], dep_all[order]
    keep = np.concatenate([[True], (op_all[1:] != op_all[:-1]) | (dep_all[1:] != dep_all[:-1])])
    counts.append(np.bincount(op_all[keep], minlength=kk.size))
    idx.append(dep_all[keep])
    cols["kind"].append(np.full(kk.size, int(OpKind.COPY)))
    cols["rank"].append(kk * g_ + gg)
    cols["peer"].append(kk * g_ + j)
    cols["arg"].append(piece[gi, pp])
    cols["step"].append(np.full(kk.size, step))
    b.phases += [Phase("reduce at the switch", 0, 1), Phase("trees across nodes", 1, 2 * (q + height - 1)),
                 Phase("multicast", step, 1)]
    cat = {k: np.concatenate(v).astype(np.int64) for k, v in cols.items()}
    return assemble(b, cat["kind"], cat["rank"], cat["peer"], cat["arg"], cat["step"], np.concatenate(counts),
                    np.concatenate(idx))
