"""The engine: exact against the closed forms where nothing is shared, real contention where it is."""

import numpy as np
import pytest
from channel_rings import channel_rings
from engine_reference import reference_simulate
from hypothesis import given, settings
from hypothesis import strategies as st

from rankscope.simulator import costs
from rankscope.simulator.builder import ProgramBuilder
from rankscope.simulator.collectives import build
from rankscope.simulator.engine import max_min_rates, simulate
from rankscope.simulator.errors import UsageError
from rankscope.simulator.program import Buffer, Init, OpKind
from rankscope.simulator.provenance import layout
from rankscope.simulator.topology import parse_topology
from rankscope.simulator.traffic import traffic

BW, LAT = 25e9, 5e-6


def _rel(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


@settings(max_examples=40)
@given(n=st.integers(2, 64), s=st.one_of(st.integers(1, 5000), st.integers(1, 1 << 28)),
       topo=st.sampled_from(["switch", "ring"]), gamma=st.sampled_from([0.0, 2e-11]))
def test_uncontended_rings_equal_the_closed_forms(n, s, topo, gamma):
    t = parse_topology(f"{topo}:{n}", bw=BW, lat=LAT)
    alpha = LAT * (2 if topo == "switch" else 1)
    beta = 1 / BW
    for coll, form in (("all-reduce", costs.ring_all_reduce), ("reduce-scatter", costs.ring_reduce_scatter)):
        res = simulate(build(coll, "ring", n, s), t, gamma=gamma)
        assert res.info["method"] == "sweep"
        assert _rel(res.makespan, form(n, s, alpha, beta, gamma)) <= 1e-9
    res = simulate(build("all-gather", "ring", n, s), t, gamma=gamma)
    assert _rel(res.makespan, costs.ring_all_gather(n, s, alpha, beta)) <= 1e-9


@settings(max_examples=25)
@given(n=st.integers(2, 64), s=st.integers(1, 1 << 26), k=st.integers(1, 16))
def test_pipelined_broadcast_equals_its_closed_form(n, s, k):
    t = parse_topology(f"switch:{n}", bw=BW, lat=LAT)
    res = simulate(build("broadcast", "ring", n, s, pieces=k), t)
    assert _rel(res.makespan, costs.pipelined_ring_broadcast(n, s, 2 * LAT, 1 / BW, k)) <= 1e-9


@pytest.mark.parametrize("coll, algo", [("all-reduce", "ring"), ("all-reduce", "hd"), ("broadcast", "ring"),
                                        ("broadcast", "tree"), ("all-gather", "ring")])
def test_event_loop_agrees_with_the_sweep(coll, algo):
    t = parse_topology("switch:8", bw=BW, lat=LAT)
    prog = build(coll, algo, 8, 1_000_003)
    a = simulate(prog, t, gamma=1e-11, method="sweep")
    b = simulate(prog, t, gamma=1e-11, method="events")
    np.testing.assert_allclose(a.start, b.start, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(a.end, b.end, rtol=1e-12, atol=1e-15)
    # same bytes on the same links
    assert np.array_equal(np.bincount(a.link_id, weights=a.link_bytes, minlength=16),
                          np.bincount(b.link_id, weights=b.link_bytes, minlength=16))


def _two_senders(nbytes, second=None):
    """Ranks 0 and 1 send to rank 2 at once: ``nbytes`` each, or ``nbytes - second`` and ``second``."""
    b = ProgramBuilder(3, [Buffer("buf", nbytes, Init.OWN)])
    if second is None:
        c0 = c1 = b.chunk(0, 0)
    else:
        b.grid(0, [0, nbytes - second, nbytes])
        c0, c1 = b.chunk(0, 0), b.chunk(0, 1)
    b.transfer(0, 2, c0, OpKind.REDUCE, 0)
    b.transfer(1, 2, c1, OpKind.REDUCE, 0)
    return b.build()


def test_two_flows_on_one_link_each_get_half_its_bandwidth():
    t = parse_topology("switch:3", bw=BW, lat=LAT)
    res = simulate(_two_senders(10**6), t)
    # both flows cross rank 2's down link at once with equal bytes: uniform sharing, still the sweep
    assert res.info["method"] == "sweep" and res.info["shared_steps"] == 1
    ev = simulate(_two_senders(10**6), t, method="events")
    np.testing.assert_allclose(ev.end, res.end, rtol=1e-12)
    alone = 2 * LAT + 10**6 / BW
    shared = 2 * LAT + 10**6 / (BW / 2)
    assert _rel(res.end[0], shared) < 1e-12 and _rel(res.end[1], shared) < 1e-12
    assert shared - alone == pytest.approx(10**6 / BW)
    # the down link of rank 2 (sw -> 2) carried both flows at once, 25 GB/s in total
    down = [i for i, name in enumerate(t.link_names) if name.endswith("->2")][0]
    rows = res.link_id == down
    assert res.link_bytes[rows].sum() == 2 * 10**6
    assert np.all(res.link_t0[rows] == 2 * LAT)


def test_max_min_fairness_gives_leftover_to_unconstrained_flows():
    # flows 0 and 1 share link 0 (10 B/s); flow 1 also crosses link 1 (2 B/s): max-min gives 2 and 8
    rates = max_min_rates(np.array([[0, -1], [0, 1]]), np.array([10.0, 2.0]))
    assert rates.tolist() == [8.0, 2.0]


@pytest.mark.parametrize("n", [4, 8, 16])
def test_parameter_server_incast_costs_n_over_2_times_the_ring(n):
    """switch:N, 64 MiB. The ring's bandwidth term is 2S(N-1)/N·β. The parameter server first pulls
    (N-1)·S through rank 0's one down link (incast: (N-1)/(2(N-1)/N) = N/2 times the ring's whole
    bandwidth term), then pushes (N-1)·S back through its up link: N times in all."""
    s = 64 << 20
    t = parse_topology(f"switch:{n}", bw=BW, lat=0.0)
    ring = simulate(build("all-reduce", "ring", n, s), t).makespan
    ps_prog = build("all-reduce", "ps", n, s)
    ps = simulate(ps_prog, t)
    incast = ps.end[ps_prog.step == 0].max()
    assert _rel(ring, 2 * s * (n - 1) / n / BW) < 1e-9
    assert incast / ring == pytest.approx(n / 2, rel=1e-9)
    assert ps.makespan / ring == pytest.approx(n, rel=1e-9)


def test_hierarchical_beats_the_flat_ring_when_nics_are_the_bottleneck():
    t = parse_topology("nodes:4x8", nic_bw=12e9)  # NVSwitch 370.8 GB/s inside, 12 GB/s NICs
    s = 256 << 20
    flat = simulate(build("all-reduce", "ring", 32, s), t).makespan
    hier = simulate(build("all-reduce", "hier", 32, s, nodes=4), t).makespan
    # every flat-ring step waits for the slowest hop, a NIC; the hierarchical ring sends only
    # 2(S/G)(M-1)/M per rank through the NICs
    assert flat / hier > 4, (hier, flat)
    # with NICs as fast as NVLink both move 2S(N-1)/N per rank: only the latency (62 steps
    # against 20) still separates them
    fast = parse_topology("nodes:4x8", nic_bw=370.8e9, nic_lat=0.85e-6)
    flat = simulate(build("all-reduce", "ring", 32, s), fast).makespan
    hier = simulate(build("all-reduce", "hier", 32, s, nodes=4), fast).makespan
    hop = sum(fast.link_lat[k] for k in fast.route(0, 1))  # one step's latency, inside or across nodes
    assert hop == pytest.approx(sum(fast.link_lat[k] for k in fast.route(7, 8)), rel=1e-12)
    # the same bandwidth term; the flat ring pays 2(32-1) = 62 step latencies, the hierarchical one
    # (8-1) + 2(4-1) + (8-1) = 20 (reduce-scatter in nodes, all-reduce across, all-gather in nodes)
    assert flat - hier == pytest.approx(42 * hop, rel=1e-9)


def test_compute_overlaps_communication_and_queues_on_its_lane():
    b = ProgramBuilder(2, [Buffer("buf", 10**6, Init.OWN)])
    c0 = b.compute(0, 0, seconds=1e-3, label="bwd 1")
    c1 = b.compute(0, 0, seconds=1e-3, label="bwd 0")
    x = b.transfer(0, 1, b.chunk(0, 0), OpKind.REDUCE, 1, deps=[c0])
    prog = b.build()
    res = simulate(prog, parse_topology("switch:2", bw=BW, lat=LAT))
    assert res.start[c1] == pytest.approx(1e-3)          # second compute waits for the lane
    assert res.start[x] == pytest.approx(1e-3)           # the transfer overlaps it
    assert res.end[x] < res.end[c1]


@pytest.mark.parametrize("algo, topo, method", [("ps", "switch:8", "auto"), ("hd-far", "ring:12", "events"),
                                               ("hd", "nodes:2x4", "events")])
def test_determinism_identical_arrays_twice(algo, topo, method):
    t = parse_topology(topo)
    prog = build("all-reduce", algo, t.nranks, 12345)
    a, b = simulate(prog, t, method=method), simulate(prog, t, method=method)
    for f in ("start", "end", "lane", "link_id", "link_t0", "link_t1", "link_bytes"):
        assert np.array_equal(getattr(a, f), getattr(b, f))


def test_bad_requests():
    with pytest.raises(UsageError, match="has 4 ranks, the program 8"):
        simulate(build("all-reduce", "ring", 8, 100), parse_topology("switch:4"))
    with pytest.raises(UsageError, match="gamma"):
        simulate(build("all-reduce", "ring", 4, 100), parse_topology("switch:4"), gamma=-1)
    with pytest.raises(UsageError, match="not exact"):  # two flows of unequal size share a link
        simulate(_two_senders(100, 60), parse_topology("switch:3"), method="sweep")


@pytest.mark.parametrize("coll, algo, n, topo, s", [
    ("all-reduce", "hd-far", 16, "ring:16", 1 << 20), ("all-reduce", "hd", 12, "ring:12", 1_000_003),
    ("all-reduce", "ps", 8, "switch:8", 12345), ("all-reduce", "hd-far", 24, "nodes:3x8", 1 << 22),
    ("broadcast", "tree", 16, "ring:16", 77777), ("all-reduce", "hier", 16, "ring:16", 1 << 20),
    ("all-reduce", "hd", 13, "switch:13", 99999), ("broadcast", "ring", 9, "ring:9", 1 << 16)])
def test_event_loop_equals_the_previous_engine_on_contended_programs(coll, algo, n, topo, s):
    """The event-loop object against the loop it replaced (tests/engine_reference.py, verbatim)."""
    prog = build(coll, algo, n, s, nodes=2 if algo == "hier" else None)
    t = parse_topology(topo)
    new = simulate(prog, t, gamma=1e-11, method="events")
    start, end, seg_op, seg_t0, seg_t1, seg_bytes = reference_simulate(prog, t, gamma=1e-11)
    np.testing.assert_allclose(new.start, start, rtol=1e-9, atol=0)
    np.testing.assert_allclose(new.end, end, rtol=1e-9, atol=0)
    # the same rate periods: rows per (link, t0, t1, bytes) as a multiset
    hops = [t.route(int(prog.rank[f]), int(prog.peer[f])) for f in seg_op]
    want = sorted((int(h), a, b, c) for hs, a, b, c in zip(hops, seg_t0, seg_t1, seg_bytes) for h in hs)
    got = sorted(zip(new.link_id.tolist(), new.link_t0.tolist(), new.link_t1.tolist(), new.link_bytes.tolist()))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g[0] == w[0] and g[3] == w[3] and _rel(g[1], w[1]) <= 1e-9 and _rel(g[2], w[2]) <= 1e-9


@pytest.mark.parametrize("n", [1, 2, 4, 8, 16, 32, 64])
@pytest.mark.parametrize("algo, order", [("hd", "near"), ("hd-far", "far")])
def test_halving_doubling_on_a_ring_equals_the_closed_form_of_its_order(n, algo, order):
    """ring:N: the partner at mask m is m hops away and m flows share each hop. MPICH's order (nearest
    partner, half the buffer first) costs 2(N-1)α + log2(N)·Sβ; far-first 2(N-1)α + 2S(N²-1)/(3N)·β."""
    s, gamma = n * 3 * 4096, 2e-11
    res = simulate(build("all-reduce", algo, n, s), parse_topology(f"ring:{n}", bw=BW, lat=LAT), gamma=gamma)
    want = costs.halving_doubling_all_reduce_on_ring(n, s, LAT, 1 / BW, gamma, order=order)
    assert _rel(res.makespan, want) <= 1e-9
    if n > 2:
        gamma_part = s * (n - 1) / n * gamma
        base = {"near": 2 * (n - 1) * LAT + np.log2(n) * s / BW,
                "far": 2 * (n - 1) * LAT + 2 * s * (n * n - 1) / (3 * n) / BW}[order]
        assert _rel(want, base + gamma_part) <= 1e-12


def test_the_orders_differ_on_ring_1024_as_the_issue_measured():
    """The figures of issue 19 from the closed forms (64 MiB, 25 GB/s, 5 us): 37.07 ms and 1.84 s."""
    s = 64 << 20
    near = costs.halving_doubling_all_reduce_on_ring(1024, s, LAT, 1 / BW, order="near")
    far = costs.halving_doubling_all_reduce_on_ring(1024, s, LAT, 1 / BW, order="far")
    assert round(near * 1e3, 2) == 37.07 and round(far, 2) == 1.84


@pytest.mark.parametrize("n", range(1, 65))
def test_halving_doubling_on_a_switch_equals_the_closed_form_for_both_orders(n):
    """switch:N is non-blocking: both orders cost the same. Exact when p divides S (with the fold for
    N not a power of two: MPICH's blocking order keeps the fold-in off the first exchange's links);
    for N a power of two also with uneven cells."""
    p = 1 << (n.bit_length() - 1)
    t = parse_topology(f"switch:{n}", bw=BW, lat=LAT)
    sizes = [p * 5000] + ([1_000_003, 5] if n == p else [])
    for s in sizes:
        want = costs.closed_form("all-reduce", "hd", n, s, 2 * LAT, 1 / BW, 2e-11)
        for algo in ("hd", "hd-far"):
            res = simulate(build("all-reduce", algo, n, s), t, gamma=2e-11)
            assert _rel(res.makespan, want) <= 1e-9, (algo, s)


def test_channel_rings_program_is_k_rings():
    prog = channel_rings(6, 6000 * 4 + 5, 4).validate()
    lay = layout(prog)
    for b in range(4):  # every channel's buffer ends all-reduced
        assert (lay.bits[b] == lay.full_mask()).all()
    assert traffic(prog).sent.sum() == 2 * 5 * (6000 * 4 + 5)
    assert prog.n_steps == 10 and prog.n_ops == 4 * 10 * 6


@pytest.mark.parametrize("topo, n, k, s", [("ring:8", 8, 4, 8 * 4 * 1000), ("switch:8", 8, 16, 8 * 16 * 512),
                                           ("nodes:2x4", 8, 3, 8 * 3 * 777), ("nodes:3x4", 12, 8, 12 * 8 * 64)])
def test_uniform_sharing_stays_on_the_sweep_and_equals_the_event_loop(topo, n, k, s):
    """k channel rings: k equal flows on every hop, 1/k each. The sweep keeps them vectorised and
    gives the event loop's max-min answer; with k = 1 the step is the plain ring."""
    t = parse_topology(topo)
    prog = channel_rings(n, s, k)
    fast = simulate(prog, t, gamma=1e-11)
    assert fast.info["method"] == "sweep" and fast.info["shared_steps"] == prog.n_steps
    slow = simulate(prog, t, gamma=1e-11, method="events")
    np.testing.assert_allclose(fast.start, slow.start, rtol=1e-9, atol=0)
    np.testing.assert_allclose(fast.end, slow.end, rtol=1e-9, atol=0)
    nl = t.link_bw.size
    np.testing.assert_allclose(np.bincount(fast.link_id, fast.link_bytes, nl), np.bincount(slow.link_id, slow.link_bytes, nl))
    # on ring:N and switch:N every hop of a step carries k flows of S/(kN): the ring's closed form
    if topo.startswith(("ring", "switch")):
        alpha = LAT * (2 if topo.startswith("switch") else 1)
        assert _rel(fast.makespan, costs.ring_all_reduce(n, s, alpha, 1 / BW, 1e-11 / k)) <= 1e-9


def test_unequal_channels_leave_the_sweep_for_the_event_loop():
    """Channels of unequal size on one link are not uniform: the smaller drains first and the
    others speed up. The sweep refuses; auto runs the event loop."""
    t = parse_topology("ring:6")
    prog = channel_rings(6, 6 * 1000 * 2 + 1, 2)  # channel 0: 6001 bytes, channel 1: 6000
    with pytest.raises(UsageError, match="not exact"):
        simulate(prog, t, method="sweep")
    assert simulate(prog, t).info["method"] == "events"
