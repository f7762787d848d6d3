"""NCCL's double binary tree all-reduce as a program: reduce up, broadcast down, pipelined in chunks.

[Note: the double binary tree]
Across nodes NCCL builds two binary trees over the node indices (src/graph/trees.cc,
``ncclGetBtree``/``ncclGetDtree``): tree 0 takes the lowest set bit of a node's index to find its
parent and children; tree 1 is tree 0 mirrored (``n-1-i``) when the node count is even, shifted by
one when it is odd, so that a node which is an inner vertex of one tree is a leaf of the other.
Which channel takes which tree is src/graph/connect.cc's arithmetic: ``ncclTopoPreset`` copies
the graph's ``nChannels`` channels to ``channels + nChannels`` ("Duplicate channels trees"), and
``connectTrees`` gives ``channel0 = comm->channels + c`` tree 0 and ``channel1 = channel0 +
nChannels`` tree 1, for c < nChannels; ``ncclTopoPostset`` then runs ``2 x nChannels`` channels.
So of the communicator's C channels the first C/2 take tree 0 and the second C/2 the mirrored
tree 1, channel c + C/2 with the intra-node chain of channel c. A message that uses only the first
nc <= C/2 channels (``getChannnelThreadInfo`` trims channels for small messages, keeping the
lowest) loads tree 0 only, as NCCL does. Inside a node the channel is a chain: the node's head
GPU (the one on the channel's NIC, local ``(c mod C/2) mod G``) talks to the other nodes, the rest
hang below it one after another (src/graph/search.cc, ``NCCL_TOPO_PATTERN_BALANCED_TREE`` intra
order).

All-reduce (src/device/all_reduce.h, ``runTreeUpDown``): every chunk is reduced from the leaves
to the root, then broadcast from the root down; a channel's data moves in ``pieces`` pipelined
chunks, so chunk q+1 climbs while chunk q is one hop higher. Each rank sends its partial chunk
to its parent once and the result to each child once: over the whole program every one of the
N-1 tree edges carries the buffer up once and down once, 2(N-1)S bytes in all.
"""

from __future__ import annotations

import numpy as np

from ..builder import ProgramBuilder
from ..errors import UsageError
from ..program import Buffer, Init, OpKind, Phase, Program, split


def btree(nranks: int, rank: int) -> tuple[int, int, int]:
    """``ncclGetBtree``: (parent, child0, child1) of ``rank``, -1 for none."""
    bit = 1
    while bit < nranks:
        if bit & rank:
            break
        bit <<= 1
    if rank == 0:
        return -1, -1, (bit >> 1) if nranks > 1 else -1
    up = (rank ^ bit) | (bit << 1)
    if up >= nranks:
        up = rank ^ bit
    low = bit >> 1
    d0 = -1 if low == 0 else rank - low
    d1 = -1 if low == 0 else rank + low
    while d1 >= nranks:
        low >>= 1
        d1 = -1 if low == 0 else rank + low
    return up, d0, d1


def dtree_parent(nranks: int, rank: int, tree: int) -> int:
    """Parent of ``rank`` in tree 0 or 1 of ``ncclGetDtree`` (mirror if even, shift if odd)."""
    if tree == 0:
        return btree(nranks, rank)[0]
    if nranks % 2 == 1:
        u = btree(nranks, (rank - 1 + nranks) % nranks)[0]
        return -1 if u == -1 else (u + 1) % nranks
    u = btree(nranks, nranks - 1 - rank)[0]
    return -1 if u == -1 else nranks - 1 - u


def channel_tree(channel: int, comm_channels: int) -> tuple[int, int]:
    """(tree, graph channel) of communicator channel ``channel`` of ``comm_channels``: the first
    half of the channels take tree 0, the second half (copies of the first) tree 1
    (src/graph/connect.cc ``ncclTopoPreset``, ``connectTrees``)."""
    half = max(1, comm_channels // 2)
    if not 0 <= channel < max(comm_channels, 1):
        raise UsageError(f"channel {channel} is not one of the communicator's {comm_channels}")
    return (0 if channel < half else 1), channel % half


def tree_parents(nodes: int, gpus: int, channel: int, comm_channels: int = 2) -> np.ndarray:
    """parent[rank] for channel ``channel`` of a communicator of ``comm_channels`` channels (-1 at
    the root): chains in nodes, across nodes tree 0 for the first half of the channels and tree 1
    for the second (:func:`channel_tree`)."""
    tree, graph_channel = channel_tree(channel, comm_channels)
    head = graph_channel % gpus
    local = [(head + i) % gpus for i in range(gpus)]
    parent = np.full(nodes * gpus, -1, dtype=np.int64)
    for k in range(nodes):
        for i in range(1, gpus):
            parent[k * gpus + local[i]] = k * gpus + local[i - 1]
        up = dtree_parent(nodes, k, tree)
        if up >= 0:
            parent[k * gpus + head] = up * gpus + head
    return parent


NCCL_STEPS = 8  # src/include/device.h: slots per connection, chunks in flight on one channel's hop


def slot_buffers(nranks: int, lengths: list, meta: dict, init: Init = Init.OWN,
                 window: int = 1) -> tuple[ProgramBuilder, list]:
    """A builder whose buffers are NCCL's connections: lane c (a channel; an NVLS head's shard) piece
    q lives in buffer ``(c, q mod w)``, ``w = min(window, NCCL_STEPS, pieces)``, the pieces of one
    buffer end to end. The engine's connection is (src, dst, buffer): so every channel has its own
    connections (NCCL gives each its own), and a hop keeps up to ``w`` pieces in flight, their
    latencies overlapping, as a connection's ``NCCL_STEPS`` slots do; with one buffer piece q+1
    would start only after piece q's latency and bytes. The engine shares a link among the pieces
    in flight where NCCL sends them in order, so the caller asks for no more in flight than cover
    the hop's latency (:func:`simulator.nccl.model.window`). Returns the builder and ``chunk_of[c][q]``."""
    slots = [max(1, min(window, NCCL_STEPS, len(ln))) for ln in lengths]
    buffers, grids, index = [], [], []
    for c, ln in enumerate(lengths):
        for s in range(slots[c]):
            mine = ln[s::slots[c]]
            buffers.append(Buffer(f"ch{c}.{s}", int(np.sum(mine)), init))
            grids.append(np.concatenate([[0], np.cumsum(mine)]).astype(np.int64))
    b = ProgramBuilder(nranks, buffers, meta=meta)
    for i, g in enumerate(grids):
        b.grid(i, g)
    first = np.concatenate([[0], np.cumsum(slots)])
    for c, ln in enumerate(lengths):
        index.append([b.chunk(int(first[c]) + q % slots[c], q // slots[c]) for q in range(len(ln))])
    return b, index


def _depths(parent: np.ndarray) -> np.ndarray:
    depth = np.full(parent.size, -1, dtype=np.int64)
    for r in range(parent.size):
        path, v = [], r
        while v >= 0 and depth[v] < 0:
            path.append(v)
            v = parent[v]
        d = depth[v] if v >= 0 else -1
        for u in reversed(path):
            d += 1
            depth[u] = d
    return depth


def nccl_tree(nodes: int, gpus: int, nbytes: int, nchannels: int, pieces: int = 4, meta: dict | None = None,
              comm_channels: int | None = None, window: int = 1, own_buffers: bool = False,
              lanes: list[int] | None = None) -> Program:
    """Double binary tree all-reduce on ``nodes`` x ``gpus`` ranks over the first ``nchannels`` of the
    communicator's ``comm_channels`` channels (default: all of them, ``nchannels`` rounded up to even as
    NCCL's ``2 x nChannels`` always is), ``pieces`` chunks each, up to ``window`` of them in flight per
    hop with ``own_buffers`` (:func:`slot_buffers`, what :mod:`simulator.nccl` builds); without, one
    buffer (the registry's ``nccl-tree``, as the real executor runs it: one connection per pair).
    ``lanes``: build only these channels, with the bytes they have in the whole program (for time
    only: :mod:`simulator.nccl.rotation`)."""
    comm_channels = nchannels + nchannels % 2 if comm_channels is None else comm_channels
    if nchannels < 1 or pieces < 1 or comm_channels < nchannels:
        raise UsageError(f"a tree needs >= 1 channel of the communicator's {comm_channels} and >= 1 piece, got "
                         f"{nchannels} and {pieces}")
    n = nodes * gpus
    per = split(nbytes, nchannels)
    built = list(range(nchannels)) if lanes is None else list(lanes)
    lengths = [np.diff(split(int(per[c + 1] - per[c]), pieces)) for c in built]
    info = {"collective": "all-reduce", "algo": "nccl-tree", "nranks": n, "nbytes": nbytes, "nchannels": nchannels,
            "comm_channels": comm_channels, "pieces": pieces, "nodes": nodes, **(meta or {})}
    if lanes is not None:
        info["lanes"] = built
    if own_buffers:
        info["window"] = window
        b, chunk_of = slot_buffers(n, lengths, info, window=window)
    else:
        b = ProgramBuilder(n, [Buffer("buf", nbytes, Init.OWN)], meta=info)
        b.grid(0, np.concatenate([[0], np.cumsum(np.concatenate(lengths))]).astype(np.int64))
        chunk_of = [[b.chunk(0, c * pieces + q) for q in range(pieces)] for c in range(len(built))]
    trees = [tree_parents(nodes, gpus, c, comm_channels) for c in built]
    depths = [_depths(p) for p in trees]
    height = max(int(d.max()) for d in depths) if n > 1 else 0
    if n > 1:
        b.phases.append(Phase("reduce up the trees", 0, pieces + height - 1))
        b.phases.append(Phase("broadcast down the trees", pieces + height - 1, pieces + height - 1))
    return _tree_program(b, [_Tree(p, d) for p, d in zip(trees, depths)], pieces, height,
                         np.array(chunk_of, dtype=np.int64).reshape(len(built), pieces))


class _Tree:
    """One tree's ops in builder order and their dependencies, as positions in its up and down blocks.

    [Note: tree dependencies, derived once]
    What :class:`simulator.builder.ProgramBuilder` derives op by op for one chunk of a tree (up:
    deepest rank first, ``r -> parent`` REDUCE; down: shallowest first, ``parent -> r`` COPY; every
    chunk its own cell): the reduce of ``r`` waits for its children's reduces into it (read after
    write); the copy ``p -> r`` waits for what ``p`` holds (the copy into ``p``, or at the root
    every reduce into it), for ``r``'s own reduce (write after read) and for the reduces into ``r``.
    Every chunk repeats this pattern, so it is built once per tree and tiled over the chunks; a test
    checks the programs equal the op-by-op builder's, field by field."""

    def __init__(self, parent: np.ndarray, depth: np.ndarray) -> None:
        o = np.argsort(-depth, kind="stable")
        self.up_r = o[parent[o] >= 0]  # ranks in the order the up loop adds their reduces
        o = np.argsort(depth, kind="stable")
        self.dn_r = o[parent[o] >= 0]
        n = parent.size
        self.parent, self.depth = parent, depth
        self.pos_up = np.full(n, -1, dtype=np.int64)
        self.pos_up[self.up_r] = np.arange(self.up_r.size)
        self.pos_dn = np.full(n, -1, dtype=np.int64)
        self.pos_dn[self.dn_r] = np.arange(self.dn_r.size)
        kids = np.flatnonzero(parent >= 0)
        self.kid, self.kid_of = kids, parent[kids]  # child, its parent

    def children_up(self, of: np.ndarray, op: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(op, position in the up block of a reduce into ``of[i]``) for every child of each ``of[i]``."""
        order = np.argsort(self.kid_of, kind="stable")
        ko, kc = self.kid_of[order], self.kid[order]
        lo = np.searchsorted(ko, of, side="left")
        hi = np.searchsorted(ko, of, side="right")
        cnt = hi - lo
        first = np.zeros(of.size, dtype=np.int64)
        np.cumsum(cnt[:-1], out=first[1:])
        idx = np.repeat(lo - first, cnt) + np.arange(int(cnt.sum()))
        return np.repeat(op, cnt), self.pos_up[kc[idx]]


def sorted_pattern(op: np.ndarray, dep: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """One block's dependency pairs as (deps per op for ``m`` ops, deps ascending and distinct per op,
    as the builder sorts them): a block small enough to sort, then tiled."""
    key = np.unique(op * (1 << 40) + dep)
    return np.bincount(key >> 40, minlength=m), key & ((1 << 40) - 1)


def assemble(b: ProgramBuilder, kind, rank, peer, arg, step, counts, idx) -> Program:
    """The program ``b.build()`` would return had ``b`` been given these ops (construction order)
    with these dependencies (``counts`` per op, ``idx`` in op order): ``b`` holds the buffers,
    grids, chunks, phases and meta only."""
    import dataclasses

    from ..program import reorder

    empty = b.build()
    m = kind.size
    ptr = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    prog = dataclasses.replace(empty, kind=kind, rank=rank, peer=peer, arg=arg, step=step, dep_ptr=ptr,
                               dep_idx=idx)
    if m and np.any(np.diff(prog.step) < 0):
        prog = reorder(prog, np.argsort(prog.step, kind="stable"))
    return prog.validate()


def _tree_program(b: ProgramBuilder, trees: list, pieces: int, height: int, chunk_of: np.ndarray) -> Program:
    """Every channel's up ops (channel, chunk, rank by depth), then every channel's down ops, with
    the dependencies of [Note: tree dependencies, derived once]."""
    nch = len(trees)
    e = int(trees[0].up_r.size) if nch else 0
    nu = nch * pieces * e
    cols = {k: [] for k in ("kind", "rank", "peer", "arg", "step")}
    counts, idx = [], []
    q = np.arange(pieces)
    for c, t in enumerate(trees):  # the up blocks: (c, q) at (c * pieces + q) * e
        r = t.up_r
        cnt, dep = sorted_pattern(*t.children_up(r, np.arange(e)), e)  # r's reduce waits for its children's
        base = (c * pieces + q) * e
        cols["kind"].append(np.full(pieces * e, int(OpKind.REDUCE)))
        cols["rank"].append(np.tile(r, pieces))
        cols["peer"].append(np.tile(t.parent[r], pieces))
        cols["arg"].append(np.repeat(chunk_of[c], e))
        cols["step"].append((q[:, None] + height - t.depth[r][None, :]).ravel())
        counts.append(np.tile(cnt, pieces))
        idx.append((base[:, None] + dep[None, :]).ravel())
    for c, t in enumerate(trees):  # the down blocks, after all up blocks
        r = t.dn_r
        p = t.parent[r]
        i = np.arange(e)
        root = t.parent[p] < 0
        pairs = [(i, t.pos_up[r]), t.children_up(r, i), t.children_up(p[root], i[root])]
        op = np.concatenate([x[0] for x in pairs] + [i[~root]])
        # deps: positions in the up block, then (the copy into p) in the down block, after every up op
        dep = np.concatenate([x[1] for x in pairs] + [e + t.pos_dn[p[~root]]])
        cnt, dep = sorted_pattern(op, dep, e)
        in_dn = dep >= e
        up_base = (c * pieces + q) * e
        cols["kind"].append(np.full(pieces * e, int(OpKind.COPY)))
        cols["rank"].append(np.tile(p, pieces))
        cols["peer"].append(np.tile(r, pieces))
        cols["arg"].append(np.repeat(chunk_of[c], e))
        cols["step"].append((pieces + height + q[:, None] + t.depth[r][None, :] - 1).ravel())
        counts.append(np.tile(cnt, pieces))
        idx.append((np.where(in_dn, nu - e, 0)[None, :] + up_base[:, None] + dep[None, :]).ravel())
    z = np.zeros(0, dtype=np.int64)
    cat = {k: np.concatenate(v).astype(np.int64) if v else z for k, v in cols.items()}
    return assemble(b, cat["kind"], cat["rank"], cat["peer"], cat["arg"], cat["step"],
                    np.concatenate(counts) if counts else z, np.concatenate(idx) if idx else z)
