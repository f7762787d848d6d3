"""The GPU path, checked on a machine without one: profiler output shaped as CUDA runs write it,
CUDA mocked where torch allows (device choice, start method, waits, event stamps), the flight
recorder's dump functions and the cuBLAS workspaces faked as torch names them."""

from __future__ import annotations

import json
import shutil
import types
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rankscope.real import launch as real_launch  # noqa: E402
from rankscope.real import train as real_train  # noqa: E402
from rankscope.real.clock import CudaEventClock  # noqa: E402
from rankscope.real.executor import waiter  # noqa: E402
from rankscope.real.launch import Launched, start_method  # noqa: E402
from rankscope.real.profile_convert import convert_run  # noqa: E402
from rankscope.real.rank import RankContext  # noqa: E402
from rankscope.real.train import TrainRunConfig, dump_flight_recorder  # noqa: E402
from rankscope.simulator.errors import UsageError  # noqa: E402
from rankscope.simulator.interop.flight_recorder import import_flight_recorder  # noqa: E402
from rankscope.simulator.interop.kineto_import import import_kineto  # noqa: E402
from rankscope.simulator.program import OpKind  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"


# -- 1, 2: the Kineto import of a CUDA run -----------------------------------------------------------
def test_gpu_user_annotation_copies_are_no_steps_or_spans():
    """Each rank's ProfilerStep#5 has copies on three GPU streams in the fixture: one window."""
    doc = json.loads((FIXTURES / "nccl_kineto" / "rank0.json").read_text())
    copies = [e for e in doc["traceEvents"] if e.get("cat") == "gpu_user_annotation"]
    assert {e["name"] for e in copies} >= {"ProfilerStep#5", "FSDP::pre_forward (layers.0)"}
    assert sum(e["name"] == "ProfilerStep#5" for e in copies) == 3
    tr = import_kineto([str(FIXTURES / "nccl_kineto")])
    assert {r: len(w) for r, w in tr.meta["steps"].items()} == {"0": 1, "1": 1}
    t0, t1 = tr.meta["steps"]["0"][0]
    assert t1 - t0 == pytest.approx(900e-6)                      # the CPU range, not a stream's
    labels = [str(x) for x, r in zip(tr.program.compute_label, tr.program.rank) if r == 0]
    assert sorted(labels) == ["bwd layers.0", "fwd layers.0", "optimizer step"]


def test_nccl_kernels_launched_by_the_driver_time_their_own_collective():
    """cuLaunchKernelEx (cuda_driver) correlates each ncclDevKernel with its call; in issue order
    the reduce-scatter's kernel (on FSDP2's stream, waiting for gradients) would be the
    all-reduce's, which started first."""
    tr = import_kineto([str(FIXTURES / "nccl_kineto")])
    p = tr.program
    for r in (0, 1):
        ops = np.flatnonzero((p.kind == OpKind.COLLECTIVE) & (p.rank == r))
        dur = tr.end[ops] - tr.start[ops]
        assert dur == pytest.approx([40e-6, 45e-6, 35e-6])        # each kernel's own duration
        impl = [tr.meta["collectives"][int(a)]["impl"] for a in p.arg[ops]]
        assert [i.split("_")[1] for i in impl] == ["AllGather", "ReduceScatter", "AllReduce"]
    assert not any("without a matching NCCL kernel" in n for r in tr.meta["ranks"].values()
                   for n in r.get("notes", []))


# -- 3: waits on CUDA ---------------------------------------------------------------------------------
class _Work:
    def __init__(self):
        self.calls = []

    def wait(self, *args):
        self.calls.append(args)
        return True


def _ctx(device: str, timeout: float = 30.0, started: float | None = None) -> RankContext:
    return RankContext(0, 2, 0, "nccl" if device == "cuda" else "gloo", torch.device(device, 0)
                       if device == "cuda" else torch.device("cpu"), timeout, None,
                       started if started is not None else __import__("time").monotonic())


def test_cuda_waits_take_no_timeout_and_gloo_waits_the_budget():
    w = _Work()
    waiter(_ctx("cuda"))(w)
    assert w.calls == [()]                      # Work.wait(): the stream waits, the CPU does not
    import time

    ctx = _ctx("cpu", timeout=30.0, started=time.monotonic() - 20.0)   # 20 s of the budget gone
    g = _Work()
    waiter(ctx)(g)
    (left,), = g.calls
    assert isinstance(left, timedelta) and 9.0 < left.total_seconds() <= 10.0
    waiter(ctx)(g)                              # a completed wait starts a fresh budget
    assert 29.0 < g.calls[1][0].total_seconds() <= 30.0
    late = _ctx("cpu", timeout=30.0, started=time.monotonic() - 20.0)
    late.fresh_budget()                         # no progress yet: still from the command's start
    assert late.wait_budget().total_seconds() <= 10.0
    ctx.last_progress -= 25.0                   # a long phase without waits (a sweep's native rounds)
    ctx.fresh_budget()
    assert ctx.wait_budget().total_seconds() > 29.0


# -- 7: stamps after an error -------------------------------------------------------------------------
class _Event:
    def __init__(self, ms: float, reached: bool):
        self.ms, self.reached = ms, reached

    def query(self) -> bool:
        return self.reached

    def elapsed_time(self, other: "_Event") -> float:
        return other.ms - self.ms


def test_stamps_resolved_after_an_error_never_synchronize(monkeypatch):
    def stuck(*a):
        raise AssertionError("synchronize on a stuck NCCL kernel never returns")

    monkeypatch.setattr(torch.cuda, "synchronize", stuck)
    clock = CudaEventClock(torch.device("cuda", 0))
    clock.ref, clock.ref_ns = _Event(0.0, True), 1_000_000
    got = clock.resolve([_Event(1.5, True), _Event(2.0, False)], sync=False)
    assert got[0] == pytest.approx(1_000_000 + 1.5e6) and np.isnan(got[1])
    clock.ref = _Event(0.0, False)
    assert np.isnan(clock.resolve([_Event(1.0, True)], sync=False)).all()


# -- 4: device choice and the launcher ----------------------------------------------------------------
@pytest.fixture
def no_cuda_questions(monkeypatch):
    def asked(*a, **k):
        raise AssertionError("the parent asked CUDA before starting local ranks")

    monkeypatch.setattr(torch.cuda, "is_available", asked)
    monkeypatch.setattr(torch.cuda, "device_count", asked)


@pytest.fixture
def captured(monkeypatch):
    seen = []

    def fake_local(job, nranks, backend, timeout, collect, started, deadline, method):
        seen.append({"job": job, "nranks": nranks, "backend": backend, "method": method, "deadline": deadline,
                     "started": started})
        return Launched("local", nranks, backend, None, results={r: None for r in range(nranks)})

    monkeypatch.setattr(real_launch, "_launch_local", fake_local)
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "RANKSCOPE_START_METHOD"):
        monkeypatch.delenv(k, raising=False)
    return seen


def test_device_auto_is_cpu_for_local_ranks_and_asks_cuda_nothing(captured, no_cuda_questions, tmp_path):
    real_train.launch(TrainRunConfig(model="mlp:2x64", nranks=2, steps=1, timeout=7), str(tmp_path), started=100.0)
    (got,) = captured
    assert got["backend"] == "gloo" and got["method"] == "fork" and got["nranks"] == 2
    assert got["deadline"] == 107.0                  # --timeout from the command's start
    assert isinstance(got["job"], real_train.TrainJob)


def test_local_cuda_ranks_are_spawned_one_gpu_each(captured, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(UsageError, match="NCCL needs one GPU per rank: 2 ranks, 1 GPUs here"):
        real_train.launch(TrainRunConfig(model="mlp:2x64", nranks=2, steps=1, device="cuda"), str(tmp_path))
    assert captured == []                            # refused before any rank started
    real_train.launch(TrainRunConfig(model="mlp:2x64", nranks=1, steps=1, device="cuda"), str(tmp_path))
    assert captured[0]["backend"] == "nccl" and captured[0]["method"] == "spawn"
    with pytest.raises(UsageError, match="cannot fork"):
        TrainRunConfig(device="cuda", start_method="fork")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UsageError, match="--device cuda, but this torch sees no CUDA device"):
        real_train.launch(TrainRunConfig(model="mlp:2x64", nranks=1, steps=1, device="cuda"), str(tmp_path))


def test_a_watchdog_abort_on_nccl_is_a_reaction_not_the_culprit():
    import signal

    from rankscope.real.launch import RankFailure, signal_failure

    aborted = signal_failure(0, -signal.SIGABRT, 2.0, "nccl")
    assert not aborted.primary and "watchdog" in aborted.reason
    assert signal_failure(0, -signal.SIGABRT, 2.0, "gloo").primary          # on gloo: a crash of its own
    assert signal_failure(2, -signal.SIGKILL, 3.0, "nccl").reason == "killed by signal SIGKILL"
    hung = RankFailure(1, "hung: still running 4.0 s after the first failure, killed by the launcher", False, 5.0,
                       True)
    got = Launched("local", 3, "nccl", None, failures=[aborted, hung, signal_failure(2, -6, 2.1, "nccl")])
    assert got.culprit.rank == 1 and got.failure_message().startswith("rank 1 failed: hung")


def test_start_methods():
    assert start_method("gloo") == "fork" and start_method("nccl") == "spawn"
    assert start_method("nccl", "forkserver") == "forkserver"
    with pytest.raises(UsageError, match="NCCL ranks cannot be forked"):
        start_method("nccl", "fork")


def test_fork_from_the_environment_is_refused_for_nccl(captured, monkeypatch):
    monkeypatch.setenv("RANKSCOPE_START_METHOD", "fork")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    with pytest.raises(UsageError, match="cannot be forked"):
        real_launch.launch(lambda ctx: None, nranks=2, backend="nccl")
    assert captured == []


# -- 5: the flight recorder of NCCL runs --------------------------------------------------------------
def _fr(rank: int) -> bytes:
    return (FIXTURES / "nccl_fr" / f"rank{rank}.json").read_bytes()


def test_nccl_runs_dump_nccls_own_recorder(tmp_path):
    calls = []

    def nccl_json(include_collectives, only_active):
        calls.append("nccl")
        return _fr(calls.count("nccl") - 1)

    def generic_json(include_collectives, only_active):   # the generic recorder: no NCCL work
        calls.append("generic")
        return b'{"version": "2.4", "entries": []}'

    c10d = types.SimpleNamespace(_dump_nccl_trace_json=nccl_json, _dump_fr_trace_json=generic_json)
    for r in (0, 1):
        assert dump_flight_recorder(str(tmp_path), r, "nccl", c10d) == "_dump_nccl_trace_json"
    assert calls == ["nccl", "nccl"]
    tr = import_flight_recorder([str(tmp_path / "flight_recorder")])
    assert tr.program.n_ops > 0 and tr.meta["executor"] in ("nccl", "measured")
    assert dump_flight_recorder(str(tmp_path / "g"), 0, "gloo", c10d) == "_dump_fr_trace_json"


def test_the_dump_falls_back_where_torch_lacks_or_breaks_one(tmp_path):
    def broken(*a):
        raise RuntimeError("no NCCL recorder")

    only_generic = types.SimpleNamespace(_dump_fr_trace_json=lambda *a: b"{}")
    assert dump_flight_recorder(str(tmp_path), 0, "nccl", only_generic) == "_dump_fr_trace_json"
    pickle_24 = types.SimpleNamespace(_dump_nccl_trace_json=broken, _dump_nccl_trace=lambda *a: b"\x80\x04N.")
    assert dump_flight_recorder(str(tmp_path), 1, "nccl", pickle_24) == "_dump_nccl_trace"
    assert (tmp_path / "flight_recorder" / "rank1.pkl").read_bytes() == b"\x80\x04N."
    assert dump_flight_recorder(str(tmp_path), 2, "nccl", types.SimpleNamespace()) is None


# -- 8: cuBLAS workspaces in the GPU peak -------------------------------------------------------------
def _run_folder(tmp_path, cuda_extra: int | None, workspace: int | None):
    """The gloo FSDP fixture (mlp:2x128, 2 ranks, 2 steps) with GPU-style stats: the caching
    allocator's peak = the profiler's + ``cuda_extra`` bytes of cuBLAS workspace."""
    d = tmp_path / "run"
    d.mkdir(parents=True, exist_ok=True)
    for r in (0, 1):
        shutil.copy(FIXTURES / "gloo_fsdp" / f"rank{r}.json", d / f"rank{r}.json")
    cfg = TrainRunConfig(model="mlp:2x128", strategy="fsdp", nranks=2, steps=2)
    base = convert_run(str(d), cfg).meta["comparison"]["memory"]["ranks"]
    if cuda_extra is not None:
        for row in base:
            stats = {"rank": row["rank"], "nranks": 2, "device": f"cuda:{row['rank']}", "backend": "nccl",
                     "step_seconds": [0.1, 0.1],
                     "cuda_max_memory_allocated": [1, row["measured_peak"] + cuda_extra]}
            if workspace is not None:
                stats["cuda_cublas_workspace_bytes"] = workspace
            (d / f"rank{row['rank']}.stats.json").write_text(json.dumps(stats))
    return convert_run(str(d), cfg).meta["comparison"]["memory"], base


def test_the_gpu_peak_leaves_out_the_cublas_workspaces(tmp_path):
    ws = 32 << 20      # an example: 32 MiB of cuBLAS workspaces
    mem, base = _run_folder(tmp_path, ws, ws)
    assert mem["source"].startswith("torch.cuda.max_memory_allocated")
    for row, b in zip(mem["ranks"], base):
        assert row["allocator_peak"] == b["measured_peak"] + ws and row["cublas_workspace"] == ws
        assert row["measured_peak"] == b["measured_peak"] and row["within_tolerance"]
    assert f"{ws:,} B" in mem["note"]
    without, _ = _run_folder(tmp_path / "w", ws, None)   # a torch that cannot say: not hidden
    assert not any(r["within_tolerance"] for r in without["ranks"])


def test_cublas_workspace_bytes_reads_what_clearing_frees(monkeypatch):
    held = {"bytes": 50 << 20}

    def clear():
        held["bytes"] -= 8 << 20

    fake = types.SimpleNamespace(
        _C=types.SimpleNamespace(_cuda_clearCublasWorkspaces=clear),
        cuda=types.SimpleNamespace(synchronize=lambda d: None, memory_allocated=lambda d: held["bytes"]))
    assert real_train.cublas_workspace_bytes(fake, "cuda:0") == 8 << 20
    assert real_train.cublas_workspace_bytes(types.SimpleNamespace(_C=types.SimpleNamespace()), "cuda:0") is None
