"""benchmarks/gpu_check.py on a machine without CUDA: it skips in one line; its command lines are
ones rankscope parses; its judges catch every kind of mismatch; any failed check exits 1."""

from __future__ import annotations

import importlib.util
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest

from rankscope.cli import make_parser
from rankscope.simulator.collectives import ALGORITHMS, build
from rankscope.simulator.trace import Trace, write_trace

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
gc = importlib.util.module_from_spec(_spec)
sys.modules["gpu_check"] = gc          # dataclasses look their module up while the file runs
_spec.loader.exec_module(gc)


def test_without_cuda_it_skips_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(gc, "cuda_gpus", lambda: 0)
    assert gc.main([]) == 0
    out = capsys.readouterr()
    assert out.out.count("\n") == 1 and out.out.startswith("gpu_check: skipped: no CUDA device") and not out.err


@pytest.mark.parametrize("n", [1, 3, 8])
def test_every_collective_and_algorithm_under_torchrun_at_n_ranks(n, tmp_path):
    cs = gc.checks(n, str(tmp_path))
    want = [f"real {c} {a}" for c, algos in ALGORITHMS.items() for a in algos]
    assert [c.name for c in cs] == want + ["real train fsdp", "import kineto", "real sweep"]
    for c in cs:
        if c.name == "import kineto":
            continue
        i = c.argv.index("-m")
        assert f"--nproc-per-node={n}" in c.argv[:i] and "--standalone" in c.argv[:i]
        assert c.argv[i:i + 3] == ["-m", "rankscope", "real"]
    hier = next(c for c in cs if c.name == "real all-reduce hier")
    assert hier.argv[hier.argv.index("--nodes") + 1] == str(2 if n == 8 else 1)


def test_the_command_lines_are_rankscopes(tmp_path):
    """Every command parses with rankscope's own parser (a typo in an option fails here, not on
    the GPU machine)."""
    for c in gc.checks(8, str(tmp_path)):
        argv = c.argv[c.argv.index("rankscope") + 1:]
        args = make_parser(argv[0]).parse_args(argv)
        assert callable(args.func), shlex.join(argv)
        if argv[0] == "real" and argv[1] not in ("train", "sweep"):
            assert args.backend == "nccl" and args.check_steps and args.json and args.out


def _summary(**kw):
    s = {"collective": "all-reduce", "algo": "ring", "transfers": 56, "seconds": 2e-4, "busbw": 150e9,
         "executor": "nccl", "clock": "cuda-events", "provenance": "equal", "native": "equal", "mismatch": None}
    s.update(kw)
    return s


@pytest.mark.parametrize("kw, rc, ok, says", [
    ({}, 0, True, "56 transfers"),
    ({"native": "differs"}, 0, False, "native differs"),
    ({"provenance": "differs"}, 0, False, "provenance differs"),
    ({"mismatch": "step 3, rank 1, chunk 2: measured {0,1} != simulated {0,1,2}"}, 0, False, "step 3"),
    ({"executor": "gloo", "clock": "monotonic"}, 0, False, "not nccl/cuda-events"),
    ({"seconds": float("nan")}, 0, False, "56 transfers in nan s"),
    ({}, 1, False, "exit 1"),
])
def test_judging_a_real_run(kw, rc, ok, says):
    c = gc.Check("real all-reduce ring", [], gc.judge_real)
    got, detail = gc.judge_real(c, rc, "noise from NCCL\n" + json.dumps(_summary(**kw)) + "\n", "a\nlast line\n")
    assert got is ok and says in detail


def test_a_run_that_printed_nothing_names_its_error():
    c = gc.Check("x", [], gc.judge_real)
    assert gc.judge_real(c, 1, "", "Traceback...\nRuntimeError: NCCL error\n") == (False, "exit 1: RuntimeError: NCCL error")


def _train(match=True, within=True, device="cuda:0"):
    rows = [{"rank": 0, "measured_peak": 50_000_000, "simulated_peak": 51_000_000, "ratio": 1.02,
             "cublas_workspace": 8 << 20, "within_tolerance": within}]
    return {"run": {"device": device}, "comparison": {
        "collectives": {"match": match},
        "memory": {"ranks": rows, "within_tolerance": within, "tolerance": 0.1,
                   "source": "torch.cuda.max_memory_allocated less cuBLAS workspaces"}}}


@pytest.mark.parametrize("doc, ok, says", [
    (_train(), True, "rank 0 measured 50,000,000 B (cuBLAS 8,388,608 B left out) simulated 51,000,000 B (1.020)"),
    (_train(match=False), False, "collectives differ"),
    (_train(within=False), False, "peak memory outside 10%"),
    (_train(device="cpu"), False, "ran on cpu"),
])
def test_judging_the_training_step(doc, ok, says):
    got, detail = gc.judge_train(gc.Check("t", [], gc.judge_train), 0 if ok else 1, json.dumps(doc), "")
    assert got is ok and says in detail


def test_judging_the_kineto_import():
    meta = {"collectives": [{"impl": "ncclDevKernel_AllGather_RING_LL(...)"}, {"impl": "ncclKernel_ReduceScatter_RING"}],
            "ranks": {"0": {}}}
    assert gc.imported_ok(meta, {"ncclKernel": 1, "ncclDevKernel": 1}, "k")[0]
    meta["collectives"].append({"impl": ""})
    ok, detail = gc.imported_ok(meta, {"ncclKernel": 1, "ncclDevKernel": 1}, "k")
    assert not ok and "1 of 3 collectives without their NCCL kernel" in detail
    ok, detail = gc.imported_ok({"collectives": [{"impl": "nccl"}], "ranks": {"0": {"notes": [
        "1 collectives without a matching NCCL kernel: timed by their CPU-side call"]}}}, {"ncclKernel": 1}, "k")
    assert not ok and "CPU-side" in detail


def test_the_kernel_families_are_counted(tmp_path):
    doc = {"traceEvents": [{"cat": "kernel", "name": "ncclKernel_AllReduce_RING_LL_Sum_float"},
                           {"cat": "kernel", "name": "ncclDevKernel_AllGather_RING_LL(x)"},
                           {"cat": "kernel", "name": "ncclDevKernel_AllGather_RING_LL(x)"},
                           {"cat": "cuda_driver", "name": "cuLaunchKernelEx"}]}
    (tmp_path / "rank0.json").write_text(json.dumps(doc))
    (tmp_path / "rank0.stats.json").write_text("{}")
    assert gc.kineto_kernels(str(tmp_path)) == {"ncclKernel": 1, "ncclDevKernel": 2}


def test_judging_the_sweep():
    rows = [{"collective": c, "impl": i, "nbytes": 1 << 20, "seconds": 1e-4, "busbw": 9e9}
            for c in ALGORITHMS for i in ("native", "ring")]
    judge = gc.judge_sweep(2)
    assert judge(None, 0, json.dumps({"rows": rows}), "")[0]
    rows[1]["seconds"] = 0.0                          # a P2P row without a time, at N = 2
    assert not judge(None, 0, json.dumps({"rows": rows}), "")[0]
    assert gc.judge_sweep(1)(None, 0, json.dumps({"rows": rows}), "")[0]   # N = 1: P2P has no ops
    assert not judge(None, 0, json.dumps({"rows": rows[2:]}), "")[0]        # a collective missing


def test_a_trace_whose_op_ends_before_it_starts_fails(tmp_path):
    prog = build("all-reduce", "ring", 2, 1 << 10)
    start = np.arange(prog.n_ops, dtype=float)
    good, bad = tmp_path / "good.trace", tmp_path / "bad.trace"
    write_trace(str(good), Trace(prog, start, start + 0.5, np.zeros(prog.n_ops, dtype=np.int8), meta={}))
    assert gc.check_trace(str(good)) is None
    end = start + 0.5
    end[1] = start[1] - 1e-6
    write_trace(str(bad), Trace(prog, start, end, np.zeros(prog.n_ops, dtype=np.int8), meta={}))
    assert gc.check_trace(str(bad)) == "1 ops end before they start"


def test_any_failed_check_exits_1_and_the_table_says_which(monkeypatch, capsys, tmp_path):
    torch = pytest.importorskip("torch")

    monkeypatch.setattr(gc, "cuda_gpus", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "NVIDIA H200")
    monkeypatch.setattr(torch.cuda.nccl, "version", lambda: (2, 27, 3))
    seen = []

    def fake(c, env, cwd):
        seen.append(c.name)
        return (c.name != "real broadcast tree"), "detail", 1.0

    monkeypatch.setattr(gc, "run_check", fake)
    assert gc.main(["--out-dir", str(tmp_path)]) == 1
    text = capsys.readouterr().out
    assert "1 x NVIDIA H200" in text and "NCCL 2.27.3" in text
    assert "real broadcast tree" in text and "FAIL" in text and f"{len(seen) - 1} of {len(seen)} checks passed" in text
    monkeypatch.setattr(gc, "run_check", lambda c, env, cwd: (True, "fine", 1.0))
    assert gc.main(["--out-dir", str(tmp_path)]) == 0
