"""The Program contract: validation errors, compactness, and derived dependencies."""

import networkx as nx
import numpy as np
import pytest

from rankscope.simulator.builder import ProgramBuilder
from rankscope.simulator.collectives import build
from rankscope.simulator.errors import ProgramError, ProvenanceError
from rankscope.simulator.program import Buffer, Init, OpKind, Program, csr_from_lists, split
from rankscope.simulator.provenance import layout


def _prog(ops, deps, nbytes=100, chunks=((0, 0, 50), (0, 50, 50)), nranks=2):
    ops = np.array(ops, dtype=np.int64).reshape(-1, 5)
    ptr, idx = csr_from_lists(deps)
    c = np.array(chunks, dtype=np.int64).reshape(-1, 3)
    return Program(nranks, ops[:, 0], ops[:, 1], ops[:, 2], ops[:, 3], ops[:, 4], ptr, idx,
                   (Buffer("buf", nbytes),), c[:, 0], c[:, 1], c[:, 2])


R, C = int(OpKind.REDUCE), int(OpKind.COPY)


def test_a_valid_program_passes():
    _prog([(R, 0, 1, 0, 0), (C, 1, 0, 0, 1)], [[], [0]]).validate()


def test_cycle_is_named():
    p = _prog([(R, 0, 1, 0, 0), (C, 1, 0, 0, 1), (C, 0, 1, 1, 2)], [[2], [0], [1]])
    with pytest.raises(ProgramError, match=r"cycle: op \d -> op \d -> op \d -> op \d"):
        p.validate()


def test_self_dependency_is_a_cycle():
    with pytest.raises(ProgramError, match="cycle: op 0 -> op 0"):
        _prog([(R, 0, 1, 0, 0)], [[0]]).validate()


def test_missing_dependency():
    with pytest.raises(ProgramError, match="op 1 depends on missing op 7"):
        _prog([(R, 0, 1, 0, 0), (C, 1, 0, 0, 1)], [[], [7]]).validate()


def test_rank_out_of_range():
    with pytest.raises(ProgramError, match="op 0 runs on a rank out of range 0..1: 5"):
        _prog([(R, 5, 1, 0, 0)], [[]]).validate()
    with pytest.raises(ProgramError, match="peer out of range"):
        _prog([(R, 0, 2, 0, 0)], [[]]).validate()


def test_chunk_outside_buffer():
    with pytest.raises(ProgramError, match=r"chunk 1 \(bytes 50..150\) lies outside buffer 'buf' of 100"):
        _prog([(R, 0, 1, 1, 0)], [[]], chunks=((0, 0, 50), (0, 50, 100))).validate()


def test_program_columns_are_compact_and_read_only():
    prog = build("all-reduce", "ring", 256, 2**20)
    per_op = sum(getattr(prog, c).itemsize for c in ("kind", "rank", "peer", "arg", "step")) \
        + prog.dep_idx.nbytes / prog.n_ops + prog.dep_ptr.itemsize
    assert per_op <= 40
    with pytest.raises(ValueError):
        prog.rank[0] = 3


def test_split_is_uneven_with_leading_remainder():
    assert split(10, 4).tolist() == [0, 3, 6, 8, 10]
    assert split(2, 4).tolist() == [0, 1, 2, 2, 2]


def _ancestors(prog):
    g = nx.DiGraph()
    g.add_nodes_from(range(prog.n_ops))
    for op in range(prog.n_ops):
        g.add_edges_from((int(d), op) for d in prog.deps(op))
    return g


@pytest.mark.parametrize("coll", ["all-reduce", "reduce-scatter", "all-gather"])
@pytest.mark.parametrize("n", [2, 3, 5])
def test_vectorised_ring_deps_match_the_derived_ones(coll, n):
    """The ring's hand-written deps are what the read/write tracker derives, up to transitivity."""
    ring = build(coll, "ring", n, 1000)
    b = ProgramBuilder(n, ring.buffers)
    b.grid(0, split(1000, n))
    for op in range(ring.n_ops):
        b.transfer(int(ring.rank[op]), int(ring.peer[op]), b.chunk(0, int(ring.arg[op])),
                   OpKind(ring.kind[op]), int(ring.step[op]))
    derived = b.build()
    g_ring, g_der = _ancestors(ring), _ancestors(derived)
    for op in range(ring.n_ops):
        assert set(ring.deps(op).tolist()) <= set(derived.deps(op).tolist())
        assert nx.ancestors(g_ring, op) == nx.ancestors(g_der, op)


def test_concurrent_reductions_do_not_wait_for_each_other():
    prog = build("all-reduce", "ps", 5, 100)
    for op in range(4):  # the four incoming reductions into rank 0
        assert prog.deps(op).size == 0
    assert all(set(prog.deps(op).tolist()) == {0, 1, 2, 3} for op in range(4, 8))


def test_double_counting_is_caught():
    b = ProgramBuilder(3, [Buffer("buf", 100, Init.OWN)])
    whole = b.chunk(0, 0)
    b.transfer(0, 1, whole, OpKind.REDUCE, 0)
    b.transfer(1, 2, whole, OpKind.REDUCE, 1)
    b.transfer(0, 2, whole, OpKind.REDUCE, 2)  # rank 0's input reaches rank 2 a second time
    with pytest.raises(ProvenanceError, match=r"op 2 .* counting contributions \{0\} twice"):
        layout(b.build())


def test_reading_before_writing_is_caught():
    b = ProgramBuilder(3, [Buffer("buf", 100, Init.ROOT, root=0)])
    b.transfer(1, 2, b.chunk(0, 0), OpKind.COPY, 0)  # rank 1 has nothing yet
    with pytest.raises(ProvenanceError, match="from rank 1 before they hold any contribution"):
        layout(b.build())


def test_layout_of_a_set_must_be_closed_under_dependencies():
    prog = build("all-reduce", "ring", 4, 100)
    with pytest.raises(ProvenanceError, match="op 4 is finished but its dependency op 3 is not"):
        layout(prog, [4])
    lay = layout(prog, np.arange(8))
    assert lay.counts(0).sum() == 16 + 4 * 1 + 4 * 2  # step 0 adds one contribution per rank, step 1 two


def test_memory_ops_track_alive_buffers():
    b = ProgramBuilder(2, [Buffer("grad", 64, Init.EMPTY, alive=False, category="gradients")])
    a0 = b.alloc(0, 0, 0)
    b.free(0, 0, 1, deps=[a0])
    prog = b.build()
    assert layout(prog, 0).alive_bytes().tolist() == [0, 0]
    assert layout(prog, 1).alive_bytes().tolist() == [64, 0]
    assert layout(prog, 2).alive_bytes().tolist() == [0, 0]


def test_op_labels_name_every_kind_and_collective_once():
    from rankscope.simulator.models import parse_device, parse_model
    from rankscope.simulator.training import TrainConfig, compile_step

    ring = build("all-reduce", "ring", 4, 4096)
    assert set(ring.op_labels()) == {"reduce", "copy"}
    assert ring.describe_op(0) == f"reduce {int(ring.rank[0])}->{int(ring.peer[0])}"
    step = compile_step(parse_model("mlp:2x64"), 2, TrainConfig(strategy="zero3"), parse_device("cpu"))
    labels = step.op_labels()
    assert [step.op_label(i) for i in range(step.n_ops)] == labels.tolist()
    assert {"compute", "alloc", "free", "all-gather", "reduce-scatter"} <= set(labels)
    coll = int(np.flatnonzero(labels == "all-gather")[0])
    assert step.describe_op(coll).startswith("all-gather ") and step.describe_op(-1) == "step start"


def test_long_dependency_chains_validate_in_linear_time():
    """A chain of 10^6 ops each waiting for the next (issue 14's salvage case, whole) is acyclic by
    its direction; a chain that mixes directions goes through Kahn's algorithm one op at a time
    once the frontier is thin, and a cycle at its far end is still found."""
    from rankscope.simulator.program import find_cycle

    m = 1_000_000
    ptr = np.concatenate([np.arange(m), [m - 1]]).astype(np.int64)  # op i waits for op i + 1
    idx = np.arange(1, m, dtype=np.int64)
    assert find_cycle(ptr, idx, m) == []
    n = 200_000  # mixed directions: the chain visits the ops in a random order
    perm = np.random.default_rng(0).permutation(n)
    deps = [[] for _ in range(n)]
    for a, b in zip(perm[:-1], perm[1:]):
        deps[int(a)] = [int(b)]
    p_, i_ = csr_from_lists(deps)
    assert find_cycle(p_, i_, n) == []
    deps[int(perm[-1])] = [int(perm[0])]  # close the chain into a cycle at its far end
    p_, i_ = csr_from_lists(deps)
    cyc = find_cycle(p_, i_, n)
    assert len(cyc) == n + 1 and cyc[0] == cyc[-1]
