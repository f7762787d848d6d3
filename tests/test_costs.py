"""The closed-form costs: textbook numbers, the exact (uneven-chunk) variants, nccl-tests bandwidths."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rankscope.simulator import costs
from rankscope.simulator.collectives import build
from rankscope.simulator.costs import (
    algbw,
    binomial_tree_broadcast,
    busbw,
    closed_form,
    halving_doubling_all_reduce,
    hierarchical_all_reduce,
    parameter_server_all_reduce,
    pipelined_ring_broadcast,
    ring_all_gather,
    ring_all_reduce,
    ring_reduce_scatter,
)
from rankscope.simulator.errors import UsageError
from rankscope.simulator.program import OpKind

ranks = st.integers(1, 64)
sizes = st.one_of(st.integers(0, 300), st.integers(0, 10**10))
secs = st.floats(0, 1e-3, allow_nan=False)
per_byte = st.floats(0, 1e-8, allow_nan=False)

A, B, G = 5e-6, 1 / 25e9, 1 / 100e9
MiB = 1 << 20


# -- known numbers, computed by hand --------------------------------------------------------------
def test_ring_all_reduce_known_number():
    # p=8, n=8 MiB: 14 steps of 5 us, each rank sends 2·8MiB·7/8 = 14 MiB at 25 GB/s
    expect = 14 * 5e-6 + 14_680_064 / 25e9  # 7e-5 + 5.8720256e-4
    assert ring_all_reduce(8, 8 * MiB, A, B) == pytest.approx(6.5720256e-4, rel=1e-12)
    assert ring_all_reduce(8, 8 * MiB, A, B) == pytest.approx(expect, rel=1e-12)
    # with gamma: + 7 MiB of reduction at 100 GB/s
    assert ring_all_reduce(8, 8 * MiB, A, B, G) == pytest.approx(expect + 7_340_032 / 100e9, rel=1e-12)


def test_other_known_numbers():
    n = 8 * MiB
    assert ring_reduce_scatter(8, n, A, B) == pytest.approx(7 * 5e-6 + 7_340_032 / 25e9, rel=1e-12)
    assert ring_all_gather(8, n, A, B) == pytest.approx(7 * 5e-6 + 7_340_032 / 25e9, rel=1e-12)
    # Rabenseifner on 8: 6 messages, same bytes as the ring
    assert halving_doubling_all_reduce(8, n, A, B) == pytest.approx(6 * 5e-6 + 14_680_064 / 25e9)
    # 9 ranks: the 8-rank cost plus fold-in and fold-out of the whole buffer
    assert halving_doubling_all_reduce(9, n, A, B, G) == pytest.approx(
        halving_doubling_all_reduce(8, n, A, B, G) + 2 * (A + n * B) + n * G, rel=1e-12)
    # binomial tree on 8 (and on 5: still 3 rounds)
    assert binomial_tree_broadcast(8, n, A, B) == pytest.approx(3 * (A + n / 25e9))
    assert binomial_tree_broadcast(5, n, A, B) == binomial_tree_broadcast(8, n, A, B)
    # pipeline of 4 pieces over 8 ranks: 10 steps of 2 MiB
    assert pipelined_ring_broadcast(8, n, A, B, 4) == pytest.approx(10 * (A + 2 * MiB / 25e9))
    # parameter server: 7 buffers in through one link, reduce 7, 7 buffers out
    assert parameter_server_all_reduce(8, n, A, B, G) == pytest.approx(
        2 * A + 14 * n * B + 7 * n * G, rel=1e-12)
    assert parameter_server_all_reduce(8, n, A, B, incast=False) == pytest.approx(
        2 * A + 8 * n * B, rel=1e-12)
    # 2 nodes x 4: RS over 4 on 2 MiB chunks, AR over 2 on 1 MiB, AG over 4
    intra_a, intra_b, inter_a, inter_b = 1e-6, 1 / 300e9, 1e-5, 1 / 25e9
    expect = 2 * 3 * (intra_a + 2 * MiB * intra_b) + 2 * (inter_a + MiB * inter_b)
    assert hierarchical_all_reduce(2, 4, n, intra_a, intra_b, inter_a, inter_b) == pytest.approx(expect)


def test_uneven_known_number():
    # n = 10 over p = 4: chunks 3,3,2,2 -> every ring step is set by a 3-byte chunk
    assert ring_all_reduce(4, 10, 1.0, 1.0) == 6 * (1 + 3)
    assert ring_all_reduce(4, 10, 1.0, 1.0, exact=False) == pytest.approx(6 + 2 * 10 * 3 / 4)
    # pieces 2,1,1,1 over a 3-rank chain: steps led by 2,2,1,1,1
    assert pipelined_ring_broadcast(3, 5, 0.0, 1.0, 4) == 7
    # 6 bytes in 4 cells 2,2,1,1: halving moves 4 then 2, doubling 2 then 4
    assert halving_doubling_all_reduce(4, 6, 0.0, 1.0) == 12


def test_one_rank_costs_nothing():
    for f in (ring_reduce_scatter, ring_all_reduce, halving_doubling_all_reduce,
              parameter_server_all_reduce):
        assert f(1, 123, A, B, G) == 0.0
    assert ring_all_gather(1, 123, A, B) == 0.0
    assert binomial_tree_broadcast(1, 123, A, B) == 0.0
    assert pipelined_ring_broadcast(1, 123, A, B, 7) == 0.0
    assert hierarchical_all_reduce(1, 1, 123, A, B, A, B, G) == 0.0
    for coll, algo in (("all-reduce", "ring"), ("all-reduce", "hd"), ("all-reduce", "ps"),
                       ("reduce-scatter", "ring"), ("all-gather", "ring"),
                       ("broadcast", "ring"), ("broadcast", "tree")):
        assert closed_form(coll, algo, 1, 123, A, B, G) == 0.0
    assert closed_form("all-reduce", "hier", 1, 123, A, B, G, nodes=1) == 0.0


# -- exact vs textbook ----------------------------------------------------------------------------
@settings(max_examples=200)
@given(p=ranks, q=st.integers(0, 10**8), a=secs, b=per_byte, g=per_byte)
def test_exact_equals_textbook_when_p_divides_n(p, q, a, b, g):
    n = p * q
    assert ring_reduce_scatter(p, n, a, b, g) == ring_reduce_scatter(p, n, a, b, g, exact=False)
    assert ring_all_gather(p, n, a, b) == ring_all_gather(p, n, a, b, exact=False)
    assert ring_all_reduce(p, n, a, b, g) == ring_all_reduce(p, n, a, b, g, exact=False)
    assert pipelined_ring_broadcast(5, n, a, b, p) == pipelined_ring_broadcast(5, n, a, b, p, exact=False)
    pp = 1 << (p.bit_length() - 1)
    m = pp * q
    assert halving_doubling_all_reduce(p, m, a, b, g) == halving_doubling_all_reduce(
        p, m, a, b, g, exact=False)


@settings(max_examples=300)
@given(p=ranks, n=sizes, a=secs, b=per_byte, g=per_byte)
def test_exact_is_at_least_textbook_and_within_the_ceil_effect(p, n, a, b, g):
    eps = math.ceil(n / p) - n / p  # < 1 byte per step
    tol = 1e-12 * (1 + ring_all_reduce(p, n, a, b, g))
    for exact_t, book_t, slack in (
        (ring_reduce_scatter(p, n, a, b, g), ring_reduce_scatter(p, n, a, b, g, exact=False),
         (p - 1) * eps * (b + g)),
        (ring_all_gather(p, n, a, b), ring_all_gather(p, n, a, b, exact=False), (p - 1) * eps * b),
        (ring_all_reduce(p, n, a, b, g), ring_all_reduce(p, n, a, b, g, exact=False),
         (p - 1) * eps * (2 * b + g)),
    ):
        assert book_t - tol <= exact_t <= book_t + slack + tol
    k = p  # pieces; exact stays below the brief's (p+k-2)(α + ceil(n/k)β)
    ex = pipelined_ring_broadcast(7, n, a, b, k)
    bk = pipelined_ring_broadcast(7, n, a, b, k, exact=False)
    assert bk - tol <= ex <= bk + (7 + k - 2) * eps * b + tol
    assert ex <= (7 + k - 2) * (a + math.ceil(n / k) * b) + tol


@settings(max_examples=300)
@given(p=ranks, n=sizes, a=secs, b=per_byte, g=per_byte)
def test_all_reduce_is_reduce_scatter_then_all_gather(p, n, a, b, g):
    for exact in (True, False):
        assert ring_all_reduce(p, n, a, b, g, exact=exact) == (
            ring_reduce_scatter(p, n, a, b, g, exact=exact) + ring_all_gather(p, n, a, b, exact=exact))


@settings(max_examples=100)
@given(m=st.integers(1, 8), g=st.integers(1, 8), n=sizes, a=secs, b=per_byte, gg=per_byte)
def test_hierarchical_degenerates_to_a_flat_ring(m, g, n, a, b, gg):
    assert hierarchical_all_reduce(1, g, n, a, b, 1.0, 1.0, gg) == ring_all_reduce(g, n, a, b, gg)
    assert hierarchical_all_reduce(m, 1, n, 1.0, 1.0, a, b, gg) == pytest.approx(
        ring_all_reduce(m, n, a, b, gg), rel=1e-12, abs=1e-300)


# -- the exact variants are the step-synchronous time of the programs the builders make -----------
def _rounds_time(prog, alpha, beta, gamma, *, inter=None, g=None):
    """Sum over steps of the slowest op of the step: α + bytes·β (+ bytes·γ when it reduces)."""
    nb = prog.op_bytes.astype(np.float64)
    a = np.full(prog.n_ops, alpha)
    b = np.full(prog.n_ops, beta)
    if inter is not None:
        cross = prog.rank // g != prog.peer // g
        a[cross], b[cross] = inter
    cost = a + nb * (b + np.where(prog.kind == OpKind.REDUCE, gamma, 0.0))
    return sum(float(cost[prog.step == s].max()) for s in range(prog.n_steps))


@settings(max_examples=60)
@given(p=st.integers(1, 24), n=st.integers(0, 5000), k=st.integers(1, 9))
def test_exact_matches_the_builders_rounds(p, n, k):
    a, b, g = 3e-6, 1e-9, 4e-10
    for coll, algo in (("all-reduce", "ring"), ("reduce-scatter", "ring"), ("all-gather", "ring"),
                       ("all-reduce", "hd"), ("broadcast", "tree")):
        want = _rounds_time(build(coll, algo, p, n), a, b, g)
        assert closed_form(coll, algo, p, n, a, b, g) == pytest.approx(want, rel=1e-9, abs=1e-15)
    want = _rounds_time(build("broadcast", "ring", p, n, pieces=k), a, b, g)
    assert closed_form("broadcast", "ring", p, n, a, b, pieces=k) == pytest.approx(want, rel=1e-9,
                                                                                  abs=1e-15)


@settings(max_examples=40)
@given(m=st.integers(1, 5), g=st.integers(1, 5), n=st.integers(0, 5000))
def test_exact_hierarchical_matches_the_builders_rounds(m, g, n):
    intra, inter, gam = (1e-6, 1e-10), (2e-5, 4e-9), 3e-10
    want = _rounds_time(build("all-reduce", "hier", m * g, n, nodes=m), *intra, gam, inter=inter, g=g)
    got = closed_form("all-reduce", "hier", m * g, n, *intra, gam, nodes=m,
                      alpha_inter=inter[0], beta_inter=inter[1])
    assert got == pytest.approx(want, rel=1e-9, abs=1e-15)


# -- bandwidths -------------------------------------------------------------------------------------
@settings(max_examples=200)
@given(p=st.integers(2, 512), q=st.integers(1, 10**7), bw=st.floats(1e6, 1e12))
def test_busbw_of_a_saturated_ring_all_reduce_is_the_link_bandwidth(p, q, bw):
    n = p * q
    t = ring_all_reduce(p, n, 0.0, 1 / bw)
    assert busbw("all-reduce", p, n, t) == pytest.approx(bw, rel=1e-12)
    assert busbw("reduce-scatter", p, n, ring_reduce_scatter(p, n, 0.0, 1 / bw)) == pytest.approx(bw)
    assert busbw("all-gather", p, n, ring_all_gather(p, n, 0.0, 1 / bw)) == pytest.approx(bw)


def test_algbw_and_factors():
    assert algbw(1_000_000_000, 0.5) == 2e9
    assert algbw(10, 0.0) == math.inf
    assert busbw("broadcast", 8, 10**9, 1.0) == 1e9
    assert busbw("all-reduce", 8, 10**9, 1.0) == pytest.approx(1.75e9)
    assert busbw("all-reduce", 1, 10**9, 0.0) == 0.0
    assert busbw("allreduce", 4, 100, 1.0) == busbw("all-reduce", 4, 100, 1.0)
    assert set(costs.BUSBW_FACTOR) == {"all-reduce", "reduce-scatter", "all-gather", "broadcast",
                                       "reduce", "all-to-all"}
    assert costs.BUSBW_FACTOR["all-to-all"](4) == 0.75
    assert costs.BUSBW_FACTOR["reduce"](4) == 1.0


def test_closed_form_dispatch_and_aliases():
    n = 8 * MiB
    assert closed_form("all-reduce", "ring", 8, n, A, B, G) == ring_all_reduce(8, n, A, B, G)
    assert closed_form("allreduce", "rabenseifner", 8, n, A, B) == halving_doubling_all_reduce(8, n, A, B)
    assert closed_form("all-reduce", "ps", 8, n, A, B, incast=False) == parameter_server_all_reduce(
        8, n, A, B, incast=False)
    assert closed_form("all-reduce", "hier", 8, n, A, B, nodes=2) == hierarchical_all_reduce(
        2, 4, n, A, B, A, B)
    assert closed_form("broadcast", "ring", 8, n + 1, A, B, pieces=3, exact=False) == \
        pipelined_ring_broadcast(8, n + 1, A, B, 3, exact=False)
    assert closed_form("broadcast", "ring", 8, n, A, B) == pipelined_ring_broadcast(8, n, A, B, 4)
    assert closed_form("broadcast", "binomial", 8, n, A, B, root=3) == binomial_tree_broadcast(8, n, A, B)


# -- bad input ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("call, needle", [
    (lambda: ring_all_reduce(0, 10, A, B), "p=0"),
    (lambda: ring_all_reduce(4, -1, A, B), "n=-1"),
    (lambda: ring_all_reduce(4, 1.5, A, B), "n=1.5"),
    (lambda: ring_all_reduce(4, 10, -1.0, B), "alpha=-1.0"),
    (lambda: ring_all_gather(4, 10, A, -B), "beta="),
    (lambda: ring_reduce_scatter(4, 10, A, B, float("nan")), "gamma=nan"),
    (lambda: pipelined_ring_broadcast(4, 10, A, B, 0), "pieces=0"),
    (lambda: hierarchical_all_reduce(0, 2, 10, A, B, A, B), "m=0"),
    (lambda: hierarchical_all_reduce(2, 2, 10, A, B, A, -1.0), "beta_inter=-1.0"),
    (lambda: algbw(10, -1.0), "seconds=-1.0"),
    (lambda: busbw("gather", 4, 10, 1.0), "'gather'"),
    (lambda: closed_form("all-reduce", "tree", 4, 10, A, B), "'tree'"),
    (lambda: closed_form("scan", "ring", 4, 10, A, B), "'scan'"),
    (lambda: closed_form("all-reduce", "hier", 4, 10, A, B), "nodes"),
    (lambda: closed_form("all-reduce", "hier", 6, 10, A, B, nodes=4), "nodes=4"),
    (lambda: closed_form("all-reduce", "ring", 4, 10, A, B, chunks=2), "chunks"),
    (lambda: closed_form("all-gather", "ring", 4, 10, A, B, -1.0), "gamma=-1.0"),
])
def test_bad_input_is_a_usage_error(call, needle):
    with pytest.raises(UsageError) as info:
        call()
    assert needle in str(info.value)


def test_halving_doubling_orders_in_closed_form():
    n, a, b, g = 1 << 20, 5e-6, 1 / 25e9, 1e-11
    # on a non-blocking network the far-first order costs what MPICH's does
    assert closed_form("all-reduce", "hd-far", 16, n, a, b, g) == closed_form("all-reduce", "hd", 16, n, a, b, g)
    # on ring:p each step at mask m pays m·α and shares each hop m ways
    near = costs.halving_doubling_all_reduce_on_ring(8, n, a, b, g, order="near")
    far = costs.halving_doubling_all_reduce_on_ring(8, n, a, b, g, order="far")
    assert near == pytest.approx(2 * 7 * a + 3 * n * b + n * 7 / 8 * g, rel=1e-12)
    assert far == pytest.approx(2 * 7 * a + 2 * n * 63 / 24 * b + n * 7 / 8 * g, rel=1e-12)
    assert costs.halving_doubling_all_reduce_on_ring(1, n, a, b) == 0.0
    assert costs.halving_doubling_all_reduce_on_ring(2, n, a, b, order="far") == \
        costs.halving_doubling_all_reduce_on_ring(2, n, a, b, order="near")
    with pytest.raises(UsageError, match="power of two"):
        costs.halving_doubling_all_reduce_on_ring(6, n, a, b)
    with pytest.raises(UsageError, match="order"):
        costs.halving_doubling_all_reduce_on_ring(8, n, a, b, order="middle")
