"""Provenance encoding, bytes-to-elements alignment, waves and the checker: no ranks launched.

These need numpy only (real/encoding.py, plan.py and verify.py import no torch), so they also
cover N far beyond what a 2-core machine can launch: the multi-word encoding for N > 62.
"""

from __future__ import annotations

import numpy as np
import pytest

from rankscope.real.encoding import CARRY, MIXED, OK, OVERFLOW, Encoding, aligned_program, check_aligned, ranks_of
from rankscope.real.plan import rank_waves, wave_of
from rankscope.real.verify import Checker, describe
from rankscope.simulator.builder import ProgramBuilder
from rankscope.simulator.collectives import ALGORITHMS, build
from rankscope.simulator.errors import ProgramError
from rankscope.simulator.program import Buffer, Init, OpKind
from rankscope.simulator.provenance import layout


def _apply(prog, enc, bufs, ops):
    """The program's data movement on numpy buffers, in op-id order (as the simulator applies it)."""
    for op in ops:
        c = int(prog.arg[op])
        lo = int(prog.chunk_off[c]) // enc.itemsize
        hi = lo + int(prog.chunk_len[c]) // enc.itemsize
        src, dst = bufs[int(prog.rank[op])], bufs[int(prog.peer[op])]
        if prog.kind[op] == OpKind.REDUCE:
            dst[lo:hi] += src[lo:hi]
        else:
            dst[lo:hi] = src[lo:hi]


def _all_specs(n):
    out = [(c, a, {}) for c, algos in ALGORITHMS.items() for a in algos if a != "hier"]
    out += [("all-reduce", "hier", {"nodes": m}) for m in range(1, n + 1) if n % m == 0]
    out += [("broadcast", "ring", {"root": n - 1, "pieces": 3}), ("broadcast", "tree", {"root": n // 2})]
    return out


def test_contribution_is_a_power_of_two_and_a_count():
    enc = Encoding(3)
    assert enc.words == 2 and enc.elem_bytes == 16
    assert enc.contribution(2).tolist() == [4, 1]
    big = Encoding(130)
    assert big.rank_words == 3 and big.words == 4
    assert big.contribution(129).tolist() == [0, 0, 1 << (129 - 124), 1]
    assert big.contribution(62).tolist() == [0, 1, 0, 1]


@pytest.mark.parametrize("n", [2, 3, 5, 62, 63, 130])
def test_decoded_sums_equal_simulated_provenance(n):
    """Every builder, run on encoded numpy buffers: decoding equals the simulator's layout."""
    specs = _all_specs(n) if n <= 8 else [("all-reduce", "ring", {}), ("all-gather", "ring", {}),
                                          ("all-reduce", "hd", {})]
    for coll, algo, kw in specs:
        enc = Encoding(n)
        prog = aligned_program(coll, algo, n, 100, enc.elem_bytes, **kw)
        bufs = [enc.initial(prog.buffers[0], r) for r in range(n)]
        bounds = prog.step_bounds()
        lay = layout(prog, 0)
        check_at = range(prog.n_steps) if n <= 8 else [prog.n_steps // 2, prog.n_steps - 1]
        for s in check_at:
            _apply(prog, enc, bufs, range(lay.applied, int(bounds[s + 1])))
            lay.advance_to(int(bounds[s + 1]))
            for r in range(n):
                dec = enc.decode(bufs[r], lay.bounds[0])
                assert (dec.problem == OK).all(), (coll, algo, s, r)
                assert np.array_equal(dec.bits, lay.bits[0][r]), (coll, algo, kw, s, r)


def test_double_count_is_caught_by_the_count_word():
    enc = Encoding(4)
    twice = enc.contribution(0) * 2          # 2^0 + 2^0 looks like {1} in the bitset alone
    bits, problem = enc.bitsets(np.stack([twice, enc.contribution(1), enc.contribution(0) + enc.contribution(1)]))
    assert ranks_of(bits[0], 4) == [1] and problem[0] == CARRY
    assert problem[1] == OK and problem[2] == OK and ranks_of(bits[2], 4) == [0, 1]
    over = np.array([[-1, 1]], dtype=np.int64)
    assert enc.bitsets(over)[1][0] == OVERFLOW


def test_a_segment_that_moved_in_part_is_mixed():
    enc = Encoding(2)
    flat = np.concatenate([enc.contribution(0), enc.contribution(1)])  # two elements
    dec = enc.decode(flat, np.array([0, 32]))
    assert dec.problem.tolist() == [MIXED]


@pytest.mark.parametrize("n", range(1, 10))
def test_aligned_sizes_split_exactly(n):
    for elem in (4, 16, 32):
        for size in (0, 1, 1000, 4096, 65535, 1 << 20):
            for coll, algo, kw in _all_specs(n):
                prog = aligned_program(coll, algo, n, size, elem, **kw)
                s = prog.buffers[0].nbytes
                assert s >= size and s % elem == 0
                check_aligned(prog, elem)
                assert prog.meta["requested_nbytes"] == size


def test_unaligned_programs_are_refused():
    with pytest.raises(ProgramError, match="whole|elements"):
        check_aligned(build("all-reduce", "ring", 3, 1000), 16)


def test_waves_follow_steps_and_split_same_step_dependencies():
    prog = build("all-reduce", "ring", 4, 4096)
    assert np.array_equal(wave_of(prog), prog.step)
    b = ProgramBuilder(3, [Buffer("buf", 48, Init.OWN)])
    b.grid(0, [0, 48])
    a = b.transfer(0, 1, b.chunk(0, 0), OpKind.REDUCE, 0)
    b.transfer(1, 2, b.chunk(0, 0), OpKind.REDUCE, 0, deps=[a])  # same step, waits for a
    hand = b.build()
    assert wave_of(hand).tolist() == [0, 1]
    waves, scratch = rank_waves(hand, 1, 8)
    assert [(len(w.sends), len(w.recvs)) for w in waves] == [(0, 1), (1, 0)] and scratch == 6


def test_checker_names_the_first_differing_rank_chunk_and_step():
    n = 3
    enc = Encoding(n)
    prog = aligned_program("all-reduce", "ring", n, 96, enc.elem_bytes)
    bufs = [enc.initial(prog.buffers[0], r) for r in range(n)]
    bounds = prog.step_bounds()
    _apply(prog, enc, bufs, range(int(bounds[1])))
    c = int(prog.arg[int(bounds[0]) + 1])  # the chunk rank 1 sent to rank 2 at step 0
    lo, hi = int(prog.chunk_off[c]) // 8, int(prog.chunk_off[c] + prog.chunk_len[c]) // 8
    bufs[2][lo:hi].reshape(-1, enc.words)[:] += enc.contribution(1)  # rank 2 reduced it twice
    m = Checker(prog, enc, 2).check(0, [bufs[2]])
    assert m["step"] == 0 and m["rank"] == 2 and m["chunk"] == c
    assert m["expected"] == [1, 2] and "twice" in m["problem"]  # 2 + 2 + 4 = 8: a carry
    assert "after step 0 at rank 2, chunk" in describe(m, prog)
    assert Checker(prog, enc, 0).check(0, [bufs[0]]) is None
