"""Size groups ([Note: size groups]): the grouped sweep equals a simulation of every size."""

from __future__ import annotations

import numpy as np
import pytest

from rankscope.simulator.nccl.sweep_fast import _same_order
from rankscope.simulator.sweep import default_sizes, run_sweep
from rankscope.simulator.topology import parse_topology


def test_grouped_sweep_equals_every_size_on_4x8():
    topo = parse_topology("nodes:4x8,gpu=h100,nics=8,nic=400Gb/s")
    sizes = default_sizes(8, 1 << 30)
    grouped = run_sweep("all-reduce", ["nccl"], 32, sizes, topo, progress=False)
    every = run_sweep("all-reduce", ["nccl"], 32, sizes, topo, progress=False, groups=False)
    assert [r.choice for r in grouped] == [r.choice for r in every]
    for g, e in zip(grouped, every):
        assert g.seconds == pytest.approx(e.seconds, rel=1e-9, abs=0)
        assert "interpolated" not in e.method
    inside = [r.size for r in grouped if r.method.endswith("interpolated")]
    assert inside == [16 << i for i in range(8)]  # tree/LL on 1 channel, 8 B .. 4 KiB: ends simulated


def test_the_certificate_wants_one_order_ties_alike():
    a = np.array([0.0, 1.0, 1.0, 3.0])
    assert _same_order(a, a * 2 + 1, 3.0)
    assert not _same_order(a, np.array([0.0, 1.0, 1.5, 3.0]), 3.0)  # a tie at one end only
    assert not _same_order(a, np.array([0.0, 2.0, 2.0, 1.0]), 3.0)  # an order that flips


def test_groups_in_parallel_give_the_serial_rows(monkeypatch):
    """[Note: groups in parallel]: forked workers, the same rows (forced on a small cluster)."""
    from rankscope.simulator.nccl import sweep_fast

    monkeypatch.setattr(sweep_fast, "PARALLEL_MIN", 0)
    topo = parse_topology("nodes:4x8,gpu=h100,nics=8,nic=400Gb/s")
    sizes = default_sizes(8, 1 << 30)
    serial = run_sweep("all-reduce", ["nccl"], 32, sizes, topo, progress=False)
    took: list = []
    parallel = run_sweep("all-reduce", ["nccl"], 32, sizes, topo, progress=False, jobs=2, timings=took)
    assert [(r.size, r.seconds, r.method, r.choice) for r in parallel] == \
           [(r.size, r.seconds, r.method, r.choice) for r in serial]
    assert len(took) == len(sizes) and all(t >= 0 for t in took)
