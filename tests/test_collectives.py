"""Every builder delivers what its collective promises, and moves exactly the bytes it should."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rankscope.simulator.builder import ProgramBuilder
from rankscope.simulator.collectives import ALGORITHMS, build
from rankscope.simulator.errors import UsageError
from rankscope.simulator.program import Buffer, Init, OpKind, split
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


def _mpich_sequence(n, count):
    """Per rank, the (peer, bytes sent, bytes received) of each step, by MPICH's own index arithmetic:
    a transliteration of MPIR_Allreduce_intra_reduce_scatter_allgather (MPICH,
    src/mpi/coll/allreduce/allreduce_intra_reduce_scatter_allgather.c), one byte per element."""
    pof2 = 1 << (n.bit_length() - 1)
    rem = n - pof2
    cnts = [count // pof2 + (1 if i < count % pof2 else 0) for i in range(pof2)]
    seq = {r: [] for r in range(n)}
    for rank in range(n):
        if rank < 2 * rem:
            if rank % 2 == 0:
                seq[rank].append((rank + 1, count, 0))
                newrank = -1
            else:
                seq[rank].append((rank - 1, 0, count))
                newrank = rank // 2
        else:
            newrank = rank - rem
        if newrank != -1:
            mask, send_idx, recv_idx, last_idx = 1, 0, 0, pof2
            while mask < pof2:
                newdst = newrank ^ mask
                dst = newdst * 2 + 1 if newdst < rem else newdst + rem
                if newrank < newdst:
                    send_idx = recv_idx + pof2 // (mask * 2)
                    send, recv = sum(cnts[send_idx:last_idx]), sum(cnts[recv_idx:send_idx])
                else:
                    recv_idx = send_idx + pof2 // (mask * 2)
                    send, recv = sum(cnts[send_idx:recv_idx]), sum(cnts[recv_idx:last_idx])
                seq[rank].append((dst, send, recv))
                send_idx = recv_idx
                mask <<= 1
                if mask < pof2:
                    last_idx = recv_idx + pof2 // mask
            mask >>= 1
            while mask > 0:
                newdst = newrank ^ mask
                dst = newdst * 2 + 1 if newdst < rem else newdst + rem
                if newrank < newdst:
                    if mask != pof2 // 2:
                        last_idx = last_idx + pof2 // (mask * 2)
                    recv_idx = send_idx + pof2 // (mask * 2)
                    send, recv = sum(cnts[send_idx:recv_idx]), sum(cnts[recv_idx:last_idx])
                else:
                    recv_idx = send_idx - pof2 // (mask * 2)
                    send, recv = sum(cnts[send_idx:last_idx]), sum(cnts[recv_idx:send_idx])
                seq[rank].append((dst, send, recv))
                if newrank > newdst:
                    send_idx = recv_idx
                mask >>= 1
        if rank < 2 * rem:
            seq[rank].append((rank - 1, count, 0) if rank % 2 else (rank + 1, 0, count))
    return seq


def _program_sequence(prog):
    """Per rank, per step in which it takes part, (peer, bytes sent, bytes received)."""
    nb = prog.op_bytes
    seq = {r: {} for r in range(prog.nranks)}
    for op in np.flatnonzero(prog.is_transfer):
        s, src, dst = int(prog.step[op]), int(prog.rank[op]), int(prog.peer[op])
        for r, peer, sent, got in ((src, dst, int(nb[op]), 0), (dst, src, 0, int(nb[op]))):
            p0, s0, g0 = seq[r].get(s, (peer, 0, 0))
            assert p0 == peer, f"rank {r} talks to two peers in step {s}"
            seq[r][s] = (peer, s0 + sent, g0 + got)
    return {r: [v for _, v in sorted(d.items())] for r, d in seq.items()}


def _tracked_halving_doubling(n, s, order):
    """The same schedule through ProgramBuilder, which derives every data dependency from reads and
    writes; ``after`` adds MPICH's blocking order (both ranks done with their previous exchange)."""
    p = 1 << (n.bit_length() - 1)
    rem = n - p
    b = ProgramBuilder(n, [Buffer("buf", s, Init.OWN)])
    b.grid(0, split(s, p))
    whole = b.chunk(0, 0, p)
    fold = [b.transfer(2 * i, 2 * i + 1, whole, OpKind.REDUCE, 0) for i in range(rem)]
    step = 1 if rem else 0
    real = [2 * v + 1 if v < rem else v + rem for v in range(p)]
    masks = [1 << k for k in range(p.bit_length() - 1)]
    masks = masks[::-1] if order == "far" else masks
    last = {v: ([fold[v]] if v < rem else []) for v in range(p)}  # v's ops of its previous exchange
    lo, hi = [0] * p, [p] * p

    def exchange(m, chunk_of, kind):
        nonlocal step
        now = {v: [] for v in range(p)}
        for v in range(p):
            w = v ^ m
            first = step == (1 if rem else 0)
            after = (last[w] if w < rem else []) if first else last[v] + last[w]
            op = b.transfer(real[v], real[w], chunk_of(v), kind, step, after=after)
            now[v].append(op)
            now[w].append(op)
        last.update(now)
        step += 1

    for m in masks:
        exchange(m, lambda v, m=m: b.chunk(0, *(((lo[v] + hi[v]) // 2, hi[v]) if v & m == 0 else
                                                (lo[v], (lo[v] + hi[v]) // 2))), OpKind.REDUCE)
        for v in range(p):
            mid = (lo[v] + hi[v]) // 2
            lo[v], hi[v] = (lo[v], mid) if v & m == 0 else (mid, hi[v])
    for m in masks[::-1]:
        exchange(m, lambda v: b.chunk(0, lo[v], hi[v]), OpKind.COPY)
        for v in range(p):
            lo[v], hi[v] = min(lo[v], lo[v ^ m]), max(hi[v], hi[v ^ m])
    for i in range(rem):
        b.transfer(2 * i + 1, 2 * i, whole, OpKind.COPY, step)
    return b.build()


@pytest.mark.parametrize("n", range(1, 65))
def test_halving_doubling_dependencies_equal_the_derived_ones(n):
    for order, algo in (("near", "hd"), ("far", "hd-far")):
        got, want = build("all-reduce", algo, n, 3 * n + 1), _tracked_halving_doubling(n, 3 * n + 1, order)
        for col in ("kind", "rank", "peer", "step", "dep_ptr", "dep_idx"):
            assert np.array_equal(getattr(got, col), getattr(want, col)), (n, order, col)
        assert np.array_equal(got.chunk_off[got.arg], want.chunk_off[want.arg])
        assert np.array_equal(got.chunk_len[got.arg], want.chunk_len[want.arg])


@pytest.mark.parametrize("n", range(1, 65))
def test_halving_doubling_follows_mpich_partners_and_sizes(n):
    for s in (0, 7, n, 1000 + n, 1 << 20):
        prog = build("all-reduce", "hd", n, s)
        assert prog.meta["algo"] == "hd"
        assert _program_sequence(prog) == _mpich_sequence(n, s), (n, s)


def test_halving_doubling_orders_on_8_ranks():
    """MPICH's order starts with the nearest partner and half the buffer; far-first with rank XOR 4."""
    near, far = build("all-reduce", "hd", 8, 8 << 10), build("all-reduce", "hd-far", 8, 8 << 10)
    step0 = near.step == 0
    assert near.peer[step0 & (near.rank == 0)].tolist() == [1]
    assert far.peer[(far.step == 0) & (far.rank == 0)].tolist() == [4]
    sizes = [int(near.op_bytes[(near.step == s) & (near.rank == 0)][0]) for s in range(near.n_steps)]
    assert sizes == [4096, 2048, 1024, 1024, 2048, 4096]
    sizes = [int(far.op_bytes[(far.step == s) & (far.rank == 0)][0]) for s in range(far.n_steps)]
    assert sizes == [4096, 2048, 1024, 1024, 2048, 4096]
    assert [ph.name for ph in near.phases] == ["reduce-scatter (halving)", "all-gather (doubling)"]
    assert far.meta["algo"] == "hd-far" and build("all-reduce", "rabenseifner", 8, 64).meta["algo"] == "hd"


@settings(max_examples=40)
@given(n=ranks, s=sizes, algo=st.sampled_from(["hd", "hd-far"]))
def test_halving_doubling(n, s, algo):
    prog = build("all-reduce", algo, n, s)
    check_promise(prog)
    p = 1 << (n.bit_length() - 1)
    rem = n - p
    sent = traffic(prog).sent
    # power-of-two core moves 2(p-1)S; each folded pair adds S in and S back out
    assert sent.sum() == 2 * (p - 1) * s + 2 * rem * s
    assert prog.n_steps == 2 * int(np.log2(p)) + (2 if rem else 0)
    # with equal cells every core rank sends 2S(p-1)/p, plus S when it folds the result back out
    core = np.array([2 * v + 1 if v < rem else v + rem for v in range(p)])
    if s % p == 0:
        assert np.all(sent[core] * p == 2 * s * (p - 1) + (p * s if rem else 0) * np.isin(core, 2 * np.arange(rem) + 1))


@pytest.mark.parametrize("algo", ["hd", "hd-far"])
def test_halving_doubling_non_power_of_two_folds_in_and_out(algo):
    prog = build("all-reduce", algo, 6, 4096)
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
