"""Importing PyTorch profiler traces and flight-recorder dumps: what comes in, and what is refused."""

import json
import os
import pickle
import shutil

import numpy as np
import pytest

from rankscope.cli import main
from rankscope.simulator.interop.errors import ImportFormatError, SequenceMismatchError
from rankscope.simulator.interop.flight_recorder import import_flight_recorder
from rankscope.simulator.interop.kineto_import import import_kineto
from rankscope.simulator.interop.safe_pickle import plain_loads
from rankscope.simulator.memory import memory_timeline
from rankscope.simulator.program import CollKind, OpKind
from rankscope.simulator.trace import read_trace

FIX = os.path.join(os.path.dirname(__file__), "fixtures")
UNIT = (128 * 128 + 128) * 4   # one mlp:2x128 unit in fp32


def fixture(*parts):
    return os.path.join(FIX, *parts)


def sequence(trace, rank):
    p = trace.program
    ops = np.flatnonzero((p.kind == OpKind.COLLECTIVE) & (p.rank == rank))
    return [(CollKind(int(p.coll_kind[p.arg[o]])).label, int(p.coll_bytes[p.arg[o]])) for o in ops]


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- gloo (real runs) -------------------------------------------------------------------------------
def test_gloo_fsdp_run_imports_with_fsdp2s_collective_sequence():
    tr = import_kineto([fixture("gloo_fsdp")])
    assert tr.meta["executor"] == "gloo" and tr.program.nranks == 2
    # FSDP2, 2 units, per step: AG0 AG1 (forward), AG1 (backward), AG0 (prefetch), RS1, RS0
    step = [("all-gather", UNIT)] * 4 + [("reduce-scatter", UNIT)] * 2
    for r in (0, 1):
        assert sequence(tr, r) == step * 2
    # gloo runs the reduce-scatter as an all-reduce: the kind stays the issued one
    impls = {c["impl"] for c in tr.meta["collectives"] if c["name"] == "c10d::_reduce_scatter_base_"}
    assert impls == {"gloo:all_reduce"}
    labels = set(tr.program.compute_label)
    assert {"fwd layer0", "fwd layer1", "bwd layer0", "bwd layer1", "optimizer step"} <= labels
    assert len(tr.meta["steps"]["0"]) == 2


def test_gloo_ddp_run_keeps_broadcasts_as_other_collectives():
    tr = import_kineto([fixture("gloo_ddp")])
    for r in (0, 1):
        assert sequence(tr, r) == [("all-gather", 16), ("all-reduce", 2 * UNIT), ("all-reduce", 2 * UNIT)]
    others = [(c["kind"], c["nbytes"]) for c in tr.meta["other_collectives"] if c["rank"] == 0]
    assert ("broadcast", 2 * UNIT) in others   # DDP's construction broadcasts the parameters


def test_memory_of_a_gloo_run_is_rebuilt_from_profiler_events():
    tr = import_kineto([fixture("gloo_fsdp")])
    mt = memory_timeline(tr.program, tr.start, tr.end)
    ends = [int(mt.total[r][-1]) for r in (0, 1)]
    # both ranks end holding the same state (shards, gradients, Adam): the frees gloo's workers
    # make outside the profiler are put back (rank 0's profiler total drifted, rank 1's did not)
    assert ends[0] == ends[1] == tr.meta["ranks"]["1"]["memory"]["reconstructed_total_at_end"]
    assert tr.meta["ranks"]["0"]["memory"]["profiler_total_at_end"] > ends[0]


def test_trace_is_sorted_by_step_and_collectives_share_one():
    tr = import_kineto([fixture("gloo_fsdp")])
    p = tr.program
    assert np.all(np.diff(p.step) >= 0)
    coll = np.flatnonzero(p.kind == OpKind.COLLECTIVE)
    for c in np.unique(p.arg[coll]):
        ops = coll[p.arg[coll] == c]
        assert len(ops) == 2 and len(set(p.step[ops])) == 1
    assert [ph.name for ph in p.phases][:3] == ["setup", "step 0", "step 1"]


# -- NCCL samples ---------------------------------------------------------------------------------
def test_nccl_kineto_sample_takes_times_from_the_kernels():
    tr = import_kineto([fixture("nccl_kineto")])
    assert tr.meta["executor"] == "nccl"
    assert sequence(tr, 0) == sequence(tr, 1) == [("all-gather", 4096), ("reduce-scatter", 4096), ("all-reduce", 4096)]
    p = tr.program
    ag = np.flatnonzero((p.kind == OpKind.COLLECTIVE) & (p.rank == 0))[0]
    assert tr.end[ag] - tr.start[ag] == pytest.approx(40e-6)   # the kernel's duration, not the CPU call's
    assert {"fwd layers.0", "bwd layers.0", "optimizer step"} <= set(p.compute_label)
    assert tr.meta["ranks"]["0"]["memory"]["device"] == "cuda:0"
    mt = memory_timeline(p, tr.start, tr.end)
    assert mt.peak(0)[0] == 8192 + 8192


def test_nccl_flight_recorder_sample():
    tr = import_flight_recorder([fixture("nccl_fr")])
    assert sequence(tr, 0) == [("all-gather", 4096), ("reduce-scatter", 4096), ("all-reduce", 4096)]
    p = tr.program
    c = np.flatnonzero((p.kind == OpKind.COLLECTIVE) & (p.rank == 1))
    assert np.allclose(tr.end[c] - tr.start[c], 40e-6)
    assert sorted(o["kind"] for o in tr.meta["other_collectives"]) == ["p2p", "p2p"]


def test_gloo_flight_recorder_json_and_pickle():
    js = import_flight_recorder([fixture("gloo_fsdp", "flight_recorder")])
    # the flight recorder names gloo's reduce-scatter by what ran: all_reduce of the full buffer
    assert sequence(js, 0)[:6] == [("all-gather", UNIT)] * 4 + [("all-reduce", UNIT)] * 2
    assert js.meta["ranks"]["0"]["untimed"] > 0
    pk = import_flight_recorder([fixture("gloo_fr_pickle")])
    assert sequence(pk, 0) == sequence(pk, 1) == [("all-reduce", 1024), ("all-gather", 2048), ("all-reduce", 1024)]


# -- refused inputs: one line, exit 2 -------------------------------------------------------------
def _copy(tmp_path, name):
    dst = tmp_path / name
    shutil.copytree(fixture(name), dst)
    return dst


def _edit(path, fn):
    with open(path) as f:
        doc = json.load(f)
    fn(doc)
    with open(path, "w") as f:
        json.dump(doc, f)


def _one_line_error(capsys, *argv, match):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rankscope: error: "), err
    assert match in lines[0], lines[0]
    return lines[0]


def test_truncated_json_is_one_clear_line(tmp_path, capsys):
    d = _copy(tmp_path, "gloo_ddp")
    text = (d / "rank1.json").read_text()
    (d / "rank1.json").write_text(text[: len(text) // 2])
    _one_line_error(capsys, "import", "kineto", str(d / "rank0.json"), str(d / "rank1.json"),
                    "-o", str(tmp_path / "x.trace"), match="rank1.json: not valid JSON (the file looks cut short)")


def test_missing_keys_are_named(tmp_path, capsys):
    d = _copy(tmp_path, "nccl_kineto")
    _edit(d / "rank0.json", lambda doc: doc.pop("traceEvents"))
    _one_line_error(capsys, "import", "kineto", str(d), "-o", str(tmp_path / "x.trace"), match="no 'traceEvents' list")
    d = _copy(tmp_path, "nccl_fr")

    def drop(doc):
        del doc["entries"][1]["profiling_name"]
    _edit(d / "rank1.json", drop)
    _one_line_error(capsys, "import", "flight-recorder", str(d), "-o", str(tmp_path / "x.trace"),
                    match="entries[1] has no 'profiling_name'")
    d2 = tmp_path / "k2"
    shutil.copytree(fixture("nccl_kineto"), d2)

    def no_nelems(doc):
        for e in doc["traceEvents"]:
            if e.get("name") == "record_param_comms":
                del e["args"]["In msg nelems"]
    _edit(d2 / "rank0.json", no_nelems)
    _one_line_error(capsys, "import", "kineto", str(d2), "-o", str(tmp_path / "x.trace"),
                    match="record_param_comms without 'In msg nelems'")


def test_ranks_that_disagree_on_a_collective_are_refused(tmp_path, capsys):
    d = _copy(tmp_path, "nccl_kineto")

    def bigger(doc):
        for e in doc["traceEvents"]:
            if e.get("name") == "record_param_comms" and e["args"]["Collective name"] == "_reduce_scatter_base":
                e["args"]["In msg nelems"] = 4096
    _edit(d / "rank1.json", bigger)
    with pytest.raises(SequenceMismatchError, match="at collective #2: rank 0 issued reduce-scatter of 4096 B"):
        import_kineto([str(d)])
    _one_line_error(capsys, "import", "kineto", str(d), "-o", str(tmp_path / "x.trace"),
                    match="rank 1 issued reduce-scatter of 8192 B")


def test_a_rank_that_stopped_early_is_named(tmp_path, capsys):
    d = _copy(tmp_path, "gloo_fsdp")

    def stop(doc):  # rank 1 never issued its last reduce-scatter
        last = max((e for e in doc["traceEvents"] if e.get("name") == "c10d::_reduce_scatter_base_"),
                   key=lambda e: e["ts"])
        doc["traceEvents"].remove(last)
    _edit(d / "rank1.json", stop)
    _one_line_error(capsys, "import", "kineto", str(d / "rank0.json"), str(d / "rank1.json"),
                    "-o", str(tmp_path / "x.trace"),
                    match="different numbers of collectives (rank 0: 12, rank 1: 11); rank 1 has no collective #12")
    f = _copy(tmp_path, "nccl_fr")
    _edit(f / "rank1.json", lambda doc: doc["entries"].pop(2))
    _one_line_error(capsys, "import", "flight-recorder", str(f), "-o", str(tmp_path / "y.trace"),
                    match="rank(s) 1 recorded no collective with sequence id 3")


def test_fields_of_the_wrong_type_and_a_rank_without_collectives(tmp_path, capsys):
    f = _copy(tmp_path, "nccl_fr")
    _edit(f / "rank1.json", lambda doc: doc["entries"][0].__setitem__("time_created_ns", "abc"))
    _one_line_error(capsys, "import", "flight-recorder", str(f), "-o", str(tmp_path / "y.trace"),
                    match="rank1.json: entries[0]: invalid literal for int()")
    g = _copy(tmp_path / "g", "nccl_fr")
    _edit(g / "rank1.json", lambda doc: doc.__setitem__("entries", []))
    _one_line_error(capsys, "import", "flight-recorder", str(g), "-o", str(tmp_path / "z.trace"),
                    match="rank 1 recorded no collectives while rank 0 recorded")
    k = _copy(tmp_path, "nccl_kineto")

    def bad(doc):
        for e in doc["traceEvents"]:
            if e.get("name") == "record_param_comms":
                e["args"]["In msg nelems"] = "many"
    _edit(k / "rank0.json", bad)
    _one_line_error(capsys, "import", "kineto", str(k), "-o", str(tmp_path / "w.trace"),
                    match="malformed profiler trace")


def test_a_file_without_a_rank_is_refused(tmp_path, capsys):
    d = _copy(tmp_path, "nccl_kineto")
    _edit(d / "rank0.json", lambda doc: doc.pop("distributedInfo"))
    os.rename(d / "rank0.json", d / "trace_a.json")
    _one_line_error(capsys, "import", "kineto", str(d), "-o", str(tmp_path / "x.trace"),
                    match="cannot tell which rank recorded it")


def test_two_files_of_one_rank_are_refused(tmp_path, capsys):
    src = fixture("nccl_kineto", "rank0.json")
    _one_line_error(capsys, "import", "kineto", src, src, "-o", str(tmp_path / "x.trace"),
                    match="two files claim rank 0")


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = _Evil()
    evil.marker = marker
    d = tmp_path / "fr"
    d.mkdir()
    doc = {"version": "2.4", "rank": 0, "entries": [], "payload": evil}
    (d / "rank0").write_bytes(pickle.dumps(doc, protocol=4))
    line = _one_line_error(capsys, "import", "flight-recorder", str(d), "-o", str(tmp_path / "x.trace"),
                           match="refused to unpickle: it asks for posix.system")
    assert "accepts only plain containers and scalars" in line
    assert not marker.exists()
    # an ordinary pickle of the dump itself (plain data) is read
    (d / "rank0").write_bytes(pickle.dumps({"version": "2.4", "rank": 0, "entries": []}))
    assert plain_loads((d / "rank0").read_bytes(), "x")["rank"] == 0


def test_only_plain_data_unpickles():
    plain = {"s": {1, 2}, "f": frozenset(), "t": (1, "a", b"b", None, True, 2.5)}
    assert plain_loads(pickle.dumps(plain), "x") == plain
    with pytest.raises(ImportFormatError, match="refused to unpickle: it asks for numpy"):
        plain_loads(pickle.dumps(np.int64(3)), "x")
    with pytest.raises(ImportFormatError, match="not a readable pickle"):
        plain_loads(pickle.dumps([1, 2, 3])[:-3], "x")


def test_cli_writes_a_readable_trace(tmp_path, capsys):
    out = tmp_path / "nccl.trace"
    code, text, err = run_cli(capsys, "import", "kineto", fixture("nccl_kineto"), "-o", str(out), "--json")
    assert code == 0, err
    doc = json.loads(text)
    assert doc["collectives_per_rank"] == 3 and doc["out"] == str(out)
    tr = read_trace(out)
    assert sequence(tr, 1) == [("all-gather", 4096), ("reduce-scatter", 4096), ("all-reduce", 4096)]
