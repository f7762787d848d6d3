"""[Note: batched handlers]: the batched event loop runs the same events in the same order as the
one-at-a-time handlers, so every op's start and end is the same float, on NCCL's programs (tree,
NVLSTree, ring, on even, odd and non-power-of-two node counts), rings and halving-doubling."""

from __future__ import annotations

import numpy as np
import pytest

from rankscope.simulator.collectives import build
from rankscope.simulator.engine_batch import batchable
from rankscope.simulator.engine_context import Context, RouteTable, collective_durations, compute_durations
from rankscope.simulator.engine_loop import EventLoop
from rankscope.simulator.nccl import tuning
from rankscope.simulator.nccl.model import nccl_collective, view
from rankscope.simulator.topology import parse_topology


def _both(prog, topo, gamma=0.0):
    out = []
    for batched in (False, True):
        ctx = Context(prog, RouteTable(prog, topo), gamma, compute_durations(prog, None),
                      collective_durations(prog, topo, gamma))
        loop = EventLoop(ctx, topo.link_bw, batched=None if batched else False)
        assert loop.batched == (batched and batchable(prog))
        out.append(loop.run())
    return out


@pytest.mark.parametrize("cluster", ["nodes:4x8", "nodes:6x4", "nodes:5x8", "nodes:3x8"])
def test_batched_equals_one_at_a_time_on_nccl_programs(cluster):
    topo = parse_topology(f"{cluster},gpu=h100,nics={cluster[-1]},nic=400Gb/s")
    tune = tuning(topo)
    algos = set()
    for size in (8, 4096, 65536, 1 << 20, 8 << 20, 64 << 20, 1 << 30):
        prog, ch = nccl_collective("all-reduce", topo, size, tune=tune)
        algos.add(ch.algo)
        one, many = _both(prog, view(topo, ch.proto, ch.algo))
        assert np.array_equal(one.start, many.start) and np.array_equal(one.end, many.end), (size, ch)
        assert np.array_equal(one.seg_t0, many.seg_t0) and np.array_equal(one.seg_bytes, many.seg_bytes)
    assert "tree" in algos and (cluster.endswith("x4") or "nvls_tree" in algos)


@pytest.mark.parametrize("algo,topo", [("ring", "ring:16"), ("hd-far", "ring:16"), ("hd", "switch:8"),
                                       ("nccl-tree", "nodes:4x4")])
def test_batched_equals_one_at_a_time_on_registry_programs(algo, topo):
    t = parse_topology(topo)
    prog = build("all-reduce", algo, t.nranks, 1 << 20)
    for gamma in (0.0, 1e-11):
        one, many = _both(prog, t, gamma)
        assert np.array_equal(one.start, many.start) and np.array_equal(one.end, many.end)
