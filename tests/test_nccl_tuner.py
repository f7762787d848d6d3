"""NCCL 2.20.3's tuner reproduced by hand-worked examples.

Lines cited are of NVIDIA/nccl at commit b6475625 (v2.20.3): src/graph/tuning.cc
``ncclTopoTuneModel`` (bandwidths: "busBw = graphs[a]->nChannels * bw" and the refinements below
it; latencies: "comm->latencies[coll][a][p] = baseLat[a][p]" and the per-algorithm sums),
``ncclTopoGetAlgoTime`` ("*time = lat * latCount + (info->nBytes) / (1000 * bw)", the tree
correction "bw *= treeCorrectionFactor[protocol][logSize]", the ring plateau "lat *= 1.4"),
src/graph/search.cc ``ncclTopoCompute``/``ncclTopoDupChannels`` for the graphs, and
src/enqueue.cc ``topoGetAlgoInfo`` (least time wins). Times are microseconds.
"""

from __future__ import annotations

import pytest

from rankscope.simulator.errors import RankscopeError
from rankscope.simulator.nccl import cluster_of, tuning
from rankscope.simulator.nccl.search import graphs
from rankscope.simulator.topology import parse_topology

A100 = "nodes:1x8,gpu=a100"
H100 = "nodes:1x8,gpu=h100,nvls=on"
H100x2 = "nodes:2x8,gpu=h100,nics=8,nic=400Gb/s"
H100x16 = "nodes:16x8,gpu=h100,nics=8,nic=400Gb/s"


def test_graphs_from_the_channel_search():
    # A100: totalBw = 12 x 20.0 = 240; speedArrayIntra 40 fits 240/40 = 6 channels and 6 x 40 >= totalBw stops
    # pass 1; ncclTopoDupChannels (bwIntra 40 >= 25, ccMin 80 not > 80) doubles: 12 x 20; 30 x 12 > 240 in pass 2.
    g = graphs(cluster_of(parse_topology(A100)))
    assert (g["ring"].nchannels, g["ring"].bw_intra) == (12, 20.0) and g["nvls"] is None
    # H100: 370.8 GB/s; sm90SpeedArrayIntra 60 fits 6 (360); no better below; dup (60 >= 50): 12 x 30.
    # NVLS: minChannels = maxChannels = 8 heads; (8+1) x 40 <= 370.8 < (8+1) x 50: 8 x 40.
    g = graphs(cluster_of(parse_topology(H100)))
    assert (g["ring"].nchannels, g["ring"].bw_intra) == (12, 30.0)
    assert (g["nvls"].nchannels, g["nvls"].bw_intra) == (8, 40.0)
    # 2 nodes: NIC 400 Gb/s = 50 GB/s, PCIe Gen5 x16 48: sm90SpeedArrayInter 48, one channel per NIC: 8 x 48;
    # no dup (ccMin 90 > 80, 48 < 50, 8 > 4). NVLS: 8 x 40 intra, pass 2 raises bwInter to 48.
    g = graphs(cluster_of(parse_topology(H100x2)))
    assert (g["ring"].nchannels, g["ring"].bw_inter, g["tree"].nchannels) == (8, 48.0, 8)
    assert (g["nvls"].nchannels, g["nvls"].bw_intra, g["nvls"].bw_inter) == (8, 40.0, 48.0)


# (preset, bytes, algorithm, protocol, predicted us: the hand computation)
CASES = [
    # A100 ring LL: busBw min(llMaxBw 87.7, 12*20/4 = 60) * 8/14 = 34.2857; lat 6.6 + 14*0.6 = 15.0.
    # Tree LL: min(240*.92, 12*24) = 220.8 /3.8 = 58.1 *.5; lat 6.8 + 2*7*0.6 = 15.2 > 15.0.
    (A100, 8, "ring", "ll", 15.0 + 8 / (1000 * 60 * 8 / 14)),
    (A100, 65536, "ring", "ll", 15.0 + 65536 / (1000 * 60 * 8 / 14)),
    # 1 MiB: ring LL 45.58 < ring LL128 40.6 + 2^20/(1000*220.8*8/14) = 48.91
    (A100, 1 << 20, "ring", "ll", 15.0 + (1 << 20) / (1000 * 60 * 8 / 14)),
    # Simple: 240 * 8/14; lat 8.4 + 14*3.4 = 56
    (A100, 64 << 20, "ring", "simple", 56.0 + (64 << 20) / (1000 * 240 * 8 / 14)),
    (A100, 4 << 30, "ring", "simple", 56.0 + (4 << 30) / (1000 * 240 * 8 / 14)),
    # H100 ring LL: min(87.7, 360/4 = 90) = 87.7 * 8/14; NVLS: min(40, 60) * 8 ch * 5/6 = 266.67, lat hwLat NVLS 23.
    (H100, 8, "ring", "ll", 15.0 + 8 / (1000 * 87.7 * 8 / 14)),
    (H100, 65536, "ring", "ll", 15.0 + 65536 / (1000 * 87.7 * 8 / 14)),
    (H100, 1 << 20, "nvls", "simple", 23.0 + (1 << 20) / (1000 * 320 * 5 / 6)),
    (H100, 64 << 20, "nvls", "simple", 23.0 + (64 << 20) / (1000 * 320 * 5 / 6)),
    (H100, 4 << 30, "nvls", "simple", 23.0 + (4 << 30) / (1000 * 320 * 5 / 6)),
    # 2x8 H100: Tree LL busBw min(8*48*.92, 8*41.4 (perChMaxTreeBws Hopper N2)) = 331.2 -> min(/3.8, llMaxBw 39.0
    # (Intel N2)) = 39 * .5; lat 6.8 + 2*(7*0.6 + 1*5.0) = 25.2; treeCorrectionFactor LL[log2(8>>6)=0] = 1.0,
    # [log2(65536>>6)=10] = .6. NVLSTree: min(40, 48) * 8 * 5/6, lat 23 + 2*1*14 = 51.
    (H100x2, 8, "tree", "ll", 25.2 + 8 / (1000 * 19.5 * 1.0)),
    (H100x2, 65536, "tree", "ll", 25.2 + 65536 / (1000 * 19.5 * .6)),
    (H100x2, 1 << 20, "nvls_tree", "simple", 51.0 + (1 << 20) / (1000 * 320 * 5 / 6)),
    (H100x2, 64 << 20, "nvls_tree", "simple", 51.0 + (64 << 20) / (1000 * 320 * 5 / 6)),
    (H100x2, 4 << 30, "nvls_tree", "simple", 51.0 + (4 << 30) / (1000 * 320 * 5 / 6)),
    # 16x8: Tree LL min(288 (8*36.0, Hopper N4), ...)/3.8 capped at llMaxBw 20.4 (Intel N4) -> 10.2;
    # lat 6.8 + 2*(7*0.6 + 4*5.0) = 55.2. Tree LL128: min(288*120/128, 8*29.0) = 232 * .5 * corr[14] .6;
    # lat 14 + 2*(7*1.25 + 4*8.5) = 99.5. NVLSTree: min(40, 48/2) = 24 * 8 * 5/6 = 160, lat 23 + 2*4*14 = 135.
    # Ring Simple: 384 * 128/254; lat (8.4 + 222*3.4 + 32*14) * 1.4 (plateau), nInterSteps 2*nNodes = 32.
    (H100x16, 8, "tree", "ll", 55.2 + 8 / (1000 * 10.2)),
    (H100x16, 65536, "tree", "ll", 55.2 + 65536 / (1000 * 10.2 * .6)),
    (H100x16, 1 << 20, "tree", "ll128", 99.5 + (1 << 20) / (1000 * 116 * .6)),
    (H100x16, 64 << 20, "nvls_tree", "simple", 135.0 + (64 << 20) / (1000 * 160)),
    (H100x16, 4 << 30, "ring", "simple", (8.4 + 222 * 3.4 + 32 * 14) * 1.4 + (4 << 30) / (1000 * 384 * 128 / 254)),
]


@pytest.mark.parametrize("spec,nbytes,algo,proto,us", CASES)
def test_choice_and_predicted_time(spec, nbytes, algo, proto, us):
    ch = tuning(parse_topology(spec)).choose("all-reduce", nbytes)
    assert (ch.algo, ch.proto) == (algo, proto)
    assert ch.predicted == pytest.approx(us * 1e-6, rel=1e-9)
    assert min(t for t in ch.candidates.values() if t is not None) == ch.predicted


def test_channels_trimmed_for_small_messages():
    # getChannnelThreadInfo: nc from 24 (2 x 12, ncclTopoPostset) down while nBytes < nc * 512 threads * 8 * nRanks
    # (ring LL's threadThreshold is NCCL_LL_THREAD_THRESHOLD x nRanks)
    t = tuning(parse_topology(A100))
    assert t.comm_channels == 24
    assert t.choose("all-reduce", 8).nchannels == 1
    assert t.choose("all-reduce", 65536).nchannels == 2  # 65536 < nc*512*8*8 holds down to nc = 2
    assert t.choose("all-reduce", 64 << 20).nchannels == 24


def test_forcing_algorithm_and_protocol():
    topo = parse_topology(H100)
    ch = tuning(topo, algo="ring", proto="simple").choose("all-reduce", 64 << 20)
    assert (ch.algo, ch.proto) == ("ring", "simple")
    assert ch.predicted == pytest.approx((56.0 + (64 << 20) / (1000 * 360 * 8 / 14)) * 1e-6, rel=1e-9)
    assert tuning(topo, proto="^ll").choose("all-reduce", 8).proto != "ll"
    with pytest.raises(RankscopeError):
        tuning(topo, algo="bogus")  # NCCL ignores a name it does not know; we refuse a typo


@pytest.mark.parametrize("topo", ["nodes:1x2,gpu=h100", "nodes:2x1,gpu=h100", "nodes:9x2,gpu=h100"])
def test_no_nvls_on_two_gpus_or_fewer_per_node(topo):
    # src/transport/nvls.cc ncclNvlsInit: `if (!ncclParamNvlsEnable() || gpuCount <= 2) return ncclSuccess;`
    # (nvlsSupport stays 0): neither NVLS nor NVLSTree is a candidate, forced or not
    t = parse_topology(topo)
    assert graphs(cluster_of(t))["nvls"] is None
    forced = tuning(t, algo="nvls,nvls_tree").choose("all-reduce", 64 << 20)
    assert forced.algo == "ring" and "restores the ring" in forced.notes[-1]
    assert graphs(cluster_of(parse_topology("nodes:2x3,gpu=h100")))["nvls"] is not None


def test_what_nccl_does_with_overrides():
    """src/graph/tuning.cc (2.20.3) ncclTopoTuneModel's enable pass, case by case."""
    one, two = parse_topology(H100), parse_topology("nodes:2x8,gpu=h100,nics=8,nic=400Gb/s")
    # NVLSTree is off on one node ("if (comm->nNodes == 1 ...) algoEnable[NCCL_ALGO_NVLS_TREE] = 0"),
    # so ring, tree, NVLS and NVLSTree are all off and NCCL sets ring and tree back to 1
    t = tuning(one, algo="nvls_tree")
    ch = t.choose("all-reduce", 1 << 20)
    assert ch.algo in ("ring", "tree") and "enables ring and tree again" in ch.notes[0]
    assert "leaves nvls_tree enabled" in ch.notes[0]
    # the note names what the set leaves, not a quote: '^ring,tree,nvls_tree' is not what NCCL_ALGO said
    neg = tuning(two, algo="^ring,tree,nvls_tree").choose("all-reduce", 1 << 20)
    assert "leaves collnet_chain, collnet_direct, nvls enabled" in neg.notes[0] and "'" not in neg.notes[0]
    assert ch.predicted == tuning(one, algo="ring,tree").choose("all-reduce", 1 << 20).predicted
    assert {k for k, v in ch.candidates.items() if v is not None} == {
        f"{a}/{p}" for a in ("ring", "tree") for p in ("ll", "ll128", "simple")}
    # across nodes NVLS is off without CollNet ("if (comm->nNodes > 1 ...) algoEnable[NCCL_ALGO_NVLS] = 0")
    assert tuning(two, algo="nvls").choose("all-reduce", 64 << 20).algo in ("ring", "tree")
    assert tuning(two, algo="collnetdirect").choose("all-reduce", 8).algo in ("ring", "tree")
    # NVLS has Simple only: NCCL_ALGO=NVLS, NCCL_PROTO=LL leaves all-reduce no bandwidth, and "at least
    # set ring algo available" restores the ring's bandwidths (ringbdw) for every protocol
    ch = tuning(one, algo="nvls", proto="ll").choose("all-reduce", 64 << 20)
    assert ch.algo == "ring" and "restores the ring" in ch.notes[-1]
    assert ch.candidates["ring/simple"] == tuning(one, algo="ring").choose("all-reduce", 64 << 20).candidates[
        "ring/simple"]
    # NCCL_ALGO=tree leaves all-gather (ring only) nothing: the ring comes back for it, not for all-reduce
    t = tuning(two, algo="tree")
    assert t.choose("all-reduce", 1 << 20).algo == "tree" and not t.choose("all-reduce", 1 << 20).notes
    assert t.choose("all-gather", 1 << 20).algo == "ring"
    # an NCCL_PROTO list sets LL128 to 1: on enabled where its default (2) is off, B200 (compute capability
    # 10.0, unknown to 2.20's "switch (minCompCap)")
    b200 = parse_topology("nodes:1x8,gpu=b200")
    assert tuning(b200).choose("all-reduce", 1 << 20).candidates["ring/ll128"] is None
    forced = tuning(b200, proto="ll128").choose("all-reduce", 1 << 20)
    assert forced.proto == "ll128" and forced.candidates["ring/ll128"] is not None and "LL128" in forced.notes[0]
    assert tuning(b200, proto="^ll").choose("all-reduce", 1 << 20).candidates["ring/ll128"] is not None


def test_only_cluster_topologies():
    with pytest.raises(RankscopeError, match="GPU cluster"):
        tuning(parse_topology("switch:8"))
    assert cluster_of(parse_topology("dgx-h100")).nvls and not cluster_of(parse_topology("dgx-a100")).nvls
