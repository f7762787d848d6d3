"""The node-shift quotient of NCCL's ring ([Note: the node-shift quotient]) times the whole ring
exactly: on nodes:4x8 for every size of a sweep 8 B .. 1 GiB, and for every collective on 6 nodes."""

from __future__ import annotations

import pytest

from rankscope.simulator.nccl import cluster_of, nccl_collective, simulate_nccl
from rankscope.simulator.nccl.quotient import applies, quotient_topology, ring_quotient
from rankscope.simulator.sweep import default_sizes, run_sweep
from rankscope.simulator.topology import parse_topology

H100x4 = "nodes:4x8,gpu=h100,nics=8,nic=400Gb/s"


def _both(topo, coll, size):
    prog, ch = nccl_collective(coll, topo, size, algo="ring")
    spec = cluster_of(topo)
    q = ring_quotient(coll, spec.nodes, spec.gpus, size, ch.nchannels, prog.meta)
    assert q.nranks == 2 * spec.gpus and q.n_ops * spec.nodes == prog.n_ops * 2
    return simulate_nccl(prog, topo)[2], simulate_nccl(q, quotient_topology(spec))[2]


def test_quotient_equals_the_whole_ring_for_every_size():
    topo = parse_topology(H100x4)
    spec = cluster_of(topo)
    used = 0
    for size in default_sizes(8, 1 << 30):
        ch = nccl_collective("all-reduce", topo, size, algo="ring")[1]
        if not applies(spec.nodes, spec.gpus, size, ch.nchannels):
            continue
        full, quot = _both(topo, "all-reduce", size)
        assert quot == pytest.approx(full, rel=1e-9, abs=0)
        used += 1
    assert used >= 20  # every power of two from N x channels up


@pytest.mark.parametrize("coll", ["all-reduce", "reduce-scatter", "all-gather"])
@pytest.mark.parametrize("size", [24 * 6 * 4, 3 << 20, 3 << 28])
def test_quotient_for_every_collective_on_six_nodes(coll, size):
    full, quot = _both(parse_topology("nodes:6x4,gpu=a100,nics=2"), coll, size)
    assert quot == pytest.approx(full, rel=1e-9, abs=0)


def test_applies_only_where_exact_and_the_sweep_uses_it():
    assert applies(4, 8, 1 << 20, 16) and applies(128, 8, 1 << 34, 16)
    assert not applies(2, 8, 1 << 20, 16)  # two nodes: nothing to fold
    assert not applies(5, 8, 1 << 20, 16)  # odd: a shift by two nodes does not close the ring
    assert not applies(4, 8, (1 << 20) + 8, 16)  # unequal sub-slices: the owner of a shard matters
    topo = parse_topology(H100x4)
    rows = run_sweep("all-reduce", ["nccl"], 32, [1 << 30, (1 << 30) + 256], topo, progress=False, nccl_algo="ring")
    assert rows[0].method.endswith("quotient") and not rows[1].method.endswith("quotient")
    for r in rows:
        prog, _ = nccl_collective("all-reduce", topo, r.size, algo="ring")
        assert r.seconds == pytest.approx(simulate_nccl(prog, topo)[2], rel=1e-9, abs=0)
