"""Concurrent collectives: streams, communicators and lanes, and processor sharing of the links
(simulator/engine_share.py), exact on synthetic programs, and on training steps."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rankscope.simulator.engine import simulate
from rankscope.simulator.engine_share import Sharing, collective_lanes
from rankscope.simulator.models import parse_device, parse_model
from rankscope.simulator.program import CollKind, OpKind
from rankscope.simulator.topology import parse_topology
from rankscope.simulator.training import TrainConfig, _Template, compile_step, replicate, stream_meta

N = 4
TOPO = parse_topology(f"switch:{N}")
LAT, WORK = 1.0, 4.0


def _two(delay: float, streams=(0, 1), comms=(0, 1), lat=LAT, work=(WORK, WORK)):
    """Collective a at 0; collective b after a compute op of ``delay`` seconds (1 FLOP/s)."""
    t = _Template()
    t.coll(CollKind.ALL_REDUCE, 1 << 20, -1)
    c = t.run(delay, "wait")
    t.coll(CollKind.ALL_REDUCE, 1 << 20, -1, c)
    meta = {"coll_seconds": [lat + work[0], lat + work[1]], "coll_latency": [lat, lat],
            "streams": ["s0", "s1"], "coll_stream": list(streams), "coll_comm": list(comms)}
    return replicate(t, N, 1.0, meta)


def _ends(prog, method="auto"):
    sim = simulate(prog, TOPO, method=method)
    ops = np.flatnonzero(prog.kind == OpKind.COLLECTIVE)
    a, b = ops[prog.arg[ops] == 0], ops[prog.arg[ops] == 1]
    assert np.all(sim.end[a] == sim.end[a][0]) and np.all(sim.end[b] == sim.end[b][0])
    return sim, float(sim.start[b][0]), float(sim.end[a][0]), float(sim.end[b][0])


def test_two_equal_collectives_started_together_each_take_latency_plus_twice_the_work():
    for method in ("auto", "events"):
        sim, sb, ea, eb = _ends(_two(0.0), method)
        assert sb == 0.0 and ea == eb == LAT + 2 * WORK
        assert sim.info["method"] == "events" and sim.info["comm_lanes"] == 2


def test_one_started_half_way():
    # a: latency [0, 1), alone [1, 3) does half its work; b's latency ends at 3; both at 1/2 until
    # a drains at 3 + 2/(1/2) = 7; b did 2 of 4 by then, the rest alone: 9 (lat + 1.5 work after it began)
    for method in ("auto", "events"):
        _, sb, ea, eb = _ends(_two(2.0), method)
        assert (sb, ea, eb) == (2.0, 7.0, 9.0)


def test_one_stream_or_one_communicator_stays_ordered():
    for streams, comms in (((0, 0), (0, 1)), ((0, 1), (0, 0))):
        prog = _two(0.0, streams, comms)
        assert collective_lanes(prog).tolist() == [0, 0]
        for method in ("auto", "events"):
            _, sb, ea, eb = _ends(prog, method)
            assert (sb, ea, eb) == (LAT + WORK, LAT + WORK, 2 * (LAT + WORK))


def test_no_overlap_keeps_the_sweep_and_both_paths_agree():
    prog = _two(LAT + WORK + 0.5)  # b starts after a ended: nothing is shared
    s, sb, ea, eb = _ends(prog, "auto")
    assert s.info["method"] == "sweep" and (ea, eb) == (LAT + WORK, sb + LAT + WORK)
    e = simulate(prog, TOPO, method="events")
    np.testing.assert_array_equal(s.start, e.start)
    np.testing.assert_array_equal(s.end, e.end)


@settings(max_examples=40, deadline=None)
@given(delay=st.floats(0, 12), w0=st.floats(0.5, 8), w1=st.floats(0.5, 8), lat=st.floats(0, 2))
def test_sharing_conserves_work(delay, w0, w1, lat):
    """Processor sharing is work-conserving: while either is in its bandwidth phase the links do
    one unit of work per second, so the last end is the first bandwidth start plus both works
    when the phases overlap, and each ends alone when they do not."""
    _, sb, ea, eb = _ends(_two(delay, lat=lat, work=(w0, w1)), "events")
    b0, b1 = lat, delay + lat
    if b1 < b0 + w0:
        assert max(ea, eb) == pytest.approx(b0 + w0 + w1, rel=1e-12)
        assert ea >= b0 + w0 and eb >= b1 + w1
    else:
        assert ea == pytest.approx(b0 + w0, rel=1e-12) and eb == pytest.approx(b1 + w1, rel=1e-12)


def test_disjoint_groups_do_not_share():
    s = Sharing(np.array([0, 1, 0]), np.array([[True, False], [False, True]]))
    s.add(0, 4.0, 0.0)
    s.add(1, 4.0, 0.0)
    assert s.next_end() == (4.0, 0)
    s.add(2, 4.0, 0.0)  # meets collective 0's group: 0 and 2 at 1/2, 1 alone
    assert s.next_end() == (4.0, 1)
    assert s.pop_done(4.0, 1) == [1]
    assert s.next_end() == (8.0, 0)


def test_lanes_join_streams_through_communicators():
    t = _Template()
    for _ in range(3):
        t.coll(CollKind.ALL_GATHER, 64, -1)
    prog = replicate(t, 2, 1.0, {"coll_stream": [0, 1, 2], "coll_comm": [0, 0, 1]})
    assert collective_lanes(prog).tolist() == [0, 0, 1]
    assert stream_meta([0, 1, 0], "per-stream") == {"streams": ["all_gather", "reduce_scatter"],
                                                    "coll_stream": [0, 1, 0], "coll_comm": [0, 1, 0]}


H100 = parse_device("h100")


def test_fsdp_streams_recorded_and_one_communicator_is_the_single_lane():
    model = parse_model("mlp:4x1024")
    prog = compile_step(model, N, TrainConfig(strategy="fsdp"), H100)
    assert prog.meta["streams"] == ["all_gather", "reduce_scatter"]
    kinds = prog.coll_kind[np.asarray(prog.meta["coll_stream"]) == 1]
    assert set(kinds.tolist()) == {int(CollKind.REDUCE_SCATTER)}
    old = replicate_without_streams(prog)
    a, b = simulate(prog, TOPO), simulate(old, TOPO)
    assert a.info["comm_lanes"] == 1
    np.testing.assert_array_equal(a.end, b.end)


def replicate_without_streams(prog):
    import dataclasses

    meta = {k: v for k, v in prog.meta.items() if k not in ("streams", "coll_stream", "coll_comm")}
    return dataclasses.replace(prog, meta=meta)


def test_fsdp_per_stream_overlaps_all_gathers_with_reduce_scatters():
    from rankscope.simulator.train_report import stream_summary

    model = parse_model("mlp:8x2048")
    topo = parse_topology("nodes:2x2")
    one = compile_step(model, N, TrainConfig(strategy="fsdp"), H100)
    per = compile_step(model, N, TrainConfig(strategy="fsdp", communicators="per-stream"), H100)
    a, b = simulate(one, topo), simulate(per, topo, method="auto")
    assert stream_summary(one, a.start, a.end)["concurrent"] == 0.0
    assert stream_summary(per, b.start, b.end)["concurrent"] > 0
    e = simulate(per, topo, method="events")  # the loop on all ranks; "auto" ran it on one
    assert b.info["rank_symmetric"] and not e.info["rank_symmetric"]
    np.testing.assert_array_equal(b.start, e.start)
    np.testing.assert_array_equal(b.end, e.end)
    # sharing only ever delays a collective past its alone time
    c = np.flatnonzero(per.kind == OpKind.COLLECTIVE)
    alone = b.start[c] + np.asarray(one.meta.get("coll_seconds") or a.end[c] - a.start[c])
    assert np.all(b.end[c] >= alone * (1 - 1e-12))


def test_zero2_per_stream_keeps_the_sweep_and_agrees_with_the_event_loop():
    prog = compile_step(parse_model("mlp:4x1024"), N,
                        TrainConfig(strategy="zero2", communicators="per-stream", bucket_bytes=1 << 20), H100)
    assert prog.meta["streams"] == ["reduce_scatter", "compute"]
    s, e = simulate(prog, TOPO), simulate(prog, TOPO, method="events")
    assert s.info["method"] == "sweep" and s.info["comm_lanes"] == 2
    np.testing.assert_allclose(s.start, e.start, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(s.end, e.end, rtol=1e-12, atol=1e-15)


def test_a_straggler_breaks_the_symmetry_and_the_loop_runs_on_every_rank():
    from rankscope.simulator.rank_speed import scale_compute

    per = compile_step(parse_model("mlp:8x2048"), N, TrainConfig(strategy="fsdp", communicators="per-stream"), H100)
    topo = parse_topology("nodes:2x2")
    slow = scale_compute(per, [1.0, 1.0, 1.5, 1.0])
    a, b = simulate(per, topo), simulate(slow, topo)
    assert a.info["rank_symmetric"] and not b.info["rank_symmetric"] and b.info["method"] == "events"
    comp = slow.kind == OpKind.COMPUTE
    np.testing.assert_allclose((b.end - b.start)[comp & (slow.rank == 2)],
                               1.5 * (a.end - a.start)[comp & (per.rank == 2)], rtol=1e-12)
    even = scale_compute(per, [1.5] * N)  # one compute entry per op, all ranks alike: symmetric again
    assert even.compute_seconds.size > per.compute_seconds.size
    c = simulate(even, topo)
    assert c.info["rank_symmetric"]
    np.testing.assert_array_equal(c.end, simulate(even, topo, method="events").end)


def test_trace_records_streams_and_old_traces_still_load(tmp_path, capsys):
    from pathlib import Path

    from rankscope.cli import main
    from rankscope.simulator.trace import read_trace
    from rankscope.tui.training import label, stream

    out = tmp_path / "step.trace"
    assert main(["sim", "train", "--model", "mlp:4x1024", "--ranks", "4", "--communicators", "per-stream",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "collective streams on rank 0 (per-stream communicators, 2 comm lanes): all_gather 8" in text
    assert "reduce_scatter 4" in text
    tr = read_trace(out)
    p = tr.program
    assert p.meta["streams"] == ["all_gather", "reduce_scatter"] and p.meta["coll_comm"] == p.meta["coll_stream"]
    ops = np.flatnonzero(p.kind == OpKind.COLLECTIVE)
    rs = ops[p.coll_kind[p.arg[ops]] == int(CollKind.REDUCE_SCATTER)][0]
    assert stream(p, rs) == "reduce_scatter" and label(p, rs) == "reduce-scatter @reduce_scatter"
    # a trace written before streams existed (the shipped FSDP example of then): one stream
    from rankscope.simulator.train_report import stream_summary

    old = read_trace(Path(__file__).resolve().parent / "fixtures" / "old_fsdp_step.trace")
    assert "streams" not in old.program.meta
    o = np.flatnonzero(old.program.kind == OpKind.COLLECTIVE)[0]
    assert stream(old.program, o) is None and label(old.program, o) == "all-gather"
    summ = stream_summary(old.program, old.start, old.end)
    assert [r["stream"] for r in summ["rows"]] == ["comm"] and summ["rows"][0]["collectives"] == 12
    assert main(["sim", "train", "--model", "mlp:4x1024", "--ranks", "4", "--communicators", "two"]) == 2


def test_nccl_times_split_latency_from_the_shared_bandwidth_term():
    from rankscope.simulator.nccl import tuning
    from rankscope.simulator.nccl.constants import ALGOS, PROTOS
    from rankscope.simulator.training import nccl_collective_times

    topo = parse_topology("nodes:2x8,gpu=h100,nics=8,nic=400Gb/s")
    prog = compile_step(parse_model("mlp:4x4096"), 16, TrainConfig(strategy="fsdp", communicators="per-stream"), H100)
    secs, lat = nccl_collective_times(prog, topo)
    assert np.all(lat > 0) and np.all(lat < secs)
    tune = tuning(topo)
    label = CollKind(int(prog.coll_kind[0])).label
    ch = tune.choose(label, int(prog.coll_bytes[0]))
    assert secs[0] == ch.predicted and lat[0] == tune.time(label, ALGOS.index(ch.algo), PROTOS.index(ch.proto), 0)
    prog.meta["coll_seconds"], prog.meta["coll_latency"] = secs.tolist(), lat.tolist()
    sim = simulate(prog, topo)
    c = np.flatnonzero(prog.kind == OpKind.COLLECTIVE)
    assert sim.info["comm_lanes"] == 2 and np.all(sim.end[c] - sim.start[c] >= secs[prog.arg[c]] * (1 - 1e-12))
