"""[Note: the rail-rotation quotient] and [Note: the cluster's unique paths]: one orbit of the GPU
rotation times NCCL's tree and NVLSTree as the whole program does; the written-down routes are the
search's."""

from __future__ import annotations

import numpy as np
import pytest

from rankscope.simulator import routing
from rankscope.simulator.cluster_routes import cluster_routes, unique_paths
from rankscope.simulator.nccl import rotation
from rankscope.simulator.nccl import sweep_fast as sf
from rankscope.simulator.nccl.model import nccl_collective, simulate_nccl, tuning, view
from rankscope.simulator.topology import parse_topology

CLUSTERS = ["nodes:4x8,gpu=h100,nics=8,nic=400Gb/s", "nodes:3x8,gpu=h100,nics=8,nic=400Gb/s",
            "nodes:6x8,gpu=h100,nics=8,nic=400Gb/s", "nodes:5x8,gpu=a100,nics=4,nic=200Gb/s",
            "nodes:4x4,gpu=h100,nics=4,nic=400Gb/s"]
SIZES = [1 << k for k in range(12, 31, 2)] + [3 << 20, 5 << 22, 12 << 20]


@pytest.mark.parametrize("cluster", CLUSTERS)
@pytest.mark.parametrize("forced", [None, "tree"])
def test_the_rotation_quotient_times_the_whole_program(cluster, forced):
    topo = parse_topology(cluster)
    tune = tuning(topo, forced)
    views, used = {}, set()
    for size in SIZES:
        run = sf._Run("all-reduce", size, topo, tune, 0.0, views)
        if "rotation" not in run.method:
            continue
        used.add(run.choice.algo)
        prog, ch = nccl_collective("all-reduce", topo, size, tune=tune)
        _, _, whole = simulate_nccl(prog, topo, {}, max_link_rows=0)
        assert run.seconds == pytest.approx(whole, rel=1e-9, abs=0), (size, ch)
    if cluster.startswith(("nodes:4x8", "nodes:6x8")):
        assert used == ({"tree"} if forced else {"tree", "nvls_tree"})


def test_the_rotation_needs_equal_lanes_and_an_automorphism():
    topo = parse_topology("nodes:4x8,gpu=h100,nics=8,nic=400Gb/s")
    tune = tuning(topo, "nvls_tree")
    spec = tune.spec
    assert rotation.shift_of(tune.choose("all-reduce", 1 << 30), spec, tune.comm_channels) == 2
    assert rotation.shift_of(tune.choose("all-reduce", (1 << 30) + 4), spec, tune.comm_channels) == 0  # shards differ
    tree = tuning(topo, "tree")
    assert rotation.shift_of(tree.choose("all-reduce", 64 << 20), spec, tree.comm_channels) == 1
    assert rotation.shift_of(tree.choose("all-reduce", 4096), spec, tree.comm_channels) == 0  # 1 channel: no orbit
    orbits = rotation.link_orbits(topo, spec, 1)
    assert orbits is not None and np.unique(orbits).size == topo.link_bw.size // 8
    d = topo.to_dict()
    d["links"][0][2] *= 2  # GPU 0's NVSwitch link faster than the others': no longer a symmetry
    from rankscope.simulator.topology import Topology

    assert rotation.link_orbits(Topology.from_dict(d), spec, 1) is None


@pytest.mark.parametrize("cluster", CLUSTERS + ["nodes:5x2,gpu=h100"])
def test_written_down_routes_are_the_searchs(cluster):
    topo = parse_topology(cluster)
    for v in [topo] + [view(topo, p, a) for p in ("ll", "ll128", "simple") for a in ("ring", "nvls_tree")]:
        ids = unique_paths(v)
        assert ids is not None
        n = v.nranks
        s, d = (x.ravel() for x in np.meshgrid(np.arange(n), np.arange(n), indexing="ij"))
        s, d = s[s != d], d[s != d]
        ok, hops = cluster_routes(ids, s, d)
        assert ok.any() and not ok.all()
        ref, _ = v.routes(s[ok], d[ok])
        ref = np.asarray(ref)
        assert np.array_equal(hops[:, :ref.shape[1]], ref) and (hops[:, ref.shape[1]:] == -1).all()
        got, lat = routing.routes(v, s, d)
        want, wlat = v.routes(s, d)
        assert np.array_equal(np.asarray(got)[:, :np.asarray(want).shape[1]], np.asarray(want))
        assert np.array_equal(lat, wlat)


def test_no_written_down_routes_where_a_path_may_tie():
    topo = parse_topology("nodes:2x8,gpu=h100,nics=8,nic=400Gb/s")
    d = topo.to_dict()
    for link in d["links"]:
        if "nvswitch" in f"{link[0]}{link[1]}":
            link[3] = 1e-3  # NVSwitch links slower than the NICs: the unique-path condition fails
    from rankscope.simulator.topology import Topology

    assert unique_paths(Topology.from_dict(d)) is None
    assert unique_paths(parse_topology("dgx-h100")) is None  # not a cluster preset link for link


def test_no_written_down_routes_where_one_nic_is_slower():
    """One GPU's NIC slower than the others': its shortest path to its rail peer goes through a
    neighbour's NIC (found by the review of this code), so nothing is written down."""
    from rankscope.simulator.topology import Topology

    d = parse_topology("nodes:2x4,gpu=h100,nics=4,nic=400Gb/s").to_dict()
    for link in d["links"]:
        if (link[0], link[1]) in ((0, "nic0.0"), ("nic0.0", "fabric")):
            link[3] = 1e-3
    t = Topology.from_dict(d)
    assert unique_paths(t) is None
    hops, _ = routing.routes(t, np.array([0]), np.array([4]))
    assert [t.link_names[i] for i in hops[0] if i >= 0] == [t.link_names[i] for i in t.route(0, 4)]
    assert "nvswitch0->1" in [t.link_names[i] for i in hops[0] if i >= 0]
