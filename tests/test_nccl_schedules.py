"""NCCL's schedules as programs: the multi-channel ring meets its closed form, the tree and NVLS move
the bytes their algorithms promise, and every collective ends as promised (check_promise)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rankscope.simulator import costs
from rankscope.simulator.collectives.nccl_ring import multi_ring, nccl_ring, ring_orders
from rankscope.simulator.collectives.nccl_tree import btree, dtree_parent, nccl_tree
from rankscope.simulator.engine import simulate
from rankscope.simulator.nccl import cluster_of, nccl_collective, simulate_nccl, tuning, view
from rankscope.simulator.nccl.nvls import nvls, port_bandwidth, port_speedup
from rankscope.simulator.program import OpKind, split
from rankscope.simulator.provenance import ProvenanceError, check_promise
from rankscope.simulator.topology import parse_topology
from rankscope.simulator.traffic import traffic


def sent(prog) -> np.ndarray:
    t = prog.is_transfer
    return np.bincount(prog.rank[t], weights=prog.op_bytes[t], minlength=prog.nranks)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 8, 24])
def test_multi_channel_ring_equals_closed_form_on_a_switch(k):
    # k channels share every port evenly: each step costs alpha + (S/(kN)) / (bw/k), the one-ring term
    s = 8 * 24 * 4096
    res = simulate(nccl_ring("all-reduce", 1, 8, s, k), parse_topology("switch:8"))
    assert res.makespan == pytest.approx(costs.ring_all_reduce(8, s, 2 * 5e-6, 1 / 25e9), rel=1e-9)


def test_each_channel_leaves_the_node_on_its_own_nic():
    topo = parse_topology("nodes:2x8,gpu=h100,nics=8,nic=400Gb/s")
    prog = nccl_ring("all-reduce", 2, 8, 1 << 20, 8)
    nic_links = set()
    for ring in prog.meta["rings"]:
        o = ring["order"]
        hop = [(o[i], o[(i + 1) % 16]) for i in range(16) if o[i] // 8 != o[(i + 1) % 16] // 8]
        ups = {topo.link_names[topo.route(a, b)[0]] for a, b in hop}
        assert len(ups) == 2  # this ring's two inter-node hops
        nic_links |= ups
    assert len(nic_links) == 16  # 8 channels x 2 nodes: every NIC uplink used by exactly one channel


def test_single_ring_order_count_and_merging():
    orders = ring_orders(1, 8, 24)
    assert len(set(orders)) == 4  # strides 1, 3, 5, 7 coprime with 8
    prog = multi_ring("all-reduce", 8, 8 * 24, orders)
    assert [len(r["channels"]) for r in prog.meta["rings"]] == [6, 6, 6, 6]
    assert prog.meta["nchannels"] == 24


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3), st.integers(1, 5), st.integers(1, 9), st.integers(0, 5000),
       st.sampled_from(["all-reduce", "reduce-scatter", "all-gather"]), st.booleans())
def test_ring_promise_and_bytes(nodes, gpus, k, nbytes, coll, own):
    n = nodes * gpus
    prog = nccl_ring(coll, nodes, gpus, nbytes, k, own_buffers=own)
    check_promise(prog)
    assert len(prog.buffers) == (len(prog.meta["rings"]) if own else 1)
    shard = np.diff(split(nbytes, n))
    per = sent(prog)
    # every shard crosses N-1 ring hops per pass (RS, AG: one pass; AR: two); a rank never sends more
    # than a pass's worth of shards other than one
    passes = 2 if coll == "all-reduce" else 1
    assert per.sum() == passes * (n - 1) * nbytes
    assert per.max() <= passes * (nbytes - shard.min())


def test_promise_checks_every_channel_buffer_not_only_the_first():
    prog = nccl_ring("all-reduce", 2, 4, 1 << 16, 4, own_buffers=True)
    last = len(prog.buffers) - 1
    assert last > 0
    kind = prog.kind.copy()
    ops = np.flatnonzero((prog.chunk_buf[prog.arg] == last) & (kind == OpKind.REDUCE))
    kind[ops[-1]] = OpKind.COPY  # one reduction in the last ring's buffer replaces instead of adding
    with pytest.raises(ProvenanceError, match="ring"):
        check_promise(dataclasses.replace(prog, kind=kind))
    check_promise(prog)


def test_btree_matches_ncclgetbtree_illustration():
    # src/graph/trees.cc: 0 -> 8 -> {4, 12}; 4 -> {2, 6}; 12 -> {10, 13}; 13's parent 12 (xx10[0] out of bounds)
    assert btree(14, 0) == (-1, -1, 8)
    assert btree(14, 8) == (0, 4, 12) and btree(14, 12) == (8, 10, 13) and btree(14, 13)[0] == 12
    # the second tree is the mirror (even) or the shift (odd): its root is n-1 or 1 (ncclGetDtreeRoots)
    assert [r for r in range(12) if dtree_parent(12, r, 1) == -1] == [11]
    assert [r for r in range(13) if dtree_parent(13, r, 1) == -1] == [1]


@pytest.mark.parametrize("nodes,gpus,k,pieces", [(1, 8, 2, 1), (2, 4, 2, 3), (4, 2, 4, 4), (5, 3, 3, 2), (8, 1, 2, 4)])
@pytest.mark.parametrize("window", [0, 1, 3])
def test_tree_bytes_and_promise(nodes, gpus, k, pieces, window):
    s = 6000
    prog = nccl_tree(nodes, gpus, s, k, pieces, window=max(window, 1), own_buffers=window > 0)
    check_promise(prog)
    assert len(prog.buffers) == (k * min(window, pieces) if window else 1)
    per = sent(prog)
    n = nodes * gpus
    assert per.sum() == 2 * (n - 1) * s  # every tree edge carries the buffer up once and down once
    # a rank sends its partial up once and the result to each child: at most 3 x its channels' data
    assert per.max() <= 3 * s


def test_trees_complement_each_other():
    # a node that is an inner vertex of tree 0 is a leaf of tree 1 (power-of-two node counts)
    for n in (4, 8, 16):
        inner = [{p for r in range(n) if (p := dtree_parent(n, r, t)) >= 0} for t in (0, 1)]
        assert not (inner[0] & inner[1] - {0, n - 1})


@pytest.mark.parametrize("nodes,gpus", [(1, 8), (1, 4), (2, 4), (3, 4), (4, 2)])
def test_nvls_bytes_and_promise(nodes, gpus):
    s = 8000
    prog = nvls(nodes, gpus, s, pieces=3)
    check_promise(prog)
    per = sent(prog)
    if nodes == 1:
        # reduce at the switch then multicast: 2 (G-1)/G x S per rank in point-to-point terms
        assert np.allclose(per, 2 * (gpus - 1) * s / gpus)
    # every reduction into a shard owner at the switch waits for nothing: contributions arrive at once
    first = np.flatnonzero(prog.step == 0)
    assert all(len(prog.deps(int(i))) == 0 for i in first)


def test_nvls_view_gives_the_switch_port_time():
    # in-switch reduction moves (G+1)/G x S per port; the p2p program moves 2(G-1)/G x S on a port
    # sped up by 2(G-1)/(G+1): the port time is (G+1)/G x S / bw, where bw is the NVLS port bandwidth:
    # NCCL's NVLS graph on 1x8 H100 is 8 channels x 40 GB/s = 320 GB/s, under the link's 18 x 20.6
    topo = parse_topology("nodes:1x8,gpu=h100")
    s = 8 << 20
    prog = nvls(1, 8, s)
    prog = dataclasses.replace(prog, meta={**prog.meta, "nccl": {"algo": "nvls", "proto": "simple"}})
    res, v, _ = simulate_nccl(prog, topo)
    bw = 8 * 40e9
    assert port_speedup(8) == pytest.approx(14 / 9)
    assert res.makespan == pytest.approx(2 * 3.4e-6 + 9 / 8 * s / bw, rel=1e-9)


def test_nvls_port_bandwidth_is_the_nvls_graph_below_the_link():
    """[Note: the NVLS port bandwidth]: on 1x8 H100 the NVLS graph's nChannels x bwIntra (8 x 40 GB/s,
    ncclTopoSearchTryNvls: (8+1) x 40 <= 370.8) is below the link (18 x 20.6 = 370.8 GB/s), so the
    NVLS view's NVSwitch links are 320 GB/s x 14/9; the ring and tree views keep the link's figure."""
    topo = parse_topology("nodes:1x8,gpu=h100")
    spec = cluster_of(topo)
    g = tuning(topo).graphs["nvls"]
    assert (g.nchannels, g.bw_intra) == (8, 40.0) and g.nchannels * g.bw_intra * 1e9 < 18 * 20.6e9
    assert port_bandwidth(spec) == pytest.approx(g.nchannels * g.bw_intra * 1e9, rel=1e-12)
    assert port_bandwidth(spec) == pytest.approx(320e9, rel=1e-12)
    nvl = [i for i, n in enumerate(topo.link_names) if "nvswitch" in n]
    assert np.allclose(view(topo, "simple", "nvls").link_bw[nvl], 320e9 * 14 / 9, rtol=1e-12)
    for algo in ("ring", "tree"):
        assert np.allclose(view(topo, "simple", algo).link_bw[nvl], 18 * 20.6e9, rtol=1e-12)
    # 2x8 H100 (NVLSTree): the same graph inside each node, 8 x 40; the NICs keep their figure
    two = parse_topology("nodes:2x8,gpu=h100,nics=8,nic=400Gb/s")
    v = view(two, "simple", "nvls_tree")
    nvl2 = [i for i, n in enumerate(two.link_names) if "nvswitch" in n]
    other = [i for i in range(len(two.link_names)) if i not in set(nvl2)]
    assert np.allclose(v.link_bw[nvl2], 320e9 * 14 / 9, rtol=1e-12)
    assert np.allclose(v.link_bw[other], two.link_bw[other], rtol=1e-12)


def test_protocol_view_scales_bandwidth_and_latency():
    topo = parse_topology("nodes:2x2,gpu=h100,nics=2")
    v = view(topo, "ll")
    assert v.nranks == topo.nranks and len(v.link_names) == len(topo.link_names)
    nvl = [i for i, n in enumerate(topo.link_names) if "nvswitch" in n]
    net = [i for i, n in enumerate(topo.link_names) if "fabric" in n]
    assert np.allclose(v.link_bw[nvl], topo.link_bw[nvl] * 0.5)
    assert np.allclose(v.link_lat[nvl], 0.6e-6 / 2) and np.allclose(v.link_lat[net], 2.7e-6 / 4)


@pytest.mark.parametrize("spec", ["nodes:1x8,gpu=a100", "nodes:1x8,gpu=h100", "nodes:2x4,gpu=h100,nics=4",
                                  "nodes:4x2,gpu=a100,nics=1"])
@pytest.mark.parametrize("nbytes", [8, 65536, 1 << 20, 64 << 20])
def test_every_choice_runs_and_ends_as_promised(spec, nbytes):
    topo = parse_topology(spec)
    prog, ch = nccl_collective("all-reduce", topo, nbytes)
    check_promise(prog)
    res, _, seconds = simulate_nccl(prog, topo)
    assert prog.meta["nccl"]["algo"] == ch.algo and seconds > 0 and res.makespan > 0


@pytest.mark.parametrize("coll", ["reduce-scatter", "all-gather"])
def test_ring_only_collectives(coll):
    topo = parse_topology("nodes:2x4,gpu=h100,nics=4")
    prog, ch = nccl_collective(coll, topo, 1 << 20)
    assert ch.algo == "ring"
    check_promise(prog)


@pytest.mark.parametrize("coll, sent", [("all-gather", 7 * (2 << 20) // 8), ("reduce-scatter", 7 * (2 << 20) // 8)])
def test_nvls_reduce_scatter_and_all_gather_on_one_node_are_their_own_programs(coll, sent):
    """NCCL's tuner lets NVLS compete for reduce-scatter and all-gather on one node: the schedule
    is that collective (the reduce at the switch alone, or the multicast alone), not an all-reduce."""
    topo = parse_topology("nodes:1x8,gpu=h100")
    prog, ch = nccl_collective(coll, topo, 2 << 20, algo="nvls")
    assert ch.algo == "nvls" and prog.meta["collective"] == coll and prog.n_steps == 1
    check_promise(prog)
    assert set(traffic(prog).sent.tolist()) == {sent}
    res, view, t = simulate_nccl(prog, topo)
    assert view.meta["nccl_view"]["nvls_port_speedup"] == pytest.approx(7 / 8 if coll == "reduce-scatter" else 1.0)
    # the port at the NVLS graph's 8 x 40 GB/s: S (reduce-scatter) or 7/8 S (all-gather) out of a port
    port = (1.0 if coll == "reduce-scatter" else 7 / 8) * (2 << 20)
    assert res.makespan == pytest.approx(3.4e-6 + port / (8 * 40e9), rel=1e-9)


def test_a_one_rank_cluster_tunes_and_simulates():
    prog, ch = nccl_collective("all-reduce", parse_topology("nodes:1x1,gpu=h100"), 1 << 20)
    assert prog.n_ops == 0 or ch.nchannels >= 1


@pytest.mark.parametrize("nodes,lo", [(2, 0.9), (16, 0.8)])
def test_nvls_tree_reaches_its_link_bound(nodes, lo):
    """NVLSTree at 1 GiB: busbw below the bound of [Note: what NVLSTree can reach] and near it (with a
    fixed 8 pipeline pieces 16 nodes ran at 59% of the NIC bound, under NCCL's own 78%)."""
    topo = parse_topology(f"nodes:{nodes}x8,gpu=h100,nics=8,nic=400Gb/s")
    s, n, g = 1 << 30, topo.nranks, 8
    prog, ch = nccl_collective("all-reduce", topo, s, algo="nvls_tree")
    assert (ch.algo, prog.meta["pieces"]) == ("nvls_tree", 32)
    _, _, t = simulate_nccl(prog, topo)
    spec = cluster_of(topo)
    nic_alg = g * spec.nic_bw / (1 if nodes == 2 else 2)
    nvl_alg = 8 * 40e9 * g / (g + 1)  # the NVLS port bandwidth: NCCL's NVLS graph, 8 channels x 40 GB/s
    bound = 2 * (n - 1) / n * min(nic_alg, nvl_alg)
    busbw = 2 * (n - 1) / n * s / t
    assert lo * bound <= busbw <= bound


def test_tree_channels_first_half_take_tree_zero():
    """src/graph/connect.cc: ncclTopoPreset copies channels [0, C/2) to [C/2, C); connectTrees gives
    channel0 = channels + c tree 0 and channel1 = channel0 + nChannels tree 1."""
    from rankscope.simulator.collectives.nccl_tree import channel_tree, tree_parents

    assert [channel_tree(c, 16) for c in range(16)] == [(0, c) for c in range(8)] + [(1, c) for c in range(8)]
    nodes, gpus = 4, 2
    across = lambda p: {(int(r) // gpus, int(p[r]) // gpus) for r in range(p.size) if p[r] >= 0 and p[r] // gpus != r // gpus}
    t0 = {(k, dtree_parent(nodes, k, 0)) for k in range(nodes) if dtree_parent(nodes, k, 0) >= 0}
    t1 = {(k, dtree_parent(nodes, k, 1)) for k in range(nodes) if dtree_parent(nodes, k, 1) >= 0}
    for c in range(4):  # 8 channels: 0..3 tree 0, 4..7 tree 1 with channel c's chain
        assert across(tree_parents(nodes, gpus, c, 8)) == t0
        assert across(tree_parents(nodes, gpus, c + 4, 8)) == t1
        within = lambda p: {(r, int(p[r])) for r in range(p.size) if p[r] >= 0 and p[r] // gpus == r // gpus}
        assert within(tree_parents(nodes, gpus, c, 8)) == within(tree_parents(nodes, gpus, c + 4, 8))
    # a message on the first 2 of 8 channels loads tree 0 only: no edge of tree 1 carries bytes
    prog = nccl_tree(nodes, gpus, 1 << 20, 2, 2, comm_channels=8)
    src, dst = prog.rank[prog.is_transfer] // gpus, prog.peer[prog.is_transfer] // gpus
    edges = {(int(a), int(b)) for a, b in zip(src, dst) if a != b}
    assert edges == t0 | {(b, a) for a, b in t0}


def test_pieces_are_nccls_chunks():
    """src/enqueue.cc computeCollChunkInfo, by hand: Simple's step is 4 MiB / NCCL_STEPS = 512 KiB; NVLSTree
    from 4 nodes takes at most 64 KiB, and 1 GiB over 16 channels x 8 heads is 128 such chunks (capped at 32);
    tree/LL128's step 614400 B carries 576000 data bytes, halved while a channel gets fewer than
    nstepsLL128 x 64 / ppn chunks (nstepsLL128 = 1 + log2i(128) + 0.8 = 8.8 on 128 x 8)."""
    from rankscope.simulator.nccl.model import chunk_size, pieces_of, window
    from rankscope.simulator.nccl.tuner import Choice

    assert chunk_size("nvls_tree", "simple", 1 << 30, 16, 128, 8) == 65536
    # 2 nodes: no 64 KiB cap, but 1 GiB < 32 x 128 ops x 512 KiB: 256 KiB
    assert chunk_size("nvls_tree", "simple", 1 << 30, 16, 2, 8) == 262144
    assert chunk_size("nvls_tree", "simple", 4 << 20, 16, 128, 8) == 32768  # < 1 x 128 ops x 64 KiB
    # 8 MiB / (16 x 576000) = 0 < 70.4 -> 288000 -> 144000 -> 72000; then 7 < 17.6 -> 36000 -> 18000
    assert chunk_size("tree", "ll128", 8 << 20, 16, 128, 8) == 18000
    assert chunk_size("tree", "ll", 1 << 20, 16, 2, 8) == 32768  # LL: half of a 64 KiB step
    spec = cluster_of(parse_topology("nodes:128x8,gpu=h100,nics=8,nic=400Gb/s"))
    big = Choice("all-reduce", 1 << 30, "nvls_tree", "simple", 16, 0.0)
    assert pieces_of(big, spec) == 32
    # window: 1 + ceil(14 us x 50 GB/s / (1 GiB / 8 / 32)) = 1 + ceil(700000 / 4194304) = 2
    assert window(big, spec, 32) == 2
    small = Choice("all-reduce", 8 << 20, "tree", "ll128", 16, 0.0)
    assert pieces_of(small, spec) == 30 and window(small, spec, 30) == 8  # latency-bound: all 8 slots
