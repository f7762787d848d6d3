"""[Note: the compiled event loop]: the compiled loop runs the same events in the same order as the
Python one, so every op's start and end and every rate period is the same float, on NCCL's
programs (tree, NVLSTree, ring, on even, odd and non-power-of-two node counts), rings and
halving-doubling, zero-time ops, queued connections and reductions that cost time."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rankscope.simulator.collectives import build
from rankscope.simulator.engine_context import Context, RouteTable, collective_durations, compute_durations
from rankscope.simulator.engine_loop import EventLoop, compilable
from rankscope.simulator.nccl import tuning
from rankscope.simulator.nccl.model import nccl_collective, view
from rankscope.simulator.topology import parse_topology


def _both(prog, topo, gamma=0.0):
    out = []
    for compiled in (False, True):
        ctx = Context(prog, RouteTable(prog, topo), gamma, compute_durations(prog, None),
                      collective_durations(prog, topo, gamma))
        loop = EventLoop(ctx, topo.link_bw, compiled=None if compiled else False)
        assert loop.compiled == (compiled and compilable(prog))
        out.append(loop.run())
    one, many = out
    assert np.array_equal(one.start, many.start, equal_nan=True) and np.array_equal(one.end, many.end)
    for a, b in zip(one[2:6], many[2:6]):  # the rate periods: op, t0, t1, bytes, row by row
        assert np.array_equal(a, b)
    return out


@pytest.mark.parametrize("cluster", ["nodes:4x8", "nodes:6x4", "nodes:5x8", "nodes:3x8"])
def test_compiled_equals_python_on_nccl_programs(cluster):
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
def test_compiled_equals_python_on_registry_programs(algo, topo):
    t = parse_topology(topo)
    prog = build("all-reduce", algo, t.nranks, 1 << 20)
    for gamma in (0.0, 1e-11):
        one, many = _both(prog, t, gamma)
        assert np.array_equal(one.start, many.start) and np.array_equal(one.end, many.end)


def test_max_min_rows_equals_the_csr_rounds():
    from rankscope.simulator.maxmin import max_min_csr, max_min_rows

    rng = np.random.default_rng(7)
    for _ in range(200):
        nl, nf, k = int(rng.integers(2, 30)), int(rng.integers(1, 50)), int(rng.integers(1, 4))
        k = min(k, nl)
        rows = np.stack([rng.choice(nl, k, replace=False) for _ in range(nf)]).astype(np.int64)
        bw = rng.choice([1.0, 2.0, 0.5, 3.3], nl) * rng.choice([1.0, 1.0 + 1e-13], nl)
        ptr = np.arange(0, nf * k + 1, k)
        assert np.array_equal(max_min_rows(rows, bw), max_min_csr(ptr, rows.ravel(), bw))


@pytest.mark.parametrize("cluster", ["nodes:4x8,gpu=h100,nics=8,nic=400Gb/s", "nodes:3x4", "ring:8"])
def test_binding_hops_give_the_same_rates(cluster):
    """Links that carry the same routes: the larger one dropped, every max-min rate the same float."""
    from rankscope.simulator.engine_loop import binding_hops
    from rankscope.simulator.maxmin import max_min_csr

    topo = parse_topology(cluster)
    n = topo.nranks
    prog = build("all-reduce", "hd" if cluster.startswith("ring") else "nccl-tree", n, 1 << 20)
    routes = RouteTable(prog, topo)
    ptr, lens, idx = binding_hops(routes, topo.link_bw)
    assert idx.size <= routes.hop_idx.size
    rng = np.random.default_rng(3)
    for _ in range(50):
        slots = rng.choice(lens.size, int(rng.integers(1, 3 * lens.size)), replace=True)
        full = [routes.hop_idx[routes.hop_ptr[s]:routes.hop_ptr[s + 1]] for s in slots]
        kept = [idx[ptr[s]:ptr[s + 1]] for s in slots]
        rates = [max_min_csr(np.concatenate([[0], np.cumsum([len(x) for x in h])]), np.concatenate(h), topo.link_bw)
                 for h in (full, kept)]
        assert np.array_equal(rates[0], rates[1])


@pytest.mark.parametrize("size", [1 << 20, 64 << 20, 1 << 30])
def test_flow_rows_equal_the_csr_flow_sets(size):
    """Routes of at most k binding hops as (F, k) rows (shorter ones padded with a link of infinite
    capacity) give the same floats as the CSR flow sets: NCCL's programs and the ring quotient."""
    from rankscope.simulator.nccl import quotient as q

    topo = parse_topology("nodes:4x8,gpu=h100,nics=8,nic=400Gb/s")
    tune = tuning(topo)
    ch = tune.choose("all-reduce", size)
    progs = [(nccl_collective("all-reduce", topo, size, tune=tune)[0], view(topo, ch.proto, ch.algo))]
    rq = tune.choose("all-reduce", 4 << 30)
    qv = q.quotient_topology(tune.spec)
    progs.append((q.ring_quotient("all-reduce", 4, 8, 4 << 30, rq.nchannels), view(qv, rq.proto, rq.algo)))
    for prog, v in progs:
        out = []
        for rows in (True, False):
            ctx = Context(prog, RouteTable(prog, v), 0.0, compute_durations(prog, None),
                          collective_durations(prog, v, 0.0))
            loop = EventLoop(ctx, v.link_bw, compiled=False)
            assert loop.hop_k > 0
            if not rows:
                loop.hop_k = 0
            out.append(loop.run())
        assert np.array_equal(out[0].start, out[1].start) and np.array_equal(out[0].end, out[1].end)


def test_compiled_equals_python_with_zero_time_ops_and_shared_connections():
    """Allocs and frees (ops that end when they start) among transfers, several messages queued on
    one connection, reductions that cost time."""
    from rankscope.simulator.builder import ProgramBuilder
    from rankscope.simulator.program import Buffer, Init, OpKind

    topo = parse_topology("nodes:2x4")
    n = topo.nranks
    b = ProgramBuilder(n, [Buffer("a", 1 << 20, Init.OWN), Buffer("t", 1 << 16, Init.OWN)])
    b.grid(0, [0, 1 << 19, 1 << 20])
    c0, c1 = b.chunk(0, 0), b.chunk(0, 1)
    for r in range(n):
        b.alloc(r, 1, 0)
    for s in range(3):
        for r in range(n):
            b.transfer(r, (r + 1 + s) % n, c0 if r % 2 else c1, OpKind.REDUCE, 1 + s)
            b.transfer(r, (r + 3) % n, c1, OpKind.COPY, 1 + s)
    for r in range(n):
        b.free(r, 1, 9)
    one, many = _both(b.build(), topo, gamma=1e-11)
    assert np.array_equal(one.start, many.start) and np.array_equal(one.end, many.end)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), topo=st.sampled_from(["ring:6", "switch:5", "nodes:2x3", "nodes:3x2",
                                                             "nodes:2x4,gpu=h100,nics=4,nic=400Gb/s"]),
       gamma=st.sampled_from([0.0, 1e-11]))
def test_compiled_equals_python_on_random_programs(seed, topo, gamma):
    """Random DAGs of transfers (three sizes of chunk, several messages per connection, two
    buffers), allocs and frees, on rings, switches and clusters: times and rate periods bit for bit."""
    from rankscope.simulator.builder import ProgramBuilder
    from rankscope.simulator.program import Buffer, Init, OpKind

    rng = np.random.default_rng(seed)
    t = parse_topology(topo)
    n = t.nranks
    b = ProgramBuilder(n, [Buffer("a", 1 << 20, Init.OWN), Buffer("b", 1 << 18, Init.OWN)])
    b.grid(0, [0, 1 << 10, 1 << 19, 1 << 20])
    b.grid(1, [0, 1 << 18])
    chunks = [b.chunk(0, 0), b.chunk(0, 1), b.chunk(0, 2), b.chunk(1, 0)]
    ops = []
    for _ in range(int(rng.integers(1, 60))):
        deps = sorted(set(rng.choice(len(ops), int(rng.integers(0, min(3, len(ops)) + 1)), replace=False).tolist())) \
            if ops else []
        r = int(rng.integers(0, n))
        if rng.random() < 0.1:
            ops.append(b.alloc(r, 1, 0, deps=[ops[d] for d in deps]))
            continue
        p = int((r + rng.integers(1, n)) % n)
        kind = OpKind.REDUCE if rng.random() < 0.5 else OpKind.COPY
        ops.append(b.transfer(r, p, chunks[int(rng.integers(0, 4))], kind, len(ops), deps=[ops[d] for d in deps]))
    _both(b.build(), t, gamma)
