"""The tree and NVLSTree builders ([Note: tree dependencies, derived once], ``_nvls_tree``) build,
field by field, the program the op-by-op builder (:class:`ProgramBuilder`, dependencies derived from
reads and writes) builds from the same loops, kept here as the reference."""

from __future__ import annotations

import numpy as np
import pytest

from rankscope.simulator.builder import ProgramBuilder
from rankscope.simulator.collectives.nccl_tree import _depths, dtree_parent, nccl_tree, slot_buffers, tree_parents
from rankscope.simulator.nccl.nvls import nvls, port_speedup
from rankscope.simulator.program import Buffer, Init, OpKind, Phase, split


def ref_tree(nodes, gpus, nbytes, nchannels, pieces, meta, comm_channels, window, own_buffers):
    n = nodes * gpus
    per = split(nbytes, nchannels)
    lengths = [np.diff(split(int(per[c + 1] - per[c]), pieces)) for c in range(nchannels)]
    info = {"collective": "all-reduce", "algo": "nccl-tree", "nranks": n, "nbytes": nbytes, "nchannels": nchannels,
            "comm_channels": comm_channels, "pieces": pieces, "nodes": nodes, **meta}
    if own_buffers:
        info["window"] = window
        b, chunk_of = slot_buffers(n, lengths, info, window=window)
    else:
        b = ProgramBuilder(n, [Buffer("buf", nbytes, Init.OWN)], meta=info)
        b.grid(0, np.concatenate([[0], np.cumsum(np.concatenate(lengths))]).astype(np.int64))
        chunk_of = [[b.chunk(0, c * pieces + q) for q in range(pieces)] for c in range(nchannels)]
    trees = [tree_parents(nodes, gpus, c, comm_channels) for c in range(nchannels)]
    depths = [_depths(p) for p in trees]
    height = max(int(d.max()) for d in depths) if n > 1 else 0
    for c, (parent, depth) in enumerate(zip(trees, depths)):
        for q in range(pieces):
            for r in sorted(range(n), key=lambda r: -depth[r]):
                if parent[r] >= 0:
                    b.transfer(int(r), int(parent[r]), chunk_of[c][q], OpKind.REDUCE, q + height - int(depth[r]))
    for c, (parent, depth) in enumerate(zip(trees, depths)):
        for q in range(pieces):
            for r in sorted(range(n), key=lambda r: depth[r]):
                if parent[r] >= 0:
                    b.transfer(int(parent[r]), int(r), chunk_of[c][q], OpKind.COPY,
                               pieces + height + q + int(depth[r]) - 1)
    if n > 1:
        b.phases.append(Phase("reduce up the trees", 0, pieces + height - 1))
        b.phases.append(Phase("broadcast down the trees", pieces + height - 1, pieces + height - 1))
    return b.build()


def ref_nvls_tree(nodes, gpus, nbytes, q, meta, window):
    n = nodes * gpus
    info = {"collective": "all-reduce", "algo": "nccl-nvls_tree", "nranks": n, "nbytes": nbytes, "nodes": nodes,
            "pieces": q, "nvls_port_speedup": port_speedup(gpus), **meta, "window": window}
    shard = split(nbytes, gpus)
    b, piece = slot_buffers(n, [np.diff(split(int(shard[g + 1] - shard[g]), q)) for g in range(gpus)], info,
                            window=window)
    for k in range(nodes):
        for g in range(gpus):
            for c in piece[g]:
                for j in range(gpus):
                    if j != g:
                        b.transfer(k * gpus + j, k * gpus + g, c, OpKind.REDUCE, 0)
    trees = [np.array([dtree_parent(nodes, k, t) for k in range(nodes)]) for t in (0, 1)]
    depths = [_depths(t) for t in trees]
    height = max(int(d.max()) for d in depths)
    for g in range(gpus):
        for p in range(q):
            parent, depth = trees[(g + p) % 2], depths[(g + p) % 2]
            for k in sorted(range(nodes), key=lambda k: -depth[k]):
                if parent[k] >= 0:
                    b.transfer(k * gpus + g, int(parent[k]) * gpus + g, piece[g][p], OpKind.REDUCE,
                               1 + p + height - depth[k])
    for g in range(gpus):
        for p in range(q):
            parent, depth = trees[(g + p) % 2], depths[(g + p) % 2]
            for k in sorted(range(nodes), key=lambda k: depth[k]):
                if parent[k] >= 0:
                    b.transfer(int(parent[k]) * gpus + g, k * gpus + g, piece[g][p], OpKind.COPY,
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


def _same(a, b):
    for f in ("kind", "rank", "peer", "arg", "step", "dep_ptr", "dep_idx", "chunk_buf", "chunk_off", "chunk_len"):
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype and np.array_equal(x, y), f
    assert (a.nranks, a.buffers, a.phases, a.meta) == (b.nranks, b.buffers, b.phases, b.meta)


@pytest.mark.parametrize("nodes,gpus", [(4, 8), (6, 4), (5, 8), (3, 2), (1, 4), (2, 2), (8, 8), (12, 2)])
@pytest.mark.parametrize("nch,comm,pieces,window,own", [(1, 2, 1, 1, False), (2, 2, 4, 1, False),
                                                        (16, 16, 30, 8, True), (3, 8, 5, 3, True),
                                                        (4, 4, 32, 2, True)])
def test_tree_equals_the_op_by_op_builder(nodes, gpus, nch, comm, pieces, window, own):
    kw = dict(comm_channels=comm, window=window, own_buffers=own)
    _same(nccl_tree(nodes, gpus, (1 << 20) + 7, nch, pieces, {"x": 1}, **kw),
          ref_tree(nodes, gpus, (1 << 20) + 7, nch, pieces, {"x": 1}, **kw))


@pytest.mark.parametrize("nodes,gpus", [(4, 8), (6, 4), (5, 8), (3, 2), (2, 4), (8, 8), (7, 3), (16, 8)])
@pytest.mark.parametrize("pieces,window", [(1, 1), (4, 2), (32, 8), (5, 3)])
def test_nvls_tree_equals_the_op_by_op_builder(nodes, gpus, pieces, window):
    _same(nvls(nodes, gpus, (1 << 22) + 3, pieces, {"x": 1}, window=window),
          ref_nvls_tree(nodes, gpus, (1 << 22) + 3, pieces, {"x": 1}, window))
