"""Every builder delivers what its collective promises, and moves exactly the bytes it should."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rankscope.simulator.collectives import ALGORITHMS, build
from rankscope.simulator.errors import UsageError
from rankscope.simulator.program import split
from rankscope.simulator.provenance import check_promise
from rankscope.simulator.traffic import traffic

ranks = st.integers(1, 64)
sizes = st.one_of(st.integers(1, 200), st.integers(1, 10**9))


def _chunks(s, n):
    return np.diff(split(s, n))


@settings(max_examples=60)
@given(n=ranks, s=sizes)
def test_ring_all_reduce_promise_and_bytes(n, s):
    prog = build("all-reduce", "ring", n, s)
    check_promise(prog)
    c = _chunks(s, n)
    r = np.arange(n)
    sent = traffic(prog).sent
    # rank r sends every chunk but r in reduce-scatter and every chunk but r+1 in all-gather
    expect = 2 * s - c[r] - c[(r + 1) % n] if n > 1 else np.zeros(1)
    assert np.array_equal(sent, expect)
    assert sent.sum() == 2 * (n - 1) * s
    assert prog.n_steps == 2 * (n - 1)
    if s % n == 0:
        assert np.all(sent * n == 2 * s * (n - 1))


@settings(max_examples=60)
@given(n=ranks, s=sizes)
def test_ring_reduce_scatter_and_all_gather(n, s):
    c, r = _chunks(s, n), np.arange(n)
    rs = build("reduce-scatter", "ring", n, s)
    check_promise(rs)
    assert np.array_equal(traffic(rs).sent, (s - c[r]) if n > 1 else [0])
    ag = build("all-gather", "ring", n, s)
    check_promise(ag)
    assert np.array_equal(traffic(ag).sent, (s - c[(r + 1) % n]) if n > 1 else [0])
    for prog in (rs, ag):
        assert traffic(prog).sent.sum() == (n - 1) * s


@settings(max_examples=40)
@given(n=ranks, s=sizes, k=st.integers(1, 16), root=st.integers(0, 63))
def test_broadcasts(n, s, k, root):
    root %= n
    for prog in (build("broadcast", "ring", n, s, pieces=k, root=root),
                 build("broadcast", "tree", n, s, root=root)):
        check_promise(prog)
        assert traffic(prog).received.sum() == (n - 1) * s
        assert traffic(prog).received[root] == 0
    assert build("broadcast", "ring", n, s, pieces=k).n_steps == (n + k - 2 if n > 1 else 0)
    assert build("broadcast", "tree", n, s).n_steps == int(np.ceil(np.log2(n)))


@settings(max_examples=40)
@given(n=ranks, s=sizes)
def test_halving_doubling(n, s):
    prog = build("all-reduce", "hd", n, s)
    check_promise(prog)
    p = 1 << (n.bit_length() - 1)
    rem = n - p
    total = traffic(prog).sent.sum()
    # power-of-two core moves 2(p-1)S; each folded pair adds S in and S back out
    assert total == 2 * (p - 1) * s + 2 * rem * s
    assert prog.n_steps == 2 * int(np.log2(p)) + (2 if rem else 0)


def test_halving_doubling_non_power_of_two_folds_in_and_out():
    prog = build("all-reduce", "hd", 6, 4096)
    names = [ph.name for ph in prog.phases]
    assert names[0] == "fold in" and names[-1] == "fold out"
    first = prog.step == 0
    assert list(zip(prog.rank[first], prog.peer[first])) == [(0, 1), (2, 3)]
    # in the core, ranks 0 and 2 (folded away) send and receive nothing
    core = (prog.step > 0) & (prog.step < prog.n_steps - 1)
    assert not np.isin(prog.rank[core], [0, 2]).any() and not np.isin(prog.peer[core], [0, 2]).any()


@settings(max_examples=60)
@given(n=ranks, s=sizes)
def test_parameter_server(n, s):
    prog = build("all-reduce", "ps", n, s)
    check_promise(prog)
    tr = traffic(prog)
    assert tr.received[0] == (n - 1) * s and tr.sent[0] == (n - 1) * s
    assert np.all(tr.sent[1:] == s) and np.all(tr.received[1:] == s)


@settings(max_examples=40)
@given(m=st.integers(1, 8), g=st.integers(1, 8), s=sizes)
def test_hierarchical(m, g, s):
    prog = build("all-reduce", "hier", m * g, s, nodes=m)
    check_promise(prog)
    tr = traffic(prog)
    assert tr.sent.sum() == 2 * m * (g - 1) * s + 2 * (m - 1) * s
    # only ranks with the same local index talk across nodes
    t = prog.is_transfer
    cross = (prog.rank[t] // g) != (prog.peer[t] // g)
    assert np.all(prog.rank[t][cross] % g == prog.peer[t][cross] % g)


def test_every_algorithm_on_one_rank_is_empty_and_correct():
    for coll, algos in ALGORITHMS.items():
        for algo in algos:
            prog = build(coll, algo, 1, 1000, nodes=1)
            assert prog.n_ops == 0
            check_promise(prog)


def test_fewer_bytes_than_ranks_keeps_zero_byte_steps():
    prog = build("all-reduce", "ring", 8, 3)
    check_promise(prog)
    assert prog.n_ops == 2 * 7 * 8
    assert (prog.op_bytes == 0).sum() > 0


@pytest.mark.parametrize("args, msg", [
    (("gather", "ring", 4, 10), "unknown collective"),
    (("all-reduce", "bogus", 4, 10), "unknown algorithm"),
    (("all-reduce", "ring", 0, 10), "--ranks"),
    (("all-reduce", "hier", 6, 10), "--nodes"),
])
def test_bad_requests(args, msg):
    with pytest.raises(UsageError, match=msg):
        build(*args)
    with pytest.raises(UsageError, match="dividing"):
        build("all-reduce", "hier", 6, 10, nodes=4)
