"""Exports: Chrome trace structure, Kineto for HTA (overlap equals ours), Chakra, and round trips."""

import json
import os
from collections import defaultdict

import numpy as np
import pytest

from rankscope.cli import main
from rankscope.simulator.collectives import build
from rankscope.simulator.engine import simulate
from rankscope.simulator.interop.chakra_export import chakra_documents
from rankscope.simulator.interop.chrome_export import chrome_events
from rankscope.simulator.interop.kineto_export import kineto_documents, write_kineto
from rankscope.simulator.interop.kineto_import import import_kineto
from rankscope.simulator.interop.overlap import comm_comp_overlap
from rankscope.simulator.memory import exposed_comm, memory_timeline
from rankscope.simulator.models import parse_device, parse_model
from rankscope.simulator.program import CollKind, OpKind
from rankscope.simulator.topology import parse_topology
from rankscope.simulator.trace import read_trace, write_trace
from rankscope.simulator.training import TrainConfig, compile_step

FIX = os.path.join(os.path.dirname(__file__), "fixtures")


def fsdp_trace(device="cpu", n=4, topo=None):
    prog = compile_step(parse_model("mlp:4x1024"), n, TrainConfig(strategy="fsdp"), parse_device(device))
    t = parse_topology(topo or f"switch:{n}")
    return simulate(prog, t).to_trace(prog, t)


def ring_trace():
    prog = build("all-reduce", "ring", 4, 1 << 20)
    t = parse_topology("ring:4")
    return simulate(prog, t).to_trace(prog, t)


# -- Chrome ------------------------------------------------------------------------------------------
def check_chrome(events):
    """Every flow has both ends, each bound to a slice of its thread that contains it; the slices
    of every thread nest; every pid and tid in use is named."""
    slices = defaultdict(list)
    named_p, named_t = set(), set()
    flows = defaultdict(dict)
    for e in events:
        ph = e["ph"]
        if ph == "M":
            (named_p if e["name"] == "process_name" else named_t).add(
                e["pid"] if e["name"] == "process_name" else (e["pid"], e["tid"]))
        elif ph == "X":
            assert e["dur"] >= 0
            slices[(e["pid"], e["tid"])].append((e["ts"], e["ts"] + e["dur"]))
        elif ph in ("s", "f"):
            assert ph not in flows[e["id"]], f"flow {e['id']} has two {ph} events"
            flows[e["id"]][ph] = e
    for key, iv in slices.items():
        assert key[0] in named_p and key in named_t
        iv.sort(key=lambda x: (x[0], -x[1]))
        stack = []
        for a, b in iv:
            while stack and stack[-1] <= a:
                stack.pop()
            assert not stack or b <= stack[-1], f"slice [{a}, {b}] on {key} overlaps its parent without nesting"
            stack.append(b)
    for fid, ends in flows.items():
        assert set(ends) == {"s", "f"}, f"flow {fid} lacks an end"
        assert ends["f"].get("bp") == "e"
        for ev in ends.values():
            assert any(a <= ev["ts"] <= b for a, b in slices[(ev["pid"], ev["tid"])]), f"flow {fid} binds to no slice"
    return slices, flows


def test_chrome_export_of_a_ring_all_reduce():
    tr = ring_trace()
    events = chrome_events(tr)
    slices, flows = check_chrome(events)
    assert len(flows) == int(tr.program.is_transfer.sum())   # one arrow per send -> receive
    names = {e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    assert names == {"rank 0", "rank 1", "rank 2", "rank 3", "links"}
    counters = {e["name"] for e in events if e["ph"] == "C"}
    assert any(c.startswith("link 0") and c.endswith("bytes/s") for c in counters)
    json.dumps(events)


def test_chrome_export_of_a_training_step_has_memory_counters():
    tr = fsdp_trace()
    events = chrome_events(tr)
    check_chrome(events)
    mem = [e for e in events if e["ph"] == "C" and e["name"] == "memory" and e["pid"] == 0]
    peak = max(sum(e["args"].values()) for e in mem)
    assert peak == memory_timeline(tr.program, tr.start, tr.end).peak(0)[0]
    threads = {e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert {"compute", "collectives"} <= threads


def test_chrome_export_of_a_measured_run_packs_overlapping_slices():
    tr = import_kineto([os.path.join(FIX, "gloo_fsdp")])
    events = chrome_events(tr)
    check_chrome(events)
    colls = [e for e in events if e["ph"] == "X" and e.get("cat") == "collective" and e["pid"] == 0]
    assert len(colls) == 12


# -- Kineto and HTA ------------------------------------------------------------------------------------
def test_kineto_export_writes_the_rank_as_hta_reads_it(tmp_path):
    paths = write_kineto(fsdp_trace(), str(tmp_path))
    import re

    for r, path in enumerate(paths):
        text = open(path).read()
        assert int(re.search(r'"rank":\s+(\d+)', text).group(1)) == r


def test_overlap_equals_one_minus_exposed_over_comm_time():
    tr = fsdp_trace()
    ov = comm_comp_overlap(tr)
    p = tr.program
    exposed = exposed_comm(p, tr.start, tr.end)
    for r in range(p.nranks):
        c = (p.kind == OpKind.COLLECTIVE) & (p.rank == r)
        from rankscope.simulator.interop.overlap import merge

        s, e = merge(tr.start[c], tr.end[c])
        assert ov[r] == pytest.approx(1 - exposed[r] / (e - s).sum())


@pytest.mark.parametrize("device, topo", [("cpu", None), ("a100", None), ("cpu", "ring:4")])
def test_hta_overlap_of_the_kineto_export_equals_ours(tmp_path, monkeypatch, device, topo):
    pytest.importorskip("hta")
    monkeypatch.setenv("HTA_DISABLE_NS_ROUNDING", "1")   # compare exact figures, not µs-rounded ones
    from hta.trace_analysis import TraceAnalysis

    tr = fsdp_trace(device, topo=topo)
    write_kineto(tr, str(tmp_path))
    df = TraceAnalysis(trace_dir=str(tmp_path)).get_comm_comp_overlap(visualize=False)
    ours = np.round(100 * comm_comp_overlap(tr), 2)
    hta = df.sort_values("rank")["comp_comm_overlap_pctg"].to_numpy()
    assert list(df.sort_values("rank")["rank"]) == [0, 1, 2, 3]
    assert np.allclose(hta, ours, atol=0.011), (hta, ours)


def test_kineto_export_imports_back_losslessly_for_a_simulated_step(tmp_path):
    tr = fsdp_trace()
    write_kineto(tr, str(tmp_path))
    back = import_kineto([str(tmp_path)])
    p, q = tr.program, back.program
    for r in range(4):
        a = [(int(p.coll_kind[p.arg[o]]), int(p.coll_bytes[p.arg[o]]))
             for o in np.flatnonzero((p.kind == OpKind.COLLECTIVE) & (p.rank == r))]
        b = [(int(q.coll_kind[q.arg[o]]), int(q.coll_bytes[q.arg[o]]))
             for o in np.flatnonzero((q.kind == OpKind.COLLECTIVE) & (q.rank == r))]
        assert a == b
    assert op_labels(p) == op_labels(q)
    mp, mq = memory_timeline(p, tr.start, tr.end), memory_timeline(q, back.start, back.end)
    assert [mp.peak(r)[0] for r in range(4)] == [mq.peak(r)[0] for r in range(4)]
    assert np.allclose(comm_comp_overlap(tr), comm_comp_overlap(back), atol=1e-6)


def op_labels(p):
    """Each compute op's label, per rank (a simulated program shares labels across ranks)."""
    c = np.flatnonzero(p.kind == OpKind.COMPUTE)
    return sorted((int(p.rank[o]), p.compute_label[p.arg[o]]) for o in c)


def _all_collectives(trace):
    p = trace.program
    rows = [(int(p.rank[o]), CollKind(int(p.coll_kind[p.arg[o]])).label, int(p.coll_bytes[p.arg[o]]),
             round(float(trace.start[o]), 6), round(float(trace.end[o]), 6))
            for o in np.flatnonzero(p.kind == OpKind.COLLECTIVE)]
    rows += [(int(c["rank"]), c["kind"], int(c["nbytes"]), round(c["start"], 6), round(c["end"], 6))
             for c in trace.meta["other_collectives"]]
    return sorted(rows)


def test_import_export_import_round_trips_a_gloo_ddp_run(tmp_path, capsys):
    first = tmp_path / "ddp.trace"
    assert main(["import", "kineto", os.path.join(FIX, "gloo_ddp"), "-o", str(first)]) == 0
    assert main(["export", str(first), "--format", "kineto", "-o", str(tmp_path / "k")]) == 0
    second = tmp_path / "again.trace"
    assert main(["import", "kineto", str(tmp_path / "k"), "-o", str(second)]) == 0
    capsys.readouterr()
    a, b = read_trace(first), read_trace(second)
    assert _all_collectives(a) == _all_collectives(b)   # none lost, same kind, bytes and times
    assert len(_all_collectives(a)) == 2 * 7
    assert op_labels(a.program) == op_labels(b.program)
    ma, mb = memory_timeline(a.program, a.start, a.end), memory_timeline(b.program, b.start, b.end)
    for r in (0, 1):
        assert ma.peak(r)[0] == mb.peak(r)[0]
        assert np.array_equal(ma.total[r][1:], mb.total[r][1:])
    for r in ("0", "1"):
        assert np.allclose(a.meta["steps"][r], b.meta["steps"][r], atol=1e-6)


def test_chakra_export_nodes():
    tr = ring_trace()
    docs = chakra_documents(tr)
    sends = sum(1 for d in docs.values() for n in d["nodes"] if n["type"] == 5)
    recvs = sum(1 for d in docs.values() for n in d["nodes"] if n["type"] == 6)
    assert sends == recvs == int(tr.program.is_transfer.sum())
    fs = chakra_documents(fsdp_trace())
    colls = [n for n in fs[0]["nodes"] if n["type"] == 7]
    assert len(colls) == 12 and {a["name"] for a in colls[0]["attrs"]} >= {"comm_type", "comm_size"}


def test_export_cli_writes_each_format(tmp_path, capsys):
    path = tmp_path / "fsdp.trace"
    write_trace(path, fsdp_trace())
    assert main(["export", str(path)]) == 0
    with open(tmp_path / "fsdp.chrome.json") as f:
        check_chrome(json.load(f)["traceEvents"])
    assert main(["export", str(path), "--format", "kineto"]) == 0
    assert sorted(os.listdir(tmp_path / "fsdp.kineto")) == [f"rank{r}.json" for r in range(4)]
    assert main(["export", str(path), "--format", "chakra", "-o", str(tmp_path / "ch")]) == 0
    assert len(os.listdir(tmp_path / "ch")) == 4
    capsys.readouterr()


def test_export_of_a_bad_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.trace"
    bad.write_bytes(b"not arrow")
    assert main(["export", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a rankscope trace" in err[0]
    assert main(["export", str(tmp_path / "missing.trace"), "--format", "kineto"]) == 2
    assert main(["export", str(bad), "--format", "svg"]) == 2
    capsys.readouterr()


def test_kineto_documents_use_record_param_comms_fields():
    docs = kineto_documents(fsdp_trace())
    rpc = [e for e in docs[0]["traceEvents"] if e["name"] == "record_param_comms"]
    assert len(rpc) == 12
    ag = rpc[0]["args"]
    assert ag["Collective name"] == "_allgather_base" and ag["Group size"] == 4
    assert ag["Out msg nelems"] == 4 * ag["In msg nelems"]
    kernels = [e for e in docs[0]["traceEvents"] if e.get("cat") == "kernel" and e["name"].startswith("ncclKernel")]
    assert len(kernels) == 12
