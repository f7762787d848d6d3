"""The replay models, without a screen: seeking, provenance and counters at known steps, links,
dependencies, why a rank idles, the training timeline and the comparison of two traces."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_tui_data import MiB, measured_copy, ring4_trace, training_trace

from rankscope.simulator.collectives import build
from rankscope.simulator.compare import CompareError, compare
from rankscope.simulator.costs import algbw, busbw
from rankscope.simulator.engine import simulate
from rankscope.simulator.errors import RankscopeError
from rankscope.simulator.provenance import layout
from rankscope.simulator.topology import parse_topology
from rankscope.simulator.trace import Trace
from rankscope.simulator.units import format_ranks
from rankscope.tui import deps, training
from rankscope.tui.replay import Replay

RING4 = ring4_trace()
_ring8 = build("all-reduce", "ring", 8, 4096)
RING8 = simulate(_ring8, parse_topology("switch:8")).to_trace(_ring8, parse_topology("switch:8"))
# provenance of the 4-rank ring all-reduce after each step, rank by rank, segment by segment
AFTER_STEP = {
    0: [["{0}", "{0}", "{0,3}", "{0}"], ["{1}", "{1}", "{1}", "{0,1}"],
        ["{1,2}", "{2}", "{2}", "{2}"], ["{3}", "{2,3}", "{3}", "{3}"]],
    2: [["all", "{0,2,3}", "{0,3}", "{0}"], ["{1}", "all", "{0,1,3}", "{0,1}"],
        ["{1,2}", "{2}", "all", "{0-2}"], ["{1-3}", "{2,3}", "{3}", "all"]],
    5: [["all"] * 4] * 4,
}


def grid(r: Replay) -> list[list[str]]:
    return [[format_ranks(r.layout.contributors(0, k, s), r.nranks) for s in range(r.nsegments)]
            for k in range(r.nranks)]


def same_state(r: Replay, k: int) -> bool:
    fresh = layout(r.program, k)
    return (all(np.array_equal(a, b) for a, b in zip(fresh.bits, r.layout.bits))
            and np.array_equal(fresh.alive, r.layout.alive)
            and np.array_equal(fresh.counts(0), r.counts))


def test_steps_show_the_ring_provenance_and_changed_cells():
    r = Replay(RING4)
    assert (r.step, r.phase(), r.can_back, r.can_forward) == (-1, "", False, True)
    assert grid(r) == [[f"{{{k}}}"] * 4 for k in range(4)]
    for s in (0, 2, 5):
        r.seek_step(s)
        assert grid(r) == AFTER_STEP[s]
    assert r.phase() == "all-gather 3/3" and not r.can_forward
    r.seek_step(2)
    assert r.phase() == "reduce-scatter 3/3"
    # step 2: rank r sends chunk (r - 3) mod 4 to rank r + 1, which completes it there
    assert sorted(map(tuple, r.changed.tolist())) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert [int(o) for o in r.transfers()] == [8, 9, 10, 11]


def test_counters_follow_the_trace_clock_and_end_at_nccl_tests_figures():
    r = Replay(RING4)
    r.seek_step(2)
    chunk = 16 * MiB
    assert r.sent.tolist() == [3 * chunk] * 4 and r.received.tolist() == [3 * chunk] * 4
    assert r.elapsed == pytest.approx(RING4.end[:12].max())
    r.seek_step(5)
    t = float(RING4.end.max())
    assert r.elapsed == pytest.approx(t)
    assert r.algbw() == pytest.approx(algbw(64 * MiB, t))
    assert r.busbw() == pytest.approx(busbw("all-reduce", 4, 64 * MiB, t))
    r.seek_step(-1)
    assert r.algbw() is None and r.moved == 0


def test_links_of_a_step_carry_its_chunks():
    r = Replay(RING4)
    r.seek_step(1)
    use = r.links()
    # switch:4: every rank's up link and down link carry one 16 MiB chunk
    assert use.names == ("0->sw", "1->sw", "2->sw", "3->sw", "sw->0", "sw->1", "sw->2", "sw->3")
    assert np.allclose(use.nbytes, 16 * MiB)
    alone = 16 * MiB / 25e9
    assert np.allclose(use.util, alone / (alone + 10e-6))  # alpha: two 5 us links
    r.seek_step(-1)
    assert r.links().link.size == 0


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(-1, 13), min_size=1, max_size=12))
def test_any_walk_of_steps_gives_the_state_built_from_scratch(walk):
    r = Replay(RING8)
    for s in walk:
        r.seek_step(s)
        assert same_state(r, int(r.bounds[s + 1]))


def test_long_jumps_leave_sqrt_spaced_undo_records():
    prog = build("all-reduce", "ring", 64, 1 << 16)
    topo = parse_topology("switch:64")
    r = Replay(simulate(prog, topo).to_trace(prog, topo))
    r.seek_step(r.n_steps - 1)  # 126 steps: records every 12 steps, then one per step
    assert 10 < len(r._journal) < 40
    for s in (r.n_steps - 2, 60, 59, 3, 100):
        r.seek_step(s)
        assert same_state(r, int(r.bounds[s + 1]))


def test_time_and_op_seeks():
    r = Replay(RING4)
    t_end2 = float(RING4.end[RING4.program.step == 2].max())
    r.seek_time(t_end2)
    assert (r.mode, r.step, r.step_complete) == ("time", 2, True)
    assert grid(r) == AFTER_STEP[2]
    r.seek_time(t_end2 - 1e-9)  # step 2 still running
    assert r.step == 1 and grid(r) == grid_at(1)
    r.seek_op(13)
    assert (r.mode, r.step) == ("step", 3)
    with pytest.raises(RankscopeError, match="no op 99"):
        r.seek_op(99)


def grid_at(s: int) -> list[list[str]]:
    r = Replay(RING4)
    r.seek_step(s)
    return grid(r)


def test_a_time_whose_finished_ops_are_not_a_prefix_builds_its_own_layout():
    p = RING4.program
    start, end = RING4.start.copy(), RING4.end.copy()
    end[5] -= 1e-4  # op 5 (step 1, rank 1) finishes before op 4 (step 1, rank 0)
    tr = Trace(p, start, end, RING4.lane, meta=RING4.meta)
    r = Replay(tr)
    r.seek_time(float(end[5]))
    done = r.finished()
    assert done[:4].all() and done[5] and not done[4] and r.step == 1 and not r.step_complete
    assert all(np.array_equal(a, b) for a, b in zip(layout(p, done).bits, r.layout.bits))
    assert r.changed.tolist() == [[2, 3]]  # op 5: rank 1 -> 2, chunk 3
    r.forward()  # completes step 1, back on the prefix
    assert r.step_complete and same_state(r, 8)


def test_dependencies_and_critical_path():
    r = Replay(RING4)
    assert r.program.deps(13).tolist() == [8]  # op (step 3, rank 1) waits for (step 2, rank 0)
    assert deps.critical_path(r, 13) == [2, 7, 8, 13]
    assert deps.critical_path(r, 23) == [2, 7, 8, 13, 18, 23]
    assert deps.critical_path(r, 1) == [1]


@pytest.mark.parametrize("trace", [RING8, training_trace()], ids=["ring8", "training"])
def test_latest_dependency_is_the_one_that_finished_last(trace):
    r, p, end = Replay(trace), trace.program, trace.end
    for op in range(p.n_ops):
        ds = p.deps(op)
        want = int(ds[np.argmax(end[ds])]) if ds.size else -1  # first of the latest, as argmax
        assert r.latest_dep[op] == want, op


def one_slow_op(trace: Trace, op: int, delay: float) -> Trace:
    """``trace`` with ``op`` ending ``delay`` later and every later step shifted by as much."""
    p = trace.program
    start, end = trace.start.copy(), trace.end.copy()
    end[op] += delay
    later = p.step > p.step[op]
    start[later] += delay
    end[later] += delay
    return Trace(p, start, end, trace.lane, meta=trace.meta)


def test_why_a_rank_is_idle():
    slow = one_slow_op(RING4, 13, 1e-3)  # step 3: rank 1 -> 2, chunk 1, a millisecond late
    r = Replay(slow)
    r.seek_time(float(slow.end[12]) + 1e-9)  # the rest of step 3 has finished
    assert r.finished()[[12, 14, 15]].all() and not r.finished()[13]
    w = deps.why_idle(r, 2)
    assert (w.op, w.blocker) == (18, 13)
    assert w.text.startswith("rank 2 waits for chunk 1 from rank 1 (op 13)")
    assert deps.why_idle(r, 1).text.startswith("rank 1 is busy: op 13")
    w = deps.why_idle(r, 0)
    assert (w.op, w.blocker) == (16, None)
    assert "is not waiting" in w.text and "chunk 3 from rank 3 (op 15)" in w.text
    r.seek_step(5)
    assert deps.why_idle(r, 1).text == "rank 1 has finished all its ops"


def test_training_lanes_and_memory():
    tr = training_trace()
    lanes = training.lanes(tr)
    p = tr.program
    labels = [training.label(p, int(o)) for o in lanes.op[lanes.of(0, 0)]]
    assert labels == ["fwd0", "fwd1", "bwd1", "bwd0", "opt"]
    assert [training.label(p, int(o)) for o in lanes.op[lanes.of(1, 1)]] == [">0 c1", ">0 c3"]
    mem = training.memory(tr)
    assert mem.categories == ("param", "grad", "optim", "param_unsharded", "activation")  # stacking order
    peak, when = mem.peak()
    assert peak.tolist() == [40 * MiB, 40 * MiB]  # shard 4 + params 8 + grad 8 + optim 8 + acts 12
    assert (mem.at(when[0])[0] / MiB).tolist() == [4, 8, 8, 8, 12]
    assert (mem.bytes[-1, 0] / MiB).tolist() == [4, 0, 8, 0, 0]  # after the step
    assert (mem.at(-1.0)[0] / MiB).tolist() == [4, 0, 8, 8, 0]  # params gathered at t = 0


def test_compare_finds_the_first_divergence():
    c = compare(RING4, measured_copy(RING4, slow_step=3, factor=1.5), ("sim", "measured"))
    assert c.first_divergence == 3
    assert c.step_error[3] == pytest.approx(1 / 1.5 - 1)  # (model - measured) / measured
    assert np.allclose(c.step_error[[0, 1, 2, 4, 5]], 0.0)
    ids, a, b = c.ops(3)
    assert ids.tolist() == [12, 13, 14, 15] and np.allclose(b / a, 1.5)
    small = compare(RING4, measured_copy(RING4, slow_step=3, factor=1.05))
    assert small.first_divergence is None
    with pytest.raises(CompareError, match="different programs"):
        compare(RING4, RING8, ("a.trace", "b.trace"))


def test_the_compare_screen_shows_rankscope_compares_figures(tmp_path):
    """One comparison: the totals and step errors the compare screen shows are the ones
    `rankscope compare --json` prints for the same pair (they once differed: 71.2 ms against 70.2)."""
    import json
    import subprocess
    import sys

    from rankscope.simulator.trace import write_trace

    measured = measured_copy(RING4, slow_step=3, factor=1.5)
    c = compare(measured, RING4, ("measured", "sim"))  # the simulated one is the model, either way
    assert c.names == ("sim", "measured")
    write_trace(tmp_path / "m.trace", measured)
    write_trace(tmp_path / "s.trace", RING4)
    out = subprocess.run([sys.executable, "-m", "rankscope", "compare", str(tmp_path / "m.trace"),
                          str(tmp_path / "s.trace"), "--json"], capture_output=True, text=True, check=True)
    doc = json.loads(out.stdout)
    assert doc["summary"]["total_model"] == c.total_model
    assert doc["summary"]["total_measured"] == c.total_measured
    assert [s["error"] for s in doc["by_step"]] == c.step_error.tolist()
